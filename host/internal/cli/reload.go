package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// runReload asks a running host to apply its changed HCL configuration
// (the reload operation, as SIGHUP does) and prints what changed: reload
// [-json]. A configuration with errors changes nothing: the host's
// diagnostics are printed and the exit status is 1.
func runReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reload", "[-json] "+clientFlagsUsage, stderr)
	co := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the host's result (api.ReloadResult) as JSON")
	if _, rc := parseArgs(fs, args, "", 0, 0); rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "reload", "%s", msg)
	}
	message, _ := json.Marshal(control.Request{Operation: control.OpReload})
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/control", body: message, message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		if *asJSON {
			printJSON(w, a.reply.Result)
			return
		}
		var res api.ReloadResult
		if err := json.Unmarshal(a.reply.Result, &res); err != nil {
			fmt.Fprintf(w, "%sreloaded (the host's answer does not read as a reload result: %v)\n", prefix, err)
			return
		}
		for _, l := range reloadLines(res) {
			fmt.Fprintf(w, "%s%s\n", prefix, l)
		}
	}, func(e *control.Error) string {
		if e.Code == control.CodeInvalidConfig {
			return "`dynworkers validate FILE` checks a configuration; the host runs as before"
		}
		return ""
	})
}

// reloadLines says what a reload changed, one line per kind of change:
// "added: a, b", ..., "unchanged: 3 workers", or "no changes (3 workers
// unchanged)" when nothing changed; then the settings that take effect
// only when the host restarts.
func reloadLines(r api.ReloadResult) []string {
	var out []string
	list := func(label string, names []string) {
		if len(names) > 0 {
			out = append(out, label+": "+strings.Join(names, ", "))
		}
	}
	list("added", r.Added)
	list("removed", r.Removed)
	list("restarted", r.Restarted)
	list("resumed", r.Resumed)
	list("supervisors added", r.SupervisorsAdded)
	list("supervisors removed", r.SupervisorsRemoved)
	list("supervisors reconfigured", r.SupervisorsReconfigured)
	list("supervisors resumed", r.SupervisorsResumed)
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("no changes (%s unchanged)", workerCount(r.Unchanged)))
	} else {
		out = append(out, "unchanged: "+workerCount(r.Unchanged))
	}
	if len(r.Ignored) > 0 {
		out = append(out, "ignored until the host restarts: "+strings.Join(r.Ignored, ", "))
	}
	return out
}

func workerCount(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}
