package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// tenWorkers is an HCL body of ten chaos workers w00 ... w09.
func tenWorkers() (string, []string) {
	var b strings.Builder
	var names []string
	for i := range 10 {
		name := fmt.Sprintf("w%02d", i)
		names = append(names, name)
		fmt.Fprintf(&b, "worker %q {\n  class = \"chaos\"\n}\n", name)
	}
	return b.String(), names
}

// waitStopEvents reads the events of host sys/host from deliveries until
// every worker of names has its worker_stopped, failing the test after
// waitTimeout. Each worker's worker_stopping must come before its
// worker_stopped, each event must be under its own routing key, and no
// field may be null.
func waitStopEvents(t *testing.T, deliveries <-chan amqp.Delivery, sys, host string, names []string) {
	t.Helper()
	stopping, stopped := map[string]int{}, map[string]int{}
	deadline := time.After(waitTimeout)
	for n := 0; len(stopped) < len(names); n++ {
		var d amqp.Delivery
		select {
		case d = <-deliveries:
		case <-deadline:
			t.Fatalf("worker_stopped of %d of %d workers within %s: %v", len(stopped), len(names), waitTimeout, stopped)
		}
		var ev api.Event
		if err := json.Unmarshal(d.Body, &ev); err != nil {
			t.Fatalf("event %s: %v", d.Body, err)
		}
		if want := sys + "." + host + "." + ev.Event; d.RoutingKey != want || ev.SystemID != sys || ev.Host != host {
			t.Errorf("event %s under key %q, want %q", d.Body, d.RoutingKey, want)
		}
		if strings.Contains(string(d.Body), "null") {
			t.Errorf("event with a null field: %s", d.Body)
		}
		switch ev.Event {
		case "worker_stopping":
			stopping[ev.Worker] = n
		case "worker_stopped":
			if _, dup := stopped[ev.Worker]; dup {
				t.Errorf("second worker_stopped of %s", ev.Worker)
			}
			stopped[ev.Worker] = n
		}
	}
	for _, w := range names {
		s, ok := stopping[w]
		if !ok || s > stopped[w] {
			t.Errorf("%s: worker_stopping at %d (received: %v), worker_stopped at %d: want stopping first", w, s, ok, stopped[w])
		}
	}
}

// Cancelling Run's context stops the workers and then publishes their stop
// events: a consumer of vumi.events gets every worker_stopped, each after
// its worker_stopping, before Run returns.
func TestShutdownPublishesStopEvents(t *testing.T) {
	sys := brokertest.ID(t)
	body, names := tenWorkers()
	h := amqpHost(t, sys, "drain", body)
	for _, w := range names {
		h.waitStarted(w)
	}
	admin := brokertest.NewAdmin(t)
	_, deliveries := admin.TempQueue(control.EventsExchange, sys+".drain.#")
	h.stop()
	waitStopEvents(t, deliveries, sys, "drain", names)
}

// With the broker away for good, the drain of the events gives up after
// eventDrainTimeout: the host still stops, and says how many events were
// not published. The broker's password shows nowhere.
func TestShutdownDrainIsBoundedWhenTheBrokerIsAway(t *testing.T) {
	const secret = "Dr41n-s3cret"
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	// Nothing listens on port 1: the host never connects.
	h := startAMQPHost(t, dir, "drain-away", "h", "amqp://guest:"+secret+"@127.0.0.1:1/", `
worker "a" {
  class = "chaos"
}
worker "b" {
  class = "chaos"
}
`)
	h.waitStarted("a")
	h.waitStarted("b")
	began := time.Now()
	h.stop() // fails the test if Run does not return nil within waitTimeout
	took := time.Since(began)
	logs := h.logs.String()
	// starting, started, stopping and stopped of both workers, the first
	// of them in flight.
	if !strings.Contains(logs, "events not published before the host stops") ||
		!strings.Contains(logs, "8 event(s) not published: context deadline exceeded") {
		t.Fatalf("no report of the 8 unpublished events in the log:\n%s", logs)
	}
	if took < eventDrainTimeout {
		t.Fatalf("Run returned %s after cancel, before the drain's deadline of %s", took, eventDrainTimeout)
	}
	if strings.Contains(logs, secret) {
		t.Fatal("the broker's password shows in the host log")
	}
}

// A clean SIGTERM of the real dynworkers binary running ten workers: a
// queue bound to vumi.events before the signal receives all ten
// worker_stopped, each after its worker_stopping, and the host exits 0.
func TestSIGTERMPublishesEveryWorkerStopped(t *testing.T) {
	url := brokertest.URL(t)
	sys, host := brokertest.ID(t), "sigterm"
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, host), control.AnyQueue(sys)}, nil)
	bin := buildDynworkers(t)

	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	body, names := tenWorkers()
	cfg := filepath.Join(dir, "host.hcl")
	src := fmt.Sprintf("system_id = %q\nhost {\n  name = %q\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n}\namqp {\n  url = %q\n}\n%s",
		sys, host, url, body)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, "serve", "-config", cfg, "-log-json")
	addr, _ := p.waitLog("HTTP API listening")["addr"].(string)
	p.waitLog("connected to the broker")
	p.waitLog("host running")

	// The ten are running (the host reports "host running" once every
	// first start has ended).
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK     bool       `json:"ok"`
		Result api.Status `json:"result"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || !rep.OK {
		t.Fatalf("GET /v1/status: %v %+v", err, rep)
	}
	running := 0
	for _, w := range rep.Result.Workers {
		if w.State == "running" {
			running++
		}
	}
	if running != len(names) {
		t.Fatalf("%d workers running, want %d: %+v", running, len(names), rep.Result.Workers)
	}

	_, deliveries := admin.TempQueue(control.EventsExchange, sys+"."+host+".#")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatalf("the host did not exit within %s of SIGTERM", waitTimeout)
	}
	if p.rc != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", p.rc)
	}
	waitStopEvents(t, deliveries, sys, host, names)
}

// buildDynworkers builds ./host/cmd/dynworkers into the test's temporary
// directory and returns the binary's path.
func buildDynworkers(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	gomod, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(gomod))) == 0 {
		t.Fatalf("locating the module root: go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "dynworkers")
	cmd := exec.Command(goTool, "build", "-o", bin, "./host/cmd/dynworkers")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building dynworkers: %v\n%s", err, out)
	}
	return bin
}

// process is a running dynworkers binary whose JSON log lines are kept.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited and its log is read
	rc   int

	mu      sync.Mutex
	raw     strings.Builder
	lines   []map[string]any
	changed chan struct{} // closed and replaced when a line comes
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, nil, bin, args...)
}

// startProcessEnv is startProcess with env added to the test's environment.
func startProcessEnv(t *testing.T, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{}), changed: make(chan struct{})}
	// Unless env says otherwise, a $TMPDIR of its own, removed after the
	// host: a host killed at the end of a test leaves its socket directory
	// behind. Short: unix socket paths are at most 107 bytes.
	tmp := ""
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TMPDIR=") }) {
		var err error
		if tmp, err = os.MkdirTemp("", "dwd"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(tmp) }) // after the kill below
		env = append(env, "TMPDIR="+tmp)
	}
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			_ = json.Unmarshal(sc.Bytes(), &line) // a line that is not JSON is kept raw only
			p.mu.Lock()
			p.raw.WriteString(sc.Text() + "\n")
			p.lines = append(p.lines, line)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		err := p.cmd.Wait()
		p.rc = p.cmd.ProcessState.ExitCode()
		if err != nil && p.rc == 0 {
			p.rc = -1
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			p.mu.Lock()
			t.Logf("dynworkers log:\n%s", p.raw.String())
			p.mu.Unlock()
		}
	})
	return p
}

// waitLog returns the first log line whose message is msg, failing the test
// after waitTimeout or when the process exits without it.
func (p *process) waitLog(msg string) map[string]any {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["@message"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			p.mu.Lock()
			exited := p.changed == changed // no line came after the last look
			p.mu.Unlock()
			if exited {
				p.t.Fatalf("dynworkers exited (status %d) without logging %q", p.rc, msg)
			}
		case <-deadline:
			p.t.Fatalf("dynworkers did not log %q within %s", msg, waitTimeout)
		}
	}
}
