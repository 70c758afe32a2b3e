package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// leakySecret has a quote and a backslash, so its quoted and JSON-escaped
// forms differ from it: each must be scrubbed.
const leakySecret = `Sup3r"Secret\Val-42`

// hclString is s as an HCL (and JSON) string literal.
func hclString(s string) string { return fmt.Sprintf("%q", s) }

// assertNoSecret fails if text (what a place shows) holds the secret in
// any of its forms.
func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, f := range scrub.Forms(leakySecret) {
		if strings.Contains(text, f) {
			t.Errorf("%s shows the secret (as %q):\n%s", where, f, text)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// The three leak probes of issue 11 (a worker logs its sensitive value,
// returns it in an error, puts it in its status), and their variants: the
// value shows nowhere the host stores or shows what came from the worker
// (its log, the events on vumi.events and /v1/events, the status over
// HTTP and AMQP with last_exit, /metrics, a control reply), while
// "(sensitive)" shows where it was.
func TestSecretsNeverLeak(t *testing.T) {
	sys := brokertest.ID(t)
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "leaky")
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, "h1"), control.AnyQueue(sys)}, nil)
	evq, events := admin.TempQueue(control.EventsExchange, sys+".h1.#")
	_ = evq
	worker := func(name, extra string) string {
		return fmt.Sprintf("worker %q {\n  class = \"leaky\"\n  restart = \"temporary\"\n  health_interval = \"100ms\"\n  config {\n    secret = %s\n    pin = \"42\"\n%s  }\n}\n",
			name, hclString(leakySecret), extra)
	}
	src := fmt.Sprintf("system_id = %q\nhost {\n  name = \"h1\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  log_level = \"debug\"\n  metrics_interval = \"200ms\"\n}\namqp {\n  url = %q\n}\n",
		sys, brokertest.URL(t)) +
		worker("talker", "") +
		worker("failer", "    fail_start = true\n") +
		worker("crasher", "    crash_after = \"300ms\"\n") +
		worker("sick", "    unhealthy = true\n")
	h := startConfig(t, dir, src)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.d.WaitBroker(ctx); err != nil {
		t.Fatalf("host did not connect to the broker: %v", err)
	}

	// Each probe ends as it should.
	ended := map[string]bool{}
	h.waitEvent("the failures of failer, crasher and sick", func(ev supervise.Event) bool {
		switch e := ev.(type) {
		case supervise.ChildStartFailed:
			ended[e.Child] = e.Child == "failer"
		case supervise.ChildExited:
			if e.Child == "crasher" || e.Child == "sick" {
				ended[e.Child] = true
			}
		}
		return ended["failer"] && ended["crasher"] && ended["sick"]
	})
	// A control start of a worker whose Start fails (it is answered as
	// soon as the start is under way; its failure is an event).
	startMsg := fmt.Sprintf(`{"operation": "vumi_worker", "worker_name": "dyn", "worker_class": "leaky", "worker_config": {"secret": %s, "fail_start": true}}`, hclString(leakySecret))
	rep := request(t, admin, sys+".h1", startMsg)
	repText := fmt.Sprintf("%+v", rep)
	assertNoSecret(t, "the control reply", repText)

	// The talker's metric reaches /metrics under a scrubbed name.
	base := "http://" + h.d.HTTPAddr()
	var metrics string
	sdktest.Eventually(t, waitTimeout, func() bool {
		metrics = httpGet(t, base+"/metrics")
		return strings.Contains(metrics, "logins")
	}, "the talker's metric does not show in /metrics")
	assertNoSecret(t, "/metrics", metrics)
	if !strings.Contains(metrics, "sensitive") {
		t.Errorf("/metrics: the metric's name lost its (sensitive) mark:\n%s", metrics)
	}

	// The worker's own log lines reached the host, scrubbed.
	sdktest.Eventually(t, waitTimeout, func() bool {
		return strings.Contains(h.logs.String(), "connecting with password (sensitive)")
	}, "the talker's log line did not reach the host log")
	logs := h.logs.String()
	for _, want := range []string{
		"connecting with password (sensitive)", // hclog message
		`password="(sensitive)"`,               // hclog field
		`pin="(sensitive)"`,                    // a short value, a whole field
		`quoted "(sensitive)"`,                 // %q-quoted
		"plain stderr line with (sensitive)",   // a plain stderr line
		"amqp://user:(sensitive)@broker/",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("host log lacks %q", want)
		}
	}

	// Status over HTTP and AMQP: details and last_exit.
	statusHTTP := httpGet(t, base+"/v1/status")
	statusAMQP := fmt.Sprintf("%+v", request(t, admin, sys+".h1", `{"operation": "status"}`))
	for where, text := range map[string]string{"HTTP status": statusHTTP, "AMQP status": statusAMQP} {
		assertNoSecret(t, where, text)
		if !strings.Contains(text, "(sensitive)") {
			t.Errorf("%s has no (sensitive) mark:\n%s", where, text)
		}
	}
	for _, w := range h.d.Workers() {
		if w.Name == "failer" || w.Name == "crasher" || w.Name == "sick" {
			if !strings.Contains(w.LastExit, "(sensitive)") {
				t.Errorf("%s: last_exit %q, want the scrubbed error", w.Name, w.LastExit)
			}
		}
	}
	if !strings.Contains(statusHTTP, `"pin":"(sensitive)"`) {
		t.Errorf("HTTP status: the short pin is not scrubbed as a whole value:\n%s", statusHTTP)
	}

	// Events: /v1/events, and what vumi.events carried.
	evHTTP := httpGet(t, base+"/v1/events")
	assertNoSecret(t, "/v1/events", evHTTP)
	if !strings.Contains(evHTTP, "(sensitive)") {
		t.Errorf("/v1/events has no scrubbed error:\n%s", evHTTP)
	}
	var onBus strings.Builder
	seen := map[string]bool{}
	deadline := time.After(waitTimeout)
	for !(seen["failer"] && seen["crasher"] && seen["sick"]) {
		select {
		case d := <-events:
			onBus.Write(d.Body)
			onBus.WriteByte('\n')
			for _, w := range []string{"failer", "crasher", "sick"} {
				if strings.Contains(string(d.Body), `"worker":"`+w+`"`) && strings.Contains(string(d.Body), "(sensitive)") {
					seen[w] = true
				}
			}
		case <-deadline:
			t.Fatalf("vumi.events did not carry the scrubbed failures of every probe (seen %v):\n%s", seen, onBus.String())
		}
	}
	assertNoSecret(t, "vumi.events", onBus.String())

	h.stop()
	assertNoSecret(t, "the host log", h.logs.String())
	if t.Failed() {
		t.Logf("host log:\n%s", h.logs.String())
	}
}

// A plugin that writes 100 MB to its stderr: the host re-logs at most
// its rate limit (plus the burst) and says how much it dropped, and keeps
// answering meanwhile.
func TestPluginLogRateLimit(t *testing.T) {
	const total = 100 << 20
	h := startLeakyHost(t, "  plugin_log_rate = \"64KiB\"\n  plugin_log_lines = 500\n",
		`worker "spammer" {
  class = "leaky"
  restart = "temporary"
  start_timeout = "120s"
  config {
    secret = "irrelevant-secret"
    spam_bytes = `+fmt.Sprint(total)+`
    spam_line_len = 1000
  }
}
`)
	began := time.Now()
	// The HTTP API is up before the first worker starts.
	h.waitEvent("spammer starting", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStarting)
		return ok && e.Child == "spammer"
	})
	// The host answers while the plugin floods it.
	base := "http://" + h.d.HTTPAddr()
	for range 3 {
		t0 := time.Now()
		httpGet(t, base+"/v1/status")
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("status took %v while a plugin floods its log", d)
		}
	}
	// The plugin writes in Start, which returns once the host has read
	// all but the pipe's last buffer. (Its "spam done" log line is no
	// signal: it goes through the same limit and may be dropped.)
	h.waitEvent("spammer started (it wrote everything)", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStarted)
		return ok && e.Child == "spammer"
	})
	took := time.Since(began)
	h.stop()
	logs := h.logs.String()
	// Allowed: the burst (4 s of the rate) plus the rate over the time it
	// took, plus the host's own lines around them.
	limit := 4*64<<10 + int(took.Seconds()+1)*64<<10 + 64<<10
	lines := strings.Count(logs, strings.Repeat("x", 999))
	t.Logf("%d MB written in %v; host log %d bytes, %d spam lines kept", total>>20, took.Round(time.Millisecond), len(logs), lines)
	if len(logs) > limit {
		t.Errorf("host log is %d bytes, want at most %d (64 KiB/s for %v plus the burst)", len(logs), limit, took)
	}
	if !strings.Contains(logs, "of the plugin's log over the log rate limit") {
		t.Errorf("no line says lines were dropped")
	}
}

func startLeakyHost(t *testing.T, hostExtra, body string) *harness {
	t.Helper()
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "leaky")
	src := "system_id = \"test\"\nhost {\n  name = \"test-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  log_level = \"debug\"\n" + hostExtra + "}\n" + body
	return startConfig(t, dir, src)
}

// Two hosts on one state_dir: the second refuses to start, naming the
// first; once the first has stopped, it starts.
func TestSecondHostOnStateDirRefused(t *testing.T) {
	h := startLeakyHost(t, "", "")
	src, err := os.ReadFile(filepath.Join(h.dir, "host.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(h.dir, "second.hcl")
	if err := os.WriteFile(second, []byte(strings.Replace(string(src), `name = "test-host"`, `name = "second-host"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), Options{ConfigPath: second})
	if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid=%d", os.Getpid())) ||
		!strings.Contains(err.Error(), "host=test-host") {
		t.Fatalf("second Load = %v; want ErrLocked naming the first host", err)
	}
	if fi, err := os.Stat(filepath.Join(h.dir, "var")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state_dir: %v, %v; want mode 0700", fi, err)
	}
	h.stop()
	d, err := Load(context.Background(), Options{ConfigPath: second})
	if err != nil {
		t.Fatalf("Load after the first host stopped: %v", err)
	}
	d.store.Close()
}

// An encrypted state: a control-started worker's secret is not in the
// file; a host with another key refuses to start and changes nothing.
func TestEncryptedStateDir(t *testing.T) {
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "state.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startLeakyHost(t, fmt.Sprintf("  state_key_file = %q\n", key), "")
	if _, err := h.d.StartWorker(context.Background(), control.WorkerSpec{Name: "dyn", Class: "leaky",
		Config: []byte(`{"secret": "enc-secret-value"}`)}); err != nil {
		t.Fatalf("start: %v", err)
	}
	h.waitStarted("dyn")
	data, err := os.ReadFile(filepath.Join(h.dir, "var", state.FileName))
	if err != nil || strings.Contains(string(data), "enc-secret-value") || !strings.Contains(string(data), "AES-256-GCM") {
		t.Fatalf("state file (%v):\n%s", err, data)
	}
	h.stop()
	// Another key: the host does not start, the file is untouched.
	if err := os.WriteFile(key, []byte(strings.Repeat("cd", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), Options{ConfigPath: filepath.Join(h.dir, "host.hcl")})
	if !errors.Is(err, state.ErrWrongKey) || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Load with another key = %v, want ErrWrongKey", err)
	}
	if after, _ := os.ReadFile(filepath.Join(h.dir, "var", state.FileName)); string(after) != string(data) {
		t.Error("the state file changed")
	}
	// A key file others may read is refused.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = Load(context.Background(), Options{ConfigPath: filepath.Join(h.dir, "host.hcl")}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load with a readable key = %v", err)
	}
}
