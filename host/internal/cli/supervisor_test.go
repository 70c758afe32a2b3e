package cli

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

func TestStartSupervisorBuildsTheRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want control.Request
	}{
		{"minimal", []string{"campaign-a"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "campaign-a"}},
		{"every flag", []string{"campaign-a", "-parent", "root/campaigns", "-strategy", "one_for_all", "-intensity", "3", "-period", "1m30s"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "campaign-a", Supervisor: "root/campaigns",
				Strategy: "one_for_all", Intensity: json.RawMessage(`3`), Period: json.RawMessage(`"1m30s"`)}},
		{"flags around the name", []string{"--strategy", "rest_for_one", "SMPP campaigns", "--parent", "root"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "SMPP campaigns", Supervisor: "root", Strategy: "rest_for_one"}},
		{"period in seconds", []string{"s", "-period", "90"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "s", Period: json.RawMessage(`90`)}},
		{"period in fractional seconds", []string{"s", "-period", "0.5"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "s", Period: json.RawMessage(`0.5`)}},
		{"intensity 0 is sent", []string{"s", "-intensity", "0"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "s", Intensity: json.RawMessage(`0`)}},
		{"name after --", []string{"--", "-odd"},
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "-odd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDoer{reply: func(r *control.Request) control.Reply {
				return control.Reply{OK: true, Result: api.SupervisorResult{Supervisor: "root/" + r.SupervisorName, Action: "started", State: "running"}}
			}}
			url := apiServer(t, d, "")
			stdout, stderr, rc := runCLI(t, append([]string{"start-supervisor", "--http", url}, tt.args...)...)
			if rc != 0 {
				t.Fatalf("rc %d, stderr:\n%s", rc, stderr)
			}
			reqs := d.requests()
			if len(reqs) != 1 {
				t.Fatalf("the host got %d requests", len(reqs))
			}
			if !reflect.DeepEqual(reqs[0], tt.want) {
				t.Errorf("request\n got %+v\nwant %+v", reqs[0], tt.want)
			}
			if want := `started supervisor "root/` + tt.want.SupervisorName + `" (running)` + "\n"; stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
		})
	}
}

// specHost is a control.Host that records the supervisor calls it gets,
// for tests through the real HTTP API and Dispatcher.
type specHost struct {
	control.Host // nil: other calls panic, which the Dispatcher reports
	mu           sync.Mutex
	specs        []control.SupervisorSpec
	paths        []string
	result       api.SupervisorResult
	err          error
}

func (h *specHost) StartSupervisor(_ context.Context, spec control.SupervisorSpec) (api.SupervisorResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.specs = append(h.specs, spec)
	return h.result, h.err
}

func (h *specHost) StopSupervisor(_ context.Context, path string) (api.SupervisorResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paths = append(h.paths, path)
	return h.result, h.err
}

func TestStartSupervisorThroughTheDispatcher(t *testing.T) {
	h := &specHost{result: api.SupervisorResult{Supervisor: "root/campaigns/a", Action: "unchanged", State: "running"}}
	url := apiServer(t, control.NewDispatcher(h, nil), "")
	stdout, stderr, rc := runCLI(t, "start-supervisor", "a", "-parent", "root/campaigns", "-strategy", "one_for_all",
		"-intensity", "0", "-period", "90", "-http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	if want := `supervisor "root/campaigns/a" already runs with these settings: unchanged (running)` + "\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	_, stderr, rc = runCLI(t, "start-supervisor", "b", "-period", "2m", "-intensity", "7", "-http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	want := []control.SupervisorSpec{
		{Name: "a", Parent: "root/campaigns", Strategy: "one_for_all", Intensity: -1, Period: 90 * time.Second},
		{Name: "b", Intensity: 7, Period: 2 * time.Minute},
	}
	if !reflect.DeepEqual(h.specs, want) {
		t.Errorf("specs\n got %+v\nwant %+v", h.specs, want)
	}

	// Values only the host checks.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"c", "-strategy", "one_for_al"}, `invalid_config: strategy "one_for_al" is not a supervisor strategy: use "one_for_one", "one_for_all" or "rest_for_one" (did you mean "one_for_all"?)`},
		{[]string{"c", "-intensity", "1000001"}, "invalid_config: intensity must be a whole number from 0 to 1000000"},
		{[]string{"../c"}, `invalid_config: supervisor_name "../c" is not a valid name`},
		{[]string{"c", "-parent", "root//x"}, `invalid_config: supervisor "root//x" is not a supervisor path`},
	} {
		_, stderr, rc := runCLI(t, append([]string{"start-supervisor", "-http", url}, tt.args...)...)
		if rc != 1 || !strings.Contains(stderr, "dynworkers start-supervisor: "+tt.want) {
			t.Errorf("%v: rc %d\n%s", tt.args, rc, stderr)
		}
	}
	if len(h.specs) != 2 {
		t.Errorf("the host got %d starts, want 2", len(h.specs))
	}
}

func TestStopSupervisor(t *testing.T) {
	h := &specHost{}
	url := apiServer(t, control.NewDispatcher(h, nil), "")

	h.result = api.SupervisorResult{Supervisor: "root/campaign-a", Action: "removed", State: "stopped",
		Removed: []string{"a1", "root/campaign-a/b", "b1", "root/campaign-a"}}
	stdout, stderr, rc := runCLI(t, "stop-supervisor", "root/campaign-a", "-http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	want := `removed supervisor "root/campaign-a" (stopped)
  removed a1
  removed root/campaign-a/b
  removed b1
`
	if stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}

	h.result = api.SupervisorResult{Supervisor: "root/SMPP campaigns", Action: "stopped", State: "stopped"}
	stdout, stderr, rc = runCLI(t, "stop-supervisor", "-http", url, "/SMPP campaigns/")
	if rc != 0 || stdout != `stopped supervisor "root/SMPP campaigns" and its subtree until the next reload or host restart (stopped)`+"\n" {
		t.Errorf("rc %d stdout %q stderr %q", rc, stdout, stderr)
	}

	h.result, h.err = api.SupervisorResult{}, control.Errorf(control.CodeNotFound, "supervisor %q not found", "ghost")
	_, stderr, rc = runCLI(t, "stop-supervisor", "ghost", "-http", url)
	if rc != 1 || !strings.Contains(stderr, `dynworkers stop-supervisor: not_found: supervisor "ghost" not found`) {
		t.Errorf("not found: rc %d\n%s", rc, stderr)
	}
	if want := []string{"root/campaign-a", "SMPP campaigns", "ghost"}; !reflect.DeepEqual(h.paths, want) {
		t.Errorf("paths %q, want %q", h.paths, want)
	}
}

func TestStartSupervisorConflictHint(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		return control.Reply{Error: control.Errorf(control.CodeConflict,
			"supervisor %q exists with different settings (strategy one_for_one, intensity 5, period 30s)", "root/"+r.SupervisorName)}
	}}
	url := apiServer(t, d, "")
	_, stderr, rc := runCLI(t, "start-supervisor", "a", "-strategy", "one_for_all", "-http", url)
	if rc != 1 || !strings.Contains(stderr, "conflict: supervisor \"root/a\" exists") || !strings.Contains(stderr, "hint: a supervisor's settings cannot change") {
		t.Errorf("rc %d\n%s", rc, stderr)
	}
}

func TestSupervisorUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"start-supervisor", "-strategy", "one_for_all"}, "missing the supervisor NAME"},
		{"two names", []string{"start-supervisor", "a", "b"}, `unexpected argument "b"`},
		{"intensity not a number", []string{"start-supervisor", "a", "-intensity", "five"}, `invalid value "five" for flag -intensity`},
		{"intensity fraction", []string{"start-supervisor", "a", "-intensity", "2.5"}, `invalid value "2.5" for flag -intensity`},
		{"intensity negative", []string{"start-supervisor", "a", "-intensity", "-1"}, "-intensity must be 0 or more"},
		{"period not a duration", []string{"start-supervisor", "a", "-period", "soon"}, `-period "soon" is not a duration`},
		{"period empty", []string{"start-supervisor", "a", "-period", ""}, `-period "" is not a duration`},
		{"period zero", []string{"start-supervisor", "a", "-period", "0"}, "-period must be greater than zero, not 0"},
		{"period zero duration", []string{"start-supervisor", "a", "-period", "0s"}, "-period must be greater than zero"},
		{"period negative", []string{"start-supervisor", "a", "-period", "-5s"}, "-period must be greater than zero"},
		{"period infinite", []string{"start-supervisor", "a", "-period", "Inf"}, "-period Inf is too long"},
		{"class flag", []string{"start-supervisor", "a", "-class", "c"}, "flag provided but not defined: -class"},
		{"start amqp without target", []string{"start-supervisor", "a", "--amqp", "amqp://127.0.0.1:1/"}, "exactly one of -host NAME, -all or -any"},
		{"stop no path", []string{"stop-supervisor"}, "missing the supervisor PATH (or name)"},
		{"stop two paths", []string{"stop-supervisor", "a", "b"}, `unexpected argument "b"`},
		{"stop slash", []string{"stop-supervisor", "/"}, `"/" is not a supervisor path`},
		{"stop dot dot", []string{"stop-supervisor", "root/../x"}, `"root/../x" is not a supervisor path such as root/campaign-a: a name must not be ".."`},
		{"stop empty segment", []string{"stop-supervisor", "root//x"}, "a name must not be empty"},
		{"stop control char", []string{"stop-supervisor", "root/a\nb"}, "control characters"},
		{"stop host without amqp", []string{"stop-supervisor", "a", "--host", "h1"}, "go with -amqp"},
	}
	d := &fakeDoer{}
	url := apiServer(t, d, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !strings.Contains(strings.Join(args, " "), "-amqp") {
				args = append(args, "--http", url)
			}
			_, stderr, rc := runCLI(t, args...)
			if rc != 2 {
				t.Errorf("rc %d, want 2; stderr:\n%s", rc, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
	if n := len(d.requests()); n != 0 {
		t.Errorf("the host got %d requests from usage errors", n)
	}
	for cmd, usage := range map[string]string{
		"start-supervisor": "Usage: dynworkers start-supervisor NAME [-parent PATH] [-strategy S] [-intensity N] [-period D]",
		"stop-supervisor":  "Usage: dynworkers stop-supervisor PATH",
	} {
		if _, stderr, rc := runCLI(t, cmd, "-h"); rc != 0 || !strings.Contains(stderr, usage) {
			t.Errorf("%s -h: rc %d\n%s", cmd, rc, stderr)
		}
	}
	if _, stdout, _ := runMain("help"); !strings.Contains(stdout, "start-supervisor") || !strings.Contains(stdout, "stop-supervisor") {
		t.Errorf("help does not list the supervisor commands:\n%s", stdout)
	}
}

func TestSupervisorsOverAMQP(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	reply := func(host string) func(control.Request) *control.Reply {
		return func(r control.Request) *control.Reply {
			switch r.Operation {
			case control.OpStartSupervisor:
				return &control.Reply{OK: true, Result: api.SupervisorResult{Supervisor: "root/" + r.SupervisorName, Action: "started", State: "running"}}
			case control.OpStopSupervisor:
				return &control.Reply{Error: control.Errorf(control.CodeNotFound, "supervisor %q not found on %s", r.Supervisor, host)}
			}
			return &control.Reply{Error: control.Errorf(control.CodeUnknownOperation, "unexpected %s", r.Operation)}
		}
	}
	got := fakeAMQPHost(t, url, []string{sys + ".h1", sys + ".all"}, reply("h1"))
	fakeAMQPHost(t, url, []string{sys + ".h2", sys + ".all"}, reply("h2"))

	stdout, stderr, rc := runCLI(t, "start-supervisor", "campaign-a", "--amqp", url, "--host", "h1", "--system-id", sys,
		"-parent", "root", "-strategy", "one_for_all", "-intensity", "0", "-period", "45s")
	if rc != 0 || stdout != `started supervisor "root/campaign-a" (running)`+"\n" {
		t.Fatalf("start-supervisor: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	m := <-got
	want := control.Request{Operation: control.OpStartSupervisor, SupervisorName: "campaign-a", Supervisor: "root",
		Strategy: "one_for_all", Intensity: json.RawMessage(`0`), Period: json.RawMessage(`"45s"`)}
	if !reflect.DeepEqual(m.body, want) {
		t.Errorf("the message\n got %+v\nwant %+v", m.body, want)
	}

	_, stderr, rc = runCLI(t, "stop-supervisor", "root/campaign-a", "--amqp", url, "--all", "--system-id", sys, "--timeout", "1s")
	if rc != 1 || !strings.Contains(stderr, `not_found: supervisor "root/campaign-a" not found on h1`) ||
		!strings.Contains(stderr, `not_found: supervisor "root/campaign-a" not found on h2`) {
		t.Errorf("stop-supervisor --all: rc %d\n%s", rc, stderr)
	}
	if m := <-got; m.body.Operation != control.OpStopSupervisor || m.body.Supervisor != "root/campaign-a" {
		t.Errorf("the stop message: %+v", m.body)
	}
}

var listenAddr = regexp.MustCompile(`HTTP API listening: addr=(\S+)`)

// The real host: a supervisor started by a control message, a worker under
// it, then the supervisor stopped, which removes both; a supervisor from
// HCL is only stopped.
func TestSupervisorsOnTheRealHost(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, `
supervisor "root" {
  supervisor "hcl-sup" {
    worker "h1" {
      class = "chaos"
    }
  }
}
`))
	m := listenAddr.FindStringSubmatch(h.waitLine("HTTP API listening"))
	if m == nil {
		t.Fatalf("no address in the log:\n%s", h.logText())
	}
	api := "http://" + m[1]
	h.waitLine("host running")

	stdout, stderr, rc := runCLI(t, "start-supervisor", "campaign-a", "-strategy", "one_for_all", "-intensity", "3", "-period", "10s", "-http", api)
	if rc != 0 || stdout != `started supervisor "root/campaign-a" (running)`+"\n" {
		t.Fatalf("start-supervisor: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start-supervisor", "campaign-a", "-strategy", "one_for_all", "-intensity", "3", "-period", "10", "-http", api)
	if rc != 0 || !strings.Contains(stdout, "unchanged") {
		t.Errorf("start-supervisor again: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	_, stderr, rc = runCLI(t, "start-supervisor", "campaign-a", "-strategy", "rest_for_one", "-http", api)
	if rc != 1 || !strings.Contains(stderr, "conflict: ") {
		t.Errorf("start-supervisor with other settings: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "start", "a1", "-class", "chaos", "-supervisor", "root/campaign-a", "-http", api); rc != 0 {
		t.Fatalf("start a1: rc %d\n%s", rc, stderr)
	}
	stdout, stderr, rc = runCLI(t, "stop-supervisor", "campaign-a", "-http", api)
	if rc != 0 || !strings.HasPrefix(stdout, `removed supervisor "root/campaign-a"`) || !strings.Contains(stdout, "  removed a1\n") {
		t.Errorf("stop-supervisor: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	_, stderr, rc = runCLI(t, "stop-supervisor", "campaign-a", "-http", api)
	if rc != 1 || !strings.Contains(stderr, "not_found") {
		t.Errorf("stop-supervisor again: rc %d\n%s", rc, stderr)
	}
	stdout, stderr, rc = runCLI(t, "stop-supervisor", "root/hcl-sup", "-http", api)
	if rc != 0 || !strings.HasPrefix(stdout, `stopped supervisor "root/hcl-sup" and its subtree until the next reload or host restart`) {
		t.Errorf("stop-supervisor of HCL: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start-supervisor", "hcl-sup", "-http", api)
	if rc != 0 || !strings.HasPrefix(stdout, `revived supervisor "root/hcl-sup"`) {
		t.Errorf("start-supervisor of a stopped HCL supervisor: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
}
