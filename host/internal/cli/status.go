package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// now is the clock uptimes and refresh times are computed with; tests set
// it.
var now = time.Now

// Defaults of status -watch.
const (
	defaultWatchInterval = 2 * time.Second
	minWatchInterval     = 100 * time.Millisecond
	// defaultWatchTimeout bounds each poll when -timeout is not given, so
	// that a host that does not answer shows up within a few frames.
	defaultWatchTimeout = 10 * time.Second
)

// statusFlags are the flags of the status command besides the client ones.
type statusFlags struct {
	json     bool
	watch    bool
	interval time.Duration
	noColor  bool
	cluster  bool
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[-json] [-no-color] [-cluster] [-watch [-interval D]] "+clientFlagsUsage, stderr)
	var sf statusFlags
	fs.BoolVar(&sf.json, "json", false, "print the status result as JSON")
	fs.BoolVar(&sf.watch, "watch", false, "refresh the status every -interval until interrupted (Ctrl-C), in place on a terminal; each poll waits at most -timeout (default 10s)")
	fs.DurationVar(&sf.interval, "interval", defaultWatchInterval, "with -watch: the time between two refreshes")
	fs.BoolVar(&sf.cluster, "cluster", false, "show the whole cluster the host is part of (its hosts and cluster workers, read from etcd) instead of the host")
	fs.BoolVar(&sf.noColor, "no-color", false, "no colours, even on a terminal (colours are also off when $NO_COLOR is set or TERM=dumb)")
	co := addClientFlags(fs)
	if _, rc := parseArgs(fs, args, "", 0, 0); rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "status", "%s", msg)
	}
	intervalSet := false
	fs.Visit(func(f *flag.Flag) { intervalSet = intervalSet || f.Name == "interval" })
	switch {
	case intervalSet && !sf.watch:
		return usageError(stderr, "status", "-interval goes with -watch")
	case sf.watch && sf.interval < minWatchInterval:
		return usageError(stderr, "status", "-interval must be at least %s", minWatchInterval)
	case sf.watch && (co.all || co.any):
		return usageError(stderr, "status", "-watch asks one host: use -amqp with -host NAME, not -all or -any")
	}
	term := isTerminal(stdout)
	color := term && !sf.noColor && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	st := statusCall()
	if sf.watch {
		if co.timeout == 0 {
			co.timeout = defaultWatchTimeout
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return co.watchStatus(ctx, stdout, stderr, watchOptions{
			interval: sf.interval, json: sf.json, color: color, cluster: sf.cluster,
			// Clearing the screen needs a terminal that knows how.
			terminal: term && os.Getenv("TERM") != "dumb",
		})
	}
	if sf.cluster {
		return co.clusterStatus(sf.json, stdout, stderr)
	}
	answers, rc := co.do(st, stderr)
	if rc != exitOK {
		return rc
	}
	first := true
	return co.report(answers, stdout, stderr, func(w io.Writer, _ string, a answer) {
		if !first && !sf.json {
			fmt.Fprintln(w)
		}
		first = false
		printResult(w, a.reply.Result, sf.json, color)
	}, nil)
}

// statusCall is the status request, for either transport.
func statusCall() call {
	message, _ := json.Marshal(control.Request{Operation: control.OpStatus})
	return call{method: http.MethodGet, path: "/v1/status", message: message}
}

// printResult prints one host's status result: as JSON, or as a tree when
// it has the shape of one.
func printResult(w io.Writer, result json.RawMessage, asJSON, color bool) {
	if asJSON {
		printJSON(w, result)
		return
	}
	// api.Status reads an older host's result too: what it lacks stays
	// zero (Process, Totals and Metrics are pointers, nil when absent).
	var rep api.Status
	if err := json.Unmarshal(result, &rep); err != nil {
		fmt.Fprintf(w, "(the status result has an unexpected shape: %v)\n", err)
		printJSON(w, result)
		return
	}
	printStatus(w, &rep, color)
}

// isTerminal reports whether w is a terminal: a character device (not a
// file or a pipe) that is a tty (not /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && isatty.IsTerminal(f.Fd())
}
