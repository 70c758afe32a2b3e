package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

var statusNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixClock(t *testing.T) {
	now = func() time.Time { return statusNow }
	t.Cleanup(func() { now = time.Now })
}

const statusResult = `{
  "system_id": "dev", "host": "h1", "broker": "amqp://guest:xxxxx@127.0.0.1:5672/",
  "started": "2026-03-01T10:00:00Z",
  "workers": [
    {"name": "greeter", "supervisor": "root", "class": "hello", "state": "running", "pid": 4242,
     "since": "2026-03-01T11:56:48Z", "started_at": "2026-03-01T11:56:48Z", "restarts": 2,
     "last_exit": "killed by SIGKILL", "source": "hcl", "config": {"greeting": "hi"}},
    {"name": "SMPP Transport for account1", "supervisor": "root/campaign-a", "class": "vumi.workers.smpp.transport.SMPPTransport",
     "state": "backoff", "since": "2026-03-01T11:59:59Z", "restarts": 0, "source": "control",
     "config": {"password": "(sensitive)"}},
    {"name": "bare"}
  ]
}`

func TestStatusTable(t *testing.T) {
	fixClock(t)
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{OK: true, Result: json.RawMessage(statusResult)}
	}}
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "status", "--http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	want := `host h1, system_id dev, broker amqp://guest:xxxxx@127.0.0.1:5672/, up 2h00m
SUPERVISOR       WORKER                       CLASS                                      STATE    PID   UPTIME  RESTARTS  LAST EXIT
root             greeter                      hello                                      running  4242  3m12s   2         killed by SIGKILL
root/campaign-a  SMPP Transport for account1  vumi.workers.smpp.transport.SMPPTransport  backoff  -     -       0         -
-                bare                         -                                          -        -     -       0         -
`
	if stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
	if strings.Contains(stdout, "\x1b[") {
		t.Error("colours on a non-terminal")
	}
	if got := d.requests(); len(got) != 1 || got[0].Operation != control.OpStatus {
		t.Errorf("requests %+v", got)
	}

	stdout, _, rc = runCLI(t, "status", "--json", "--http", url)
	var round map[string]any
	if rc != 0 || json.Unmarshal([]byte(stdout), &round) != nil || round["host"] != "h1" {
		t.Errorf("--json: rc %d\n%s", rc, stdout)
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

func TestStatusColours(t *testing.T) {
	fixClock(t)
	var rep statusReport
	if err := json.Unmarshal([]byte(statusResult), &rep); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printStatus(&b, &rep, true)
	out := b.String()
	for _, want := range []string{"\x1b[32mrunning\x1b[0m", "\x1b[33mbackoff\x1b[0m", "STATE  "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%q", want, out)
		}
	}
	// Colour codes do not shift the columns after the state.
	lines := strings.Split(out, "\n")
	plain := func(s string) string {
		for _, c := range []string{"\x1b[32m", "\x1b[33m", "\x1b[0m"} {
			s = strings.ReplaceAll(s, c, "")
		}
		return s
	}
	if strings.Index(plain(lines[2]), "4242") != strings.Index(lines[1], "PID") {
		t.Errorf("columns shifted:\n%s", out)
	}
}

func TestAge(t *testing.T) {
	fixClock(t)
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 42 * time.Second: "42s", 3*time.Minute + 5*time.Second: "3m05s",
		5*time.Hour + 3*time.Minute: "5h03m", 52 * time.Hour: "2d04h",
	} {
		if got := age(statusNow.Add(-d)); got != want {
			t.Errorf("age(%s) = %q, want %q", d, got, want)
		}
	}
}
