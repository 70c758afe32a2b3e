package cli

import (
	"cmp"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// The status tree:
//
//	host dev/h1 · broker amqp amqp://guest:xxxxx@127.0.0.1:5672/ · up 2h0m · rss 41.2 MiB · cpu 12.3s · workers: 2 running, 1 failed · control: 12 handled, 1 failed
//	NAME                              STATE    CLASS  PID   UPTIME  RESTARTS       RSS   CPU
//	root  one_for_one  running  restarts 1/5 in 30s  workers 2/3 running  rss 24.6 MiB  cpu 2.5s
//	├─ greeter                        running  hello  4242  3m12s          2  12.3 MiB  1.5%
//	│    mode=run pid=4242
//	│    last exit 3m12s ago: killed by SIGKILL
//	└─ root/campaign-a  one_for_all  running  restarts 0/3 in 10s  workers 1/2 running  ...
//	   ├─ ...
//
// Supervisors are lines of their own; workers are rows whose columns line
// up across the whole tree, each followed by its details (status_details.go)
// and its last exit. Everything the host sends is shown as it is
// except control characters, which are escaped (see clean).

// ANSI SGR sequences.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

// maxDetailRunes is where a last exit or a supervisor's failure is cut.
const maxDetailRunes = 100

// painter wraps text in colours, or does nothing when colours are off.
type painter bool

func (p painter) paint(code, text string) string {
	if !p || code == "" || text == "" {
		return text
	}
	return code + text + ansiReset
}

// stateColor returns the colour of a worker or supervisor state, or "".
func stateColor(state string) string {
	switch state {
	case "running":
		return ansiGreen
	case "starting", "backoff", "stopping":
		return ansiYellow
	case "failed":
		return ansiRed
	case "stopped", "exited":
		return ansiDim
	}
	return ""
}

// workerStates is the order the header counts workers in; other states
// follow in name order.
var workerStates = []string{"running", "starting", "backoff", "stopping", "stopped", "exited", "failed"}

// printStatus prints a host's status: a header line, then its supervision
// tree with one row per worker.
func printStatus(w io.Writer, rep *api.Status, color bool) {
	p := painter(color)
	if h := hostLine(rep, p); h != "" {
		fmt.Fprintln(w, h)
	}
	var lines []statusLine
	for _, n := range buildTree(rep) {
		lines = n.appendLines(lines, "", "", p)
	}
	if len(rep.Workers) > 0 {
		head := statusLine{row: []string{"NAME", "STATE", "CLASS", "PID", "UPTIME", "RESTARTS", "RSS", "CPU"}}
		lines = append([]statusLine{head}, lines...)
	}
	writeLines(w, lines, p)
	if len(rep.Workers) == 0 {
		fmt.Fprintln(w, "no workers")
	}
	if s := sparesLine(rep.Spares, p); s != "" {
		fmt.Fprintln(w, s)
	}
}

// sparesLine is the warm spares ready, per binary, with their pids (they
// are plugin processes no worker has yet: not to be mistaken for one):
// "warm spares: chaos 1 (pid 6001) · smpp 2 (pids 6002 6003)"; "" when
// there are none.
func sparesLine(spares []api.SparePool, p painter) string {
	var parts []string
	for _, sp := range spares {
		name := clean(path.Base(sp.Binary))
		pids := make([]string, len(sp.Pids))
		for i, pid := range sp.Pids {
			pids[i] = strconv.Itoa(pid)
		}
		which := "pid"
		if len(pids) != 1 {
			which = "pids"
		}
		part := fmt.Sprintf("%s %d", p.paint(ansiBold, name), sp.Ready)
		if len(pids) > 0 {
			part += p.paint(ansiDim, fmt.Sprintf(" (%s %s)", which, strings.Join(pids, " ")))
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	return "warm spares: " + strings.Join(parts, " · ")
}

// hostLine is the header: the host, its broker, uptime, process figures,
// workers by state and control requests.
func hostLine(rep *api.Status, p painter) string {
	var parts []string
	id := clean(rep.Host)
	if rep.SystemID != "" {
		id = clean(rep.SystemID) + "/" + cmp.Or(id, "?")
	}
	if id != "" {
		parts = append(parts, "host "+p.paint(ansiBold, id))
	}
	if rep.Broker != "" {
		parts = append(parts, "broker "+clean(rep.Broker))
	}
	pr := rep.Process
	switch {
	case pr != nil && pr.UptimeSeconds > 0:
		parts = append(parts, "up "+human(seconds(pr.UptimeSeconds)))
	case !rep.Started.IsZero():
		parts = append(parts, "up "+human(now().Sub(rep.Started)))
	}
	if pr != nil && pr.RSSBytes > 0 {
		parts = append(parts, "rss "+humanBytes(pr.RSSBytes), "cpu "+cpuTime(pr.CPUSeconds))
	}
	if rep.Process != nil || len(rep.Supervisors) > 0 || len(rep.Workers) > 0 {
		parts = append(parts, "workers: "+stateCounts(rep, p))
	}
	if pr != nil {
		failed := strconv.FormatUint(pr.ControlFailed, 10) + " failed"
		if pr.ControlFailed > 0 {
			failed = p.paint(ansiRed, failed)
		}
		parts = append(parts, fmt.Sprintf("control: %d handled, %s", pr.ControlHandled, failed))
	}
	return strings.Join(parts, " · ")
}

// stateCounts is "2 running, 1 failed": the host's own counts, else those
// of the workers listed.
func stateCounts(rep *api.Status, p painter) string {
	counts := map[string]int{}
	if rep.Process != nil && rep.Process.WorkersByState != nil {
		counts = rep.Process.WorkersByState
	} else {
		for _, wr := range rep.Workers {
			counts[cmp.Or(wr.State, "unknown")]++
		}
	}
	var extra []string
	for st := range counts {
		if !slices.Contains(workerStates, st) {
			extra = append(extra, st)
		}
	}
	slices.Sort(extra)
	var out []string
	for _, st := range append(slices.Clone(workerStates), extra...) {
		if n := counts[st]; n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, p.paint(stateColor(st), clean(cmp.Or(st, "unknown")))))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// treeNode is a supervisor with its workers and child supervisors.
type treeNode struct {
	sup       api.Supervisor
	synthetic bool // made up from the workers' supervisor (a host without supervisors in status)
	workers   []api.Worker
	children  []*treeNode
}

// buildTree arranges the supervisors by parent and the workers under
// their supervisor, both in the order listed. A worker whose supervisor
// is not listed (a host older than supervisors in status, or one removed
// between the two lists) goes under a node of that supervisor's name, at
// the top level.
func buildTree(rep *api.Status) []*treeNode {
	byPath := map[string]*treeNode{}
	var roots []*treeNode
	for _, s := range rep.Supervisors {
		n := &treeNode{sup: s}
		if parent, ok := byPath[s.Parent]; ok && s.Parent != "" {
			parent.children = append(parent.children, n)
		} else {
			roots = append(roots, n)
		}
		byPath[s.Path] = n
	}
	for _, wr := range rep.Workers {
		n, ok := byPath[wr.Supervisor]
		if !ok {
			n = &treeNode{sup: api.Supervisor{Path: wr.Supervisor}, synthetic: true}
			byPath[wr.Supervisor] = n
			roots = append(roots, n)
		}
		n.workers = append(n.workers, wr)
	}
	return roots
}

// counts returns the running and all workers of n's subtree: the host's
// totals, else counted from the tree.
func (n *treeNode) counts() (running, total int) {
	if t := n.sup.Totals; t != nil {
		return t.Running, t.Workers
	}
	for _, wr := range n.workers {
		total++
		if wr.State == "running" {
			running++
		}
	}
	for _, c := range n.children {
		r, t := c.counts()
		running, total = running+r, total+t
	}
	return running, total
}

// statusLine is one line of the tree: text (a supervisor or a detail), or
// a row of cells, the first of them after prefix.
type statusLine struct {
	prefix string   // tree glyphs
	text   string   // painted already
	row    []string // plain cells
	colors []string // the colour of each cell, if any
}

// appendLines appends the lines of n, which is drawn after glyph; its
// children are drawn after cont.
func (n *treeNode) appendLines(lines []statusLine, glyph, cont string, p painter) []statusLine {
	lines = append(lines, statusLine{prefix: glyph, text: n.line(p)})
	k, i := len(n.workers)+len(n.children), 0
	for _, wr := range n.workers {
		i++
		g, c := branch(cont, i == k)
		lines = append(lines, workerRow(g, wr))
		for _, text := range detailsLines(wr, p) {
			lines = append(lines, statusLine{prefix: c + "  ", text: text})
		}
		if wr.LastExit != "" {
			text := "last exit"
			if !wr.LastExitAt.IsZero() {
				text += " " + human(now().Sub(wr.LastExitAt)) + " ago"
			}
			text += ": " + truncate(clean(wr.LastExit), maxDetailRunes)
			lines = append(lines, statusLine{prefix: c + "  ", text: p.paint(ansiDim, text)})
		}
	}
	for _, child := range n.children {
		i++
		g, c := branch(cont, i == k)
		lines = child.appendLines(lines, g, c, p)
	}
	return lines
}

// branch returns the glyph of a child and the prefix of its children.
func branch(cont string, last bool) (glyph, next string) {
	if last {
		return cont + "└─ ", cont + "   "
	}
	return cont + "├─ ", cont + "│  "
}

// line is a supervisor's line: path, strategy, state, the restart budget
// used, and its subtree's totals.
func (n *treeNode) line(p painter) string {
	s := n.sup
	parts := []string{p.paint(ansiBold, clean(cmp.Or(s.Path, s.Name, "-")))}
	if !n.synthetic {
		if s.Strategy != "" {
			parts = append(parts, clean(s.Strategy))
		}
		if s.State != "" {
			parts = append(parts, p.paint(stateColor(s.State), clean(s.State)))
		}
		if s.Intensity > 0 || s.Period > 0 {
			budget := fmt.Sprintf("%d/%d", s.RestartsInPeriod, s.Intensity)
			switch {
			case s.RestartsInPeriod >= s.Intensity:
				budget = p.paint(ansiRed, budget)
			case s.RestartsInPeriod > 0:
				budget = p.paint(ansiYellow, budget)
			}
			parts = append(parts, "restarts "+budget+" in "+period(s.Period))
		}
		if s.Restarts > 0 {
			parts = append(parts, fmt.Sprintf("restarted %d×", s.Restarts))
		}
	}
	running, total := n.counts()
	parts = append(parts, fmt.Sprintf("workers %d/%d running", running, total))
	if t := s.Totals; t != nil {
		parts = append(parts, "rss "+humanBytes(t.RSSBytes), "cpu "+cpuTime(t.CPUSeconds))
	}
	if s.Failure != "" {
		text := "failed"
		if !s.FailedAt.IsZero() {
			text += " " + human(now().Sub(s.FailedAt)) + " ago"
		}
		parts = append(parts, p.paint(ansiDim, text+": "+truncate(clean(s.Failure), maxDetailRunes)))
	}
	return strings.Join(parts, "  ")
}

// workerRow is a worker's row: name, state, class, pid, uptime, restarts,
// RSS and CPU.
func workerRow(glyph string, wr api.Worker) statusLine {
	rss, cpu := "-", "-"
	if m := wr.Metrics; m != nil {
		rss, cpu = humanBytes(m.RSSBytes), fmt.Sprintf("%.1f%%", m.CPUPercent)
	}
	return statusLine{
		prefix: glyph,
		row: []string{clean(cmp.Or(wr.Name, "-")), clean(cmp.Or(wr.State, "-")), clean(cmp.Or(wr.Class, "-")),
			pidText(wr.Pid), workerUptime(wr), strconv.Itoa(wr.Restarts), rss, cpu},
		colors: []string{1: stateColor(wr.State)},
	}
}

// rightAligned are the numeric columns of the worker rows.
var rightAligned = []bool{3: true, 5: true, 6: true, 7: true}

// writeLines prints the lines, the cells of rows in columns two spaces
// apart. Widths count runes: colours do not count.
func writeLines(w io.Writer, lines []statusLine, p painter) {
	var widths []int
	for _, l := range lines {
		for i, c := range l.row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			n := utf8.RuneCountInString(c)
			if i == 0 {
				n += utf8.RuneCountInString(l.prefix)
			}
			widths[i] = max(widths[i], n)
		}
	}
	for _, l := range lines {
		if l.row == nil {
			fmt.Fprintln(w, l.prefix+l.text)
			continue
		}
		var b strings.Builder
		b.WriteString(l.prefix)
		for i, c := range l.row {
			pad := widths[i] - utf8.RuneCountInString(c)
			if i == 0 {
				pad -= utf8.RuneCountInString(l.prefix)
			}
			code := ""
			if i < len(l.colors) {
				code = l.colors[i]
			}
			right := i < len(rightAligned) && rightAligned[i]
			if right {
				b.WriteString(strings.Repeat(" ", pad))
			}
			b.WriteString(p.paint(code, c))
			if !right && i < len(l.row)-1 {
				b.WriteString(strings.Repeat(" ", pad))
			}
			if i < len(l.row)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

// workerUptime is how long a running worker has run: from its metrics,
// else (an older host) from its started_at.
func workerUptime(wr api.Worker) string {
	switch {
	case wr.State != "running" && wr.State != "stopping":
		return "-"
	case wr.Metrics != nil && wr.Metrics.UptimeSeconds > 0:
		return human(seconds(wr.Metrics.UptimeSeconds))
	case !wr.StartedAt.IsZero():
		return human(now().Sub(wr.StartedAt))
	}
	return "-"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// human formats a duration the way people read uptimes: 42s, 3m12s, 2h5m,
// 4d3h.
func human(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// period formats a supervisor's period, given in seconds.
func period(secs float64) string {
	d := seconds(secs)
	if d >= time.Second && d%time.Second == 0 {
		return human(d)
	}
	return d.String()
}

// cpuTime formats CPU seconds: 12.3s, then as a duration.
func cpuTime(secs float64) string {
	if secs < 60 {
		return fmt.Sprintf("%.1fs", max(secs, 0))
	}
	return human(seconds(secs))
}

// humanBytes formats a size in binary units: 900 B, 12.3 MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// clean makes text from the host safe to print: invalid UTF-8 becomes
// U+FFFD and control characters (and the Unicode ones that reorder or
// break lines) are escaped as in Go ("\n", "\x1b", "\u202e"), so that a
// name cannot move the cursor, recolour the terminal or fake a line.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unsafeRune(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069: // bidi marks
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	}
	return false
}

// truncate cuts s to n runes, the last one an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
