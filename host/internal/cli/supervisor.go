package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// supervisorBody is the body of POST /v1/supervisors.
type supervisorBody struct {
	SupervisorName string          `json:"supervisor_name"`
	Supervisor     string          `json:"supervisor,omitempty"`
	Strategy       string          `json:"strategy,omitempty"`
	Intensity      json.RawMessage `json:"intensity,omitempty"`
	Period         json.RawMessage `json:"period,omitempty"`
}

// runStartSupervisor starts a supervisor: start-supervisor NAME, over POST
// /v1/supervisors or as a start_supervisor control message.
func runStartSupervisor(args []string, stdout, stderr io.Writer) int {
	const cmd = "start-supervisor"
	fs := newFlagSet(cmd, "NAME [-parent PATH] [-strategy S] [-intensity N] [-period D] "+clientFlagsUsage, stderr)
	parent := fs.String("parent", "", "path of the supervisor to start it under, e.g. root/campaigns (default: the root)")
	strategy := fs.String("strategy", "", "restart strategy: one_for_one, one_for_all or rest_for_one (default one_for_one)")
	intensity := fs.Int("intensity", 0, "more than N restarts within -period fail the supervisor and escalate to its parent; 0 allows no automatic restart (default 5)")
	period := fs.String("period", "", `the intensity period: a duration such as 30s or 1m30s, or a number of seconds (default 30s)`)
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the supervisor NAME", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, cmd, "%s", msg)
	}
	set := flagsSet(fs)
	var intensityJSON json.RawMessage
	if set["intensity"] {
		if *intensity < 0 {
			return usageError(stderr, cmd, "-intensity must be 0 or more (0 allows no automatic restart), not %d", *intensity)
		}
		intensityJSON = json.RawMessage(strconv.Itoa(*intensity))
	}
	var periodJSON json.RawMessage
	if set["period"] {
		var msg string
		if periodJSON, msg = periodValue(*period); msg != "" {
			return usageError(stderr, cmd, "%s", msg)
		}
	}
	name := pos[0]
	body, _ := json.Marshal(supervisorBody{SupervisorName: name, Supervisor: *parent, Strategy: *strategy,
		Intensity: intensityJSON, Period: periodJSON})
	message, _ := json.Marshal(control.Request{Operation: control.OpStartSupervisor, SupervisorName: name,
		Supervisor: *parent, Strategy: *strategy, Intensity: intensityJSON, Period: periodJSON})
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/supervisors", body: body, message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, printSupervisorResult, func(e *control.Error) string {
		if e.Code == control.CodeConflict && strings.Contains(e.Message, "different settings") {
			return "a supervisor's settings cannot change while it exists; `dynworkers stop-supervisor` removes one started by a control message, with its subtree"
		}
		return ""
	})
}

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// periodValue turns -period into its JSON: a number of seconds stays a
// number, a duration a string. It returns a usage error message when it is
// neither or not greater than zero.
func periodValue(s string) (json.RawMessage, string) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if !(secs > 0) {
			return nil, fmt.Sprintf("-period must be greater than zero, not %s", s)
		}
		raw, err := json.Marshal(secs)
		if err != nil { // ±Inf
			return nil, fmt.Sprintf("-period %s is too long", s)
		}
		return raw, ""
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return nil, fmt.Sprintf("-period %q is not a duration: use a number with a unit, such as 30s or 1m30s, or a number of seconds", s)
	case d <= 0:
		return nil, fmt.Sprintf("-period must be greater than zero, not %s", s)
	}
	raw, _ := json.Marshal(s)
	return raw, ""
}

// runStopSupervisor stops a supervisor: stop-supervisor PATH, over DELETE
// /v1/supervisors/PATH or as a stop_supervisor control message.
func runStopSupervisor(args []string, stdout, stderr io.Writer) int {
	const cmd = "stop-supervisor"
	fs := newFlagSet(cmd, "PATH "+clientFlagsUsage, stderr)
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the supervisor PATH (or name)", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, cmd, "%s", msg)
	}
	// Checked here too: a segment such as ".." would make another URL.
	path := strings.Trim(pos[0], "/")
	if path == "" {
		return usageError(stderr, cmd, "%q is not a supervisor path: name one, such as root/campaign-a or campaign-a", pos[0])
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if err := config.ValidateName(seg); err != nil {
			return usageError(stderr, cmd, "%q is not a supervisor path such as root/campaign-a: %v", pos[0], err)
		}
		segs[i] = url.PathEscape(seg)
	}
	message, _ := json.Marshal(control.Request{Operation: control.OpStopSupervisor, Supervisor: path})
	answers, rc := co.do(call{method: http.MethodDelete, path: "/v1/supervisors/" + strings.Join(segs, "/"), message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, printSupervisorResult, nil)
}

// printSupervisorResult prints the result of start_supervisor or
// stop_supervisor.
func printSupervisorResult(w io.Writer, prefix string, a answer) {
	var res api.SupervisorResult
	if json.Unmarshal(a.reply.Result, &res) != nil || res.Supervisor == "" {
		fmt.Fprintf(w, "%sdone\n", prefix)
		printJSON(w, a.reply.Result)
		return
	}
	detail := ""
	if res.State != "" {
		detail = " (" + res.State + ")"
	}
	switch res.Action {
	case "unchanged":
		fmt.Fprintf(w, "%ssupervisor %q already runs with these settings: unchanged%s\n", prefix, res.Supervisor, detail)
	case "stopped":
		fmt.Fprintf(w, "%sstopped supervisor %q and its subtree until the next reload or host restart%s\n", prefix, res.Supervisor, detail)
	case "":
		fmt.Fprintf(w, "%ssupervisor %q%s\n", prefix, res.Supervisor, detail)
	default:
		fmt.Fprintf(w, "%s%s supervisor %q%s\n", prefix, res.Action, res.Supervisor, detail)
	}
	for _, r := range res.Removed {
		if r != res.Supervisor {
			fmt.Fprintf(w, "%s  removed %s\n", prefix, r)
		}
	}
}
