package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-isatty"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// now is the clock uptimes are computed with; tests set it.
var now = time.Now

// statusReport is the status result as the CLI reads it. Every field may
// be missing: an older or newer host still gets a table.
type statusReport struct {
	SystemID string         `json:"system_id"`
	Host     string         `json:"host"`
	Broker   string         `json:"broker"`
	Started  time.Time      `json:"started"`
	Workers  []workerReport `json:"workers"`
}

type workerReport struct {
	Name       string    `json:"name"`
	Supervisor string    `json:"supervisor"`
	Class      string    `json:"class"`
	State      string    `json:"state"`
	Pid        int       `json:"pid"`
	Since      time.Time `json:"since"`
	StartedAt  time.Time `json:"started_at"`
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit"`
	Source     string    `json:"source"`
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[-json] "+clientFlagsUsage, stderr)
	asJSON := fs.Bool("json", false, "print the status result as JSON")
	co := addClientFlags(fs)
	if _, rc := parseArgs(fs, args, "", 0, 0); rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "status", "%s", msg)
	}
	message, _ := json.Marshal(control.Request{Operation: control.OpStatus})
	answers, rc := co.do(call{method: http.MethodGet, path: "/v1/status", message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	color := colorOutput(stdout)
	first := true
	return co.report(answers, stdout, stderr, func(w io.Writer, _ string, a answer) {
		if *asJSON {
			printJSON(w, a.reply.Result)
			return
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		var rep statusReport
		if err := json.Unmarshal(a.reply.Result, &rep); err != nil {
			fmt.Fprintf(w, "(the status result has an unexpected shape: %v)\n", err)
			printJSON(w, a.reply.Result)
			return
		}
		printStatus(w, &rep, color)
	}, nil)
}

// colorOutput reports whether w is a terminal that wants colours.
func colorOutput(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd()) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// printStatus prints a host's header line and one table row per worker.
func printStatus(w io.Writer, rep *statusReport, color bool) {
	var head []string
	if rep.Host != "" {
		head = append(head, "host "+rep.Host)
	}
	if rep.SystemID != "" {
		head = append(head, "system_id "+rep.SystemID)
	}
	if rep.Broker != "" {
		head = append(head, "broker "+rep.Broker)
	}
	if !rep.Started.IsZero() {
		head = append(head, "up "+age(rep.Started))
	}
	if len(head) > 0 {
		fmt.Fprintln(w, strings.Join(head, ", "))
	}
	if len(rep.Workers) == 0 {
		fmt.Fprintln(w, "no workers")
		return
	}
	rows := [][]string{{"SUPERVISOR", "WORKER", "CLASS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"}}
	for _, wr := range rep.Workers {
		rows = append(rows, []string{
			orDash(wr.Supervisor), orDash(wr.Name), orDash(wr.Class), orDash(wr.State),
			pidText(wr.Pid), uptime(wr), strconv.Itoa(wr.Restarts), orDash(wr.LastExit),
		})
	}
	const stateCol = 3
	paint := func(col int, cell string) string {
		if !color || col != stateCol {
			return cell
		}
		if c := stateColor(strings.TrimSpace(cell)); c != "" {
			return c + cell + "\x1b[0m"
		}
		return cell
	}
	writeTable(w, rows, func(row, col int, cell string) string {
		if row == 0 {
			return cell
		}
		return paint(col, cell)
	})
}

// writeTable prints rows in columns two spaces apart, padded by the width
// of their text; decorate may wrap a padded cell (in colour codes, which
// must not count in widths).
func writeTable(w io.Writer, rows [][]string, decorate func(row, col int, cell string) string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			}
			b.WriteString(decorate(ri, i, cell))
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// stateColor returns the ANSI colour of a worker state, or "".
func stateColor(state string) string {
	switch state {
	case "running":
		return "\x1b[32m" // green
	case "starting", "backoff", "stopping":
		return "\x1b[33m" // yellow
	case "failed", "exited":
		return "\x1b[31m" // red
	case "stopped":
		return "\x1b[90m" // grey
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

// uptime is how long a running worker has run, from its started_at.
func uptime(wr workerReport) string {
	if wr.StartedAt.IsZero() || (wr.State != "running" && wr.State != "stopping") {
		return "-"
	}
	return age(wr.StartedAt)
}

// age formats the time since t the way people read uptimes: 42s, 3m12s,
// 5h03m, 2d04h.
func age(t time.Time) string {
	d := now().Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
