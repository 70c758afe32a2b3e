package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite testdata/status/*.golden from the current output")

var statusNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixClock(t *testing.T) {
	now = func() time.Time { return statusNow }
	t.Cleanup(func() { now = time.Now })
}

// sgr matches the colour sequences the tree uses.
var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// TestStatusGolden renders every testdata/status/*.json status result
// without colours (NAME.golden) and with them (NAME.color.golden). Run
// with -update to rewrite them.
func TestStatusGolden(t *testing.T) {
	fixClock(t)
	inputs, err := filepath.Glob(filepath.Join("testdata", "status", "*.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs in testdata/status: %v", err)
	}
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.TrimSuffix(in, ".json")
		t.Run(filepath.Base(base), func(t *testing.T) {
			outs := map[bool]string{}
			for _, color := range []bool{false, true} {
				var b strings.Builder
				printResult(&b, raw, false, color)
				got := b.String()
				outs[color] = got
				golden := base + ".golden"
				if color {
					golden = base + ".color.golden"
				}
				checkGolden(t, golden, got)
				// Nothing but the tree's own colours and newlines may
				// reach the terminal.
				if strings.ContainsFunc(sgr.ReplaceAllString(got, ""), func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) {
					t.Errorf("%s: output has control characters:\n%q", golden, got)
				}
				if strings.Contains(got, "(unexpected shape") {
					t.Errorf("%s: not read as a status", golden)
				}
			}
			if strings.Contains(outs[false], "\x1b") {
				t.Error("colours in the plain output")
			}
			if !strings.Contains(outs[true], "\x1b[") {
				t.Error("no colours in the coloured output")
			}
			// Colours change nothing else, columns included.
			if plain := sgr.ReplaceAllString(outs[true], ""); plain != outs[false] {
				t.Errorf("the coloured output, without its colours, differs from the plain one:\n%s\n---\n%s", plain, outs[false])
			}
		})
	}
}

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

// The tree's details, checked apart from the golden files so that a
// careless -update cannot accept a regression.
func TestStatusTreeDetails(t *testing.T) {
	fixClock(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "status", "tree.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printResult(&b, raw, false, true)
	out := b.String()
	lines := strings.Split(sgr.ReplaceAllString(out, ""), "\n")
	find := func(s string) (int, string) {
		for i, l := range lines {
			if strings.Contains(l, s) {
				return i, l
			}
		}
		t.Fatalf("no line with %q:\n%s", s, strings.Join(lines, "\n"))
		return -1, ""
	}
	for _, want := range []string{
		"host dev/h1 · broker amqp amqp://guest:xxxxx@127.0.0.1:5672/ · up 2h0m · rss 41.2 MiB · cpu 12.3s",
		"workers: 3 running, 1 backoff, 1 stopped, 1 failed · control: 12 handled, 1 failed",
	} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %q:\n%s", want, lines[0])
		}
	}
	// Supervisors: path, strategy, state, budget used, subtree totals.
	if _, l := find("root  one_for_one"); l != "root  one_for_one  running  restarts 2/5 in 30s  workers 3/6 running  rss 24.7 MiB  cpu 1m15s" {
		t.Errorf("root: %q", l)
	}
	if _, l := find("root/campaign-a/inner"); !strings.HasPrefix(l, "│  └─ root/campaign-a/inner  rest_for_one  failed  restarts 0/1 in 500ms") ||
		!strings.HasSuffix(l, "failed 1m0s ago: restart intensity exceeded: 2 restarts in 500ms") {
		t.Errorf("inner: %q", l)
	}
	// Workers: the name escaped, never raw; columns line up.
	i, smpp := find(`SMPP "main" transport\x1b[2J for 'account 1'\u202e`)
	if !strings.HasPrefix(smpp, "│  ├─ ") || !strings.Contains(smpp, "backoff") {
		t.Errorf("smpp: %q", smpp)
	}
	if strings.Contains(out, "\x1b[2J") || strings.Contains(out, "\u202e") {
		t.Error("a control character of a name reached the output")
	}
	_, head := find("NAME")
	_, greeter := find("greeter")
	for col, value := range map[string]string{"STATE": "running", "CLASS": "hello", "UPTIME": "3m12s"} {
		if runeIndex(head, col) != runeIndex(greeter, value) || runeIndex(smpp, "backoff") != runeIndex(head, "STATE") {
			t.Errorf("column %s is not aligned:\n%s\n%s\n%s", col, head, greeter, smpp)
		}
	}
	if f := strings.Fields(greeter); strings.Join(f[2:], " ") != "running hello 4242 3m12s 2 12.3 MiB 1.5%" {
		t.Errorf("greeter: %q", greeter)
	}
	if lines[i+1] != "│  │    last exit 1s ago: exit status 1" {
		t.Errorf("smpp's last exit: %q", lines[i+1])
	}
	// A worker without metrics, and a long multi-line last exit cut short.
	if _, l := find("idle"); strings.Join(strings.Fields(l)[3:], " ") != "stopped hello - - 0 - -" {
		t.Errorf("idle: %q", l)
	}
	j, _ := find("crasher")
	const lead = "│          last exit 1m0s ago: "
	if l := lines[j+1]; !strings.HasPrefix(l, lead+"start: plugin exited: panic:") || !strings.HasSuffix(l, "…") ||
		!strings.Contains(l, `\n\ngoroutine`) || len([]rune(l)) != len([]rune(lead))+maxDetailRunes {
		t.Errorf("crasher's last exit: %q", l)
	}
	// State colours.
	for _, want := range []string{"\x1b[32mrunning\x1b[0m", "\x1b[33mbackoff\x1b[0m", "\x1b[31mfailed\x1b[0m", "\x1b[2mstopped\x1b[0m",
		"\x1b[1mroot/pool\x1b[0m", "\x1b[2mlast exit 3m12s ago: killed by SIGKILL\x1b[0m"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

const oldStatus = `{
  "system_id": "dev", "host": "h1", "broker": "amqp://guest:xxxxx@127.0.0.1:5672/",
  "started": "2026-03-01T10:00:00Z",
  "workers": [
    {"name": "greeter", "supervisor": "root", "class": "hello", "state": "running", "pid": 4242,
     "since": "2026-03-01T11:56:48Z", "started_at": "2026-03-01T11:56:48Z", "restarts": 2},
    {"name": "bare"}
  ]
}`

// status over the HTTP API: the tree on a pipe has no colours; -json
// (and --json) prints the result as it came.
func TestStatusCommand(t *testing.T) {
	fixClock(t)
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{OK: true, Result: json.RawMessage(oldStatus)}
	}}
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "status", "--http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	want := `host dev/h1 · broker amqp://guest:xxxxx@127.0.0.1:5672/ · up 2h0m · workers: 1 running, 1 unknown
NAME        STATE    CLASS   PID  UPTIME  RESTARTS  RSS  CPU
root  workers 1/1 running
└─ greeter  running  hello  4242  3m12s          2    -    -
-  workers 0/1 running
└─ bare     -        -         -  -              0    -    -
`
	if stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
	if got := d.requests(); len(got) != 1 || got[0].Operation != control.OpStatus {
		t.Errorf("requests %+v", got)
	}
	for _, spelling := range []string{"-json", "--json", "-json=true"} {
		stdout, _, rc = runCLI(t, "status", spelling, "--http", url)
		var round map[string]any
		if rc != 0 || json.Unmarshal([]byte(stdout), &round) != nil || round["host"] != "h1" {
			t.Errorf("%s: rc %d\n%s", spelling, rc, stdout)
		}
	}
	// -no-color is accepted (there are no colours on a pipe anyway).
	if stdout, _, rc := runCLI(t, "status", "-no-color", "--http", url); rc != 0 || strings.Contains(stdout, "\x1b") {
		t.Errorf("-no-color: rc %d\n%q", rc, stdout)
	}
}

func TestStatusTolerates(t *testing.T) {
	for name, result := range map[string]string{
		"no workers":     `{"host": "h2", "workers": []}`,
		"nothing at all": `{}`,
	} {
		d := &fakeDoer{reply: func(*control.Request) control.Reply {
			return control.Reply{OK: true, Result: json.RawMessage(result)}
		}}
		stdout, stderr, rc := runCLI(t, "status", "--http", apiServer(t, d, ""))
		if rc != 0 || !strings.Contains(stdout, "no workers") {
			t.Errorf("%s: rc %d stdout %q stderr %q", name, rc, stdout, stderr)
		}
	}
	// A shape the CLI does not know is shown as JSON.
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{OK: true, Result: []string{"odd"}}
	}}
	stdout, _, rc := runCLI(t, "status", "--http", apiServer(t, d, ""))
	if rc != 0 || !strings.Contains(stdout, "unexpected shape") || !strings.Contains(stdout, `"odd"`) {
		t.Errorf("odd shape: rc %d\n%s", rc, stdout)
	}
}

func TestStatusUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-interval", "1s"}, "-interval goes with -watch"},
		{[]string{"status", "-watch", "-interval", "1ms"}, "-interval must be at least 100ms"},
		{[]string{"status", "--watch", "--amqp", "amqp://127.0.0.1:1/", "--all"}, "-watch asks one host"},
		{[]string{"status", "-watch", "-amqp", "amqp://127.0.0.1:1/", "-any"}, "-watch asks one host"},
		{[]string{"status", "-watch", "-interval", "soon"}, "invalid value"},
	} {
		_, stderr, rc := runCLI(t, tc.args...)
		if rc != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: rc %d, stderr:\n%s", tc.args, rc, stderr)
		}
	}
}

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 999 * time.Millisecond: "0s", 42 * time.Second: "42s", 3*time.Minute + 12*time.Second: "3m12s",
		time.Hour: "1h0m", 2*time.Hour + 5*time.Minute + 59*time.Second: "2h5m", 4*24*time.Hour + 3*time.Hour: "4d3h",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 12897485: "12.3 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for s, want := range map[float64]string{0.5: "500ms", 30: "30s", 90: "1m30s", 1.5: "1.5s"} {
		if got := period(s); got != want {
			t.Errorf("period(%v) = %q, want %q", s, got, want)
		}
	}
	for in, want := range map[string]string{
		`a "b" 'c' d`:        `a "b" 'c' d`,
		"tab\there":          `tab\there`,
		"esc\x1b[31mred":     `esc\x1b[31mred`,
		"nl\r\nx":            `nl\r\nx`,
		"c1\u009bx":          `c1\u009bx`,
		"bidi\u202eevil":     `bidi\u202eevil`,
		"bad\xffutf8":        "bad\uFFFDutf8",
		"ünïcødé ✓ 名前":       "ünïcødé ✓ 名前",
		"line\u2028separate": `line\u2028separate`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// runeIndex is strings.Index in runes, as columns are counted.
func runeIndex(s, sub string) int {
	i := strings.Index(s, sub)
	if i < 0 {
		return -1
	}
	return len([]rune(s[:i]))
}

// The real host, asked by the real command (the re-executed test binary,
// its stdout a pipe): the tree shows the workers running under their
// supervisors, each with its own Status() details (chaos answers its mode
// and pid) or, for the one whose Status hangs, why there are none; -json
// passes the details through.
func TestStatusOnTheRealHost(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, `
supervisor "root" {
  worker "greeter \"one\"" {
    class = "chaos"
  }
  supervisor "campaign-a" {
    worker "a1" {
      class = "chaos"
    }
    worker "mute" {
      class = "chaos"
      config {
        hang_status = true
      }
    }
  }
}
`))
	m := listenAddr.FindStringSubmatch(h.waitLine("HTTP API listening"))
	if m == nil {
		t.Fatalf("no address in the log:\n%s", h.logText())
	}
	apiURL := "http://" + m[1]
	h.waitLine("host running")
	// Wait until the workers run, have been sampled and (the two that
	// answer) have details: a loaded machine may let a Status answer miss
	// the host's deadline once.
	const greeter = `greeter "one"`
	var byName map[string]api.Worker
	var last string
	sdktest.Eventually(t, waitTimeout, func() bool {
		stdout, stderr, rc := runCLI(t, "status", "-json", "-http", apiURL)
		var rep api.Status
		if rc != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
			t.Fatalf("status -json: rc %d\n%s\n%s", rc, stdout, stderr)
		}
		last = stdout
		byName = map[string]api.Worker{}
		for _, w := range rep.Workers {
			if w.State == "running" && w.Metrics != nil {
				byName[w.Name] = w
			}
		}
		return len(byName) == 3 && len(rep.Supervisors) == 2 && byName[greeter].Details != nil && byName["a1"].Details != nil
	}, "the workers do not run with their details; last status:\n%s", lazy(func() any { return last }))
	// -json: the details as the worker sent them.
	for _, name := range []string{greeter, "a1"} {
		w := byName[name]
		var details map[string]any
		if err := json.Unmarshal(w.Details, &details); err != nil || details["mode"] != "run" ||
			details["pid"] != float64(w.Pid) || len(details) != 3 || w.DetailsError != "" {
			t.Errorf("%s: details %s (%v), details_error %q; want mode run, pid %d and health_checks", name, w.Details, err, w.DetailsError, w.Pid)
		}
	}
	// mute's reason is the host's: usually that it did not answer in time.
	if mute := byName["mute"]; mute.Details != nil || mute.DetailsError == "" {
		t.Errorf("mute: details %s, details_error %q; want none and why", mute.Details, mute.DetailsError)
	}

	// Only mute may lack details; ask again if another one missed the
	// host's deadline too.
	var out string
	sdktest.Eventually(t, waitTimeout, func() bool {
		cmd := exec.Command(os.Args[0], "status", "-http", apiURL)
		cmd.Env = append(os.Environ(), "DYNWORKERS_CLI_MAIN=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("dynworkers status: %v\n%s", err, stderr.String())
		}
		out = stdout.String()
		return strings.Count(out, "    details: ") <= 1
	}, "more than one worker without details:\n%s", lazy(func() any { return out }))
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "host test/cli-test · broker embedded (no amqp block) · up ") ||
		!strings.Contains(lines[0], "workers: 3 running · control: ") || strings.Contains(out, "\x1b") {
		t.Errorf("header:\n%s", out)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^root  one_for_one  running  restarts 0/\d+ in \S+  workers 3/3 running  rss \d`),
		regexp.MustCompile(`^├─ greeter "one"  +running  chaos  +\d+  \d\S*s  +0  +\d+\.\d [KMG]iB  +\d+\.\d%$`),
		regexp.MustCompile(`^│    health_checks=\d+ mode=run pid=` + strconv.Itoa(byName[greeter].Pid) + `$`),
		regexp.MustCompile(`^└─ root/campaign-a  one_for_one  running  .*workers 2/2 running`),
		regexp.MustCompile(`^   ├─ a1  +running  chaos  +` + strconv.Itoa(byName["a1"].Pid) + `  `),
		regexp.MustCompile(`^   │    health_checks=\d+ mode=run pid=` + strconv.Itoa(byName["a1"].Pid) + `$`),
		regexp.MustCompile(`^   └─ mute  +running  chaos  +\d+  `),
		regexp.MustCompile(`^        details: \S`),
	}
	if len(lines) < len(want)+2 {
		t.Fatalf("status:\n%s", out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i+2]) {
			t.Errorf("line %d does not match %s:\n%s", i+3, re, out)
		}
	}
}
