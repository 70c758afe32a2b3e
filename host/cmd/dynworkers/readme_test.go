package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's tour ("## A five-minute tour") is run as a reader would
// follow it: every ```sh block, in order, in one bash shell (so that the
// host started with & in one block is the %1 of a later one), in a copy
// of the repository without bin/ or var/, from `make build` on. Each
// block's output (stdout and stderr) must match the ``` block that follows
// it in the README, if there is one, after normalisation (see normalize);
// every block must exit with status 0.
//
// An HTML comment right before a block changes that:
//
//	<!-- tour: exit N -->  the block's exit status is N
//	<!-- tour: retry -->   the block is run again until its output
//	                       matches (for at most tourRetry): for a status
//	                       that waits for a worker to come back, as the
//	                       reader is told to wait
//	<!-- tour: subset -->  the output block's lines must be lines of the
//	                       output, in that order, with others between
//	                       them allowed (for a log whose periodic lines
//	                       depend on timing; the README says so)
//
// The copy's configs/dynworkers.hcl gets free ports instead of 7780 and
// 2323 (so that the test does not collide with a host on the machine);
// the commands the blocks run and their outputs have them swapped back.

const (
	tourSection = "## A five-minute tour"
	tourRetry   = 90 * time.Second
	// tourStepTimeout bounds one block (make build included).
	tourStepTimeout = 10 * time.Minute
	readmeHTTPPort  = "7780"
	readmeTelnet    = "2323"
	readmeRoot      = "/home/you/dynworkers"
	readmeHostname  = "myhost"
)

type tourStep struct {
	line   int    // the line of its ```sh fence
	script string // the block
	want   string // the output block after it
	hasOut bool   // whether there is one
	retry  bool
	subset bool
	exit   int
}

// tourSteps reads the tour's steps from a README.
func tourSteps(t *testing.T, path string) []tourStep {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	for i, l := range lines {
		if l == tourSection {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s has no %q section", path, tourSection)
	}
	marker := regexp.MustCompile(`^<!-- tour: (.*) -->$`)
	var steps []tourStep
	var pending tourStep
	// block reads a fenced block's body from the line after its fence.
	block := func(i int) (string, int) {
		var body []string
		for ; i < len(lines); i++ {
			if lines[i] == "```" {
				return strings.Join(body, "\n"), i + 1
			}
			body = append(body, lines[i])
		}
		t.Fatalf("%s: unclosed block", path)
		return "", i
	}
	for i := start; i < len(lines); {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "## "):
			i = len(lines) // the next section
		case marker.MatchString(l):
			m := marker.FindStringSubmatch(l)[1]
			switch {
			case m == "retry":
				pending.retry = true
			case m == "subset":
				pending.subset = true
			case strings.HasPrefix(m, "exit "):
				n, err := strconv.Atoi(strings.TrimPrefix(m, "exit "))
				if err != nil {
					t.Fatalf("%s:%d: bad marker %q", path, i+1, l)
				}
				pending.exit = n
			default:
				t.Fatalf("%s:%d: unknown marker %q", path, i+1, l)
			}
			i++
		case l == "```sh":
			s := pending
			pending = tourStep{}
			s.line = i + 1
			s.script, i = block(i + 1)
			j := i
			for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
				j++
			}
			if j < len(lines) && lines[j] == "```" {
				s.want, i = block(j + 1)
				s.hasOut = true
			}
			steps = append(steps, s)
		case l == "```":
			t.Fatalf("%s:%d: an output block that follows no sh block", path, i+1)
		default:
			i++
		}
	}
	return steps
}

// Normalisation: what must vary from run to run is replaced, in the
// README's blocks and in the output alike, by a placeholder. Each rule is
// narrow on purpose: anything it does not match is compared as it is.
var normalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?`), "<time>"},
	{regexp.MustCompile(`\b\d+(\.\d+)? ?(B|KiB|MiB|GiB)\b`), "<size>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?%`), "<pct>"},
	{regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))+\b`), "<dur>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?e[+-]?\d+\b`), "<num>"},
	{regexp.MustCompile(`\b\d+ handled\b`), "<num> handled"},
	{regexp.MustCompile(`\b([a-z_]+)=\d+(\.\d+)?\b`), "$1=<num>"},
	{regexp.MustCompile(`("[a-z_]+": )\d+\b`), "$1<num>"},
	{regexp.MustCompile(`[ \t]+`), " "},
}

// manyDigits is a number of two digits or more (a pid, a counter), but
// not a part of a dotted one (127.0.0.1, 1.0.0).
var manyDigits = regexp.MustCompile(`\d{2,}`)

// normalize applies normalizers, trims the lines' ends (spaces and a
// carriage return) and drops trailing empty lines.
func normalize(s string) string {
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	var b strings.Builder
	last := 0
	for _, m := range manyDigits.FindAllStringIndex(s, -1) {
		dotted := (m[0] > 0 && (s[m[0]-1] == '.' || isDigit(s[m[0]-1]))) || (m[1] < len(s) && (s[m[1]] == '.' || isDigit(s[m[1]])))
		if m[0] > 0 && isWord(s[m[0]-1]) || m[1] < len(s) && isWord(s[m[1]]) || dotted {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString("<num>")
		last = m[1]
	}
	b.WriteString(s[last:])
	s = b.String()
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \r") // a terminal shows a CRLF line (telnet's) as a line
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// matches reports whether an output matches the README's block: equal,
// or with subset, the block's lines found in the output in order.
func matches(out, want string, subset bool) bool {
	if !subset {
		return out == want
	}
	lines := strings.Split(out, "\n")
	i := 0
	for _, w := range strings.Split(want, "\n") {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			return false
		}
		i++
	}
	return true
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// copyTree copies the repository at src to dst, without .git, bin and var
// (a fresh checkout's state).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == ".git" || rel == "bin" || rel == "var") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm()&0o755)
		}
		return nil // sockets, links: not part of a checkout
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tourShell is the reader's terminal: one bash reading commands from a
// pipe; each block is sourced with its output to a file.
type tourShell struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	dir   string // where outputs go
	n     int
	subst func(string) string // the README's ports for the test's
}

func (sh *tourShell) run(script string) (string, int) {
	sh.t.Helper()
	sh.n++
	file := filepath.Join(sh.dir, fmt.Sprintf("step-%d.sh", sh.n))
	outFile := filepath.Join(sh.dir, fmt.Sprintf("step-%d.out", sh.n))
	if err := os.WriteFile(file, []byte(sh.subst(script)+"\n"), 0o600); err != nil {
		sh.t.Fatal(err)
	}
	fmt.Fprintf(sh.in, "{ . %q; } > %q 2>&1 < /dev/null; echo \"::done $?\"\n", file, outFile)
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		l, err := sh.out.ReadString('\n')
		got <- result{l, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(tourStepTimeout):
		sh.t.Fatalf("a block did not end within %s:\n%s", tourStepTimeout, script)
	}
	if r.err != nil {
		sh.t.Fatalf("the shell ended: %v", r.err)
	}
	rc, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(r.line, "::done ")))
	if err != nil {
		sh.t.Fatalf("the shell said %q", r.line)
	}
	out, err := os.ReadFile(outFile)
	if err != nil {
		sh.t.Fatal(err)
	}
	return string(out), rc
}

// TestReadmeTour runs the README's tour (see the comment at the top).
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds everything and runs the host")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("the tour needs make: %v", err)
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	steps := tourSteps(t, filepath.Join(repo, "README.md"))
	if len(steps) < 5 {
		t.Fatalf("the tour has %d sh blocks", len(steps))
	}

	tmp := t.TempDir()
	root := filepath.Join(tmp, "dynworkers")
	copyTree(t, repo, root)
	httpPort, telnetPort := freePort(t), freePort(t)
	cfgPath := filepath.Join(root, "configs", "dynworkers.hcl")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer("127.0.0.1:"+readmeHTTPPort, "127.0.0.1:"+httpPort, "= "+readmeTelnet, "= "+telnetPort, " "+readmeTelnet, " "+telnetPort, "127.0.0.1/"+readmeTelnet, "127.0.0.1/"+telnetPort)
	if !strings.Contains(string(cfg), "127.0.0.1:"+readmeHTTPPort) || !strings.Contains(string(cfg), "= "+readmeTelnet) {
		t.Fatalf("configs/dynworkers.hcl does not use ports %s and %s as the README says", readmeHTTPPort, readmeTelnet)
	}
	if err := os.WriteFile(cfgPath, []byte(local.Replace(string(cfg))), 0o644); err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	// back turns the test's paths, ports and host name into the README's.
	back := strings.NewReplacer(root, readmeRoot, "127.0.0.1:"+httpPort, "127.0.0.1:"+readmeHTTPPort,
		":"+telnetPort, ":"+readmeTelnet, "port "+telnetPort, "port "+readmeTelnet, "/"+hostname+" ", "/"+readmeHostname+" ")

	outDir := filepath.Join(tmp, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "LC_ALL=C", "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := &tourShell{t: t, cmd: cmd, in: in, out: bufio.NewReader(stdout), dir: outDir, subst: local.Replace}
	t.Cleanup(func() { stopTour(t, sh, root) })

	for i, s := range steps {
		deadline := time.Now().Add(tourRetry)
		for {
			out, rc := sh.run(s.script)
			out = back.Replace(out)
			ok := rc == s.exit && (!s.hasOut || matches(normalize(out), normalize(s.want), s.subset))
			if ok {
				break
			}
			if s.retry && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
				continue
			}
			msg := fmt.Sprintf("README.md:%d: step %d:\n%s\nexit status %d, want %d", s.line, i+1, s.script, rc, s.exit)
			if s.hasOut {
				msg += fmt.Sprintf("\n--- output (README paths and ports)\n%s\n--- normalised\n%s\n--- the README's, normalised\n%s", out, normalize(out), normalize(s.want))
			} else {
				msg += "\n--- output\n" + out
			}
			if log, err := os.ReadFile(filepath.Join(root, "var", "host.log")); err == nil {
				msg += "\n--- var/host.log\n" + string(log)
			}
			t.Fatal(msg)
		}
	}
}

// stopTour ends the shell and whatever it left running: the host gets
// SIGTERM (it stops its workers), anything left after that SIGKILL. It
// fails the test if a process of the copy's binaries outlives it.
func stopTour(t *testing.T, sh *tourShell, root string) {
	sh.in.Close()
	pgid := sh.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = sh.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := processesUnder(root)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("processes of the tour still running: %v (killed)", left)
			break
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-done
}

// processesUnder lists the live processes whose executable is under dir.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, dir+"/") {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// The normalisation hides what varies from run to run and nothing else:
// pids, times, durations, sizes, percentages and counters, but not a
// worker's state, its restarts or a line too many or too few.
func TestTourNormalize(t *testing.T) {
	same := [][2]string{
		{"├─ greeter  running  hello  41242  2s   0  16.7 MiB  0.0%", "├─ greeter running hello 88 1m30s 0 9.1 KiB 12.5%"},
		{"2026-12-03T16:47:49.102Z [INFO] worker_started: worker=greeter pid=41242 attempt=1", "2027-01-01T00:00:00.5Z [INFO] worker_started: worker=greeter pid=9 attempt=3"},
		{"control: 1 handled, 0 failed", "control: 325 handled, 0 failed"},
		{`  "pid": 41340,`, `  "pid": 7,`},
		{"killed greeter (pid 41242) with SIGKILL", "killed greeter (pid 88) with SIGKILL"},
		{"uptime_seconds=2.488129205", "uptime_seconds=0.2"},
		{"hello, echo\r\n", "hello, echo"},
	}
	for _, p := range same {
		if a, b := normalize(p[0]), normalize(p[1]); a != b {
			t.Errorf("%q and %q normalise to\n%q\n%q", p[0], p[1], a, b)
		}
	}
	differ := [][2]string{
		{"├─ greeter running hello 41242 2s 1 16.7 MiB 0.0%", "├─ greeter running hello 41242 2s 0 16.7 MiB 0.0%"},
		{"├─ greeter running hello 41242 2s 1 16.7 MiB 0.0%", "├─ greeter backoff hello 41242 2s 1 16.7 MiB 0.0%"},
		{"restarts 1/5 in 30s", "restarts 0/5 in 30s"},
		{"control: 1 handled, 0 failed", "control: 1 handled, 1 failed"},
		{"host string default \"127.0.0.1\"", "host string default \"10.0.0.1\""},
		{"hello 1.0.0 (/home/you/dynworkers/bin/plugins/hello-worker)", "dynworkers.echo 1.0.0 (/home/you/dynworkers/bin/plugins/echo)\n\nhello 1.0.0 (/home/you/dynworkers/bin/plugins/hello-worker)"},
	}
	for _, p := range differ {
		if normalize(p[0]) == normalize(p[1]) {
			t.Errorf("%q and %q normalise to the same %q", p[0], p[1], normalize(p[0]))
		}
	}
}

func TestTourSubset(t *testing.T) {
	out := "a\nb\nc\nd"
	for want, ok := range map[string]bool{"a\nc": true, "b\nd": true, "a\nb\nc\nd": true, "c\na": false, "a\ne": false, "a\na": false} {
		if got := matches(out, want, true); got != ok {
			t.Errorf("subset %q of %q = %v", want, out, got)
		}
	}
	if matches(out, "a\nc", false) {
		t.Error("without subset, a part matches")
	}
}
