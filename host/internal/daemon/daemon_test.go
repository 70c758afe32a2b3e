package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

func exitedEvent(worker string) func(supervise.Event) bool {
	return func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildExited)
		return ok && e.Child == worker
	}
}

// Three workers run next to two steady ones; one panics, one calls
// os.Exit(3), one is SIGKILLed from outside. The steady workers keep their
// pids; the three come back with new pids; the exit events say why.
func TestCrashedWorkersComeBackOthersUntouched(t *testing.T) {
	h := startHost(t, `
worker "steady-1" {
  class = "chaos"
}
worker "panicker" {
  class = "chaos"
  config {
    mode    = "panic"
    delay   = "500ms"
    message = "boom from the test"
  }
}
worker "exiter" {
  class = "chaos"
  config {
    mode  = "exit"
    code  = 3
    delay = "500ms"
  }
}
worker "victim" {
  class = "chaos"
}
worker "steady-2" {
  class = "chaos"
}
`)
	first := map[string]int{}
	for _, w := range []string{"steady-1", "panicker", "exiter", "victim", "steady-2"} {
		first[w] = h.waitStarted(w)
	}
	if err := syscall.Kill(first["victim"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// Each of the three exits once with its own reason and comes back.
	reasons := map[string]string{}
	restarted := map[string]int{}
	for len(reasons) < 3 || len(restarted) < 3 {
		ev := h.waitEvent("exits and restarts", func(supervise.Event) bool { return true })
		switch e := ev.(type) {
		case supervise.ChildExited:
			if _, seen := reasons[e.Child]; !seen {
				if e.Err == nil {
					t.Fatalf("%s exited with no error", e.Child)
				}
				reasons[e.Child] = e.Err.Error()
			}
		case supervise.ChildStarted:
			if _, seen := reasons[e.Child]; seen {
				if _, ok := restarted[e.Child]; !ok {
					restarted[e.Child] = ProcessOf(e.Instance).Pid()
				}
			}
		}
	}
	for w, want := range map[string]string{"panicker": "boom from the test", "exiter": "exit status 3", "victim": "SIGKILL"} {
		if !strings.Contains(reasons[w], want) {
			t.Errorf("%s exited with %q, want it to mention %q", w, reasons[w], want)
		}
		if restarted[w] == 0 || restarted[w] == first[w] {
			t.Errorf("%s: pid before %d, after %d: want a new process", w, first[w], restarted[w])
		}
	}
	for _, w := range []string{"steady-1", "steady-2"} {
		if got := h.pid(w); got != first[w] {
			t.Errorf("%s: pid changed from %d to %d", w, first[w], got)
		}
		if !testplugins.Alive(first[w]) {
			t.Errorf("%s: process %d is gone", w, first[w])
		}
	}
}

// A worker that ignores Stop is killed once its shutdown_timeout has passed.
func TestIgnoredStopIsKilledAfterShutdownTimeout(t *testing.T) {
	h := startHost(t, `
worker "stubborn" {
  class            = "chaos"
  shutdown_timeout = "300ms"
  config {
    mode = "ignore_stop"
  }
}
`)
	pid := h.waitStarted("stubborn")
	start := time.Now()
	if err := h.d.StopWorker(context.Background(), "stubborn"); err != nil {
		t.Logf("StopWorker: %v (expected: the worker did not stop by itself)", err)
	}
	took := time.Since(start)
	if took < 300*time.Millisecond {
		t.Errorf("stop took %s: it cannot have waited for the shutdown_timeout", took)
	}
	if testplugins.Alive(pid) {
		t.Errorf("process %d still alive after StopWorker returned", pid)
	}
	ws, _ := h.d.Worker("stubborn")
	if ws.State != string(supervise.StateStopped) {
		t.Errorf("state = %s, want stopped", ws.State)
	}
	h.waitEvent("stopped event", func(ev supervise.Event) bool {
		_, ok := ev.(supervise.ChildStopped)
		return ok
	})
}

// A worker that stops answering health checks is killed and restarted.
func TestHungWorkerIsKilledAndRestarted(t *testing.T) {
	h := startHost(t, `
worker "hangs" {
  class           = "chaos"
  health_interval = "100ms"
  health_timeout  = "100ms"
  config {
    mode  = "hang_health"
    delay = "200ms"
  }
}
`)
	pid := h.waitStarted("hangs")
	ev := h.waitEvent("exit of the hung worker", exitedEvent("hangs")).(supervise.ChildExited)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "health") {
		t.Errorf("exit reason %v: want it to mention the health checks", ev.Err)
	}
	if again := h.waitStarted("hangs"); again == pid {
		t.Errorf("restarted with the same pid %d", pid)
	}
	waitGone(t, 5*time.Second, pid)
}

// A worker whose Start fails with a config error is failed at once, with the
// error, and not restarted in a loop.
func TestPermanentStartErrorFailsWithoutRetry(t *testing.T) {
	h := startHost(t, `
worker "misconfigured" {
  class = "chaos"
  config {
    mode      = "start_error"
    permanent = true
    message   = "the api_key is not valid"
  }
}
`)
	ev := h.waitEvent("failed", func(ev supervise.Event) bool {
		_, ok := ev.(supervise.ChildFailed)
		return ok
	}).(supervise.ChildFailed)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "the api_key is not valid") {
		t.Errorf("failed with %v, want the plugin's error", ev.Err)
	}
	ws, _ := h.d.Worker("misconfigured")
	if ws.State != "failed" || ws.Restarts != 0 || !strings.Contains(ws.LastExit, "api_key") {
		t.Errorf("status = %+v, want failed, 0 restarts, the error as last exit", ws)
	}
}

// A worker whose Start never returns is killed after start_timeout and
// handled as a failed start; meanwhile status answers and a worker of
// another supervisor keeps running.
func TestHungStartIsCutOffByStartTimeout(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	launches := filepath.Join(dir, "launches.log")
	// Plugins get a clean environment: the variable is passed explicitly.
	h := startConfig(t, dir, fmt.Sprintf(`system_id = "test"
host {
  name       = "test-host"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
  plugin_env = { CHAOS_LAUNCH_LOG = %q }
}
supervisor "root" {`, launches)+`
  supervisor "group-a" {
    worker "steady" {
      class = "chaos"
    }
  }
  supervisor "group-b" {
    worker "slow" {
      class         = "chaos"
      start_timeout = "500ms"
      config {
        mode  = "slow_start"
        delay = "1h"
      }
    }
  }
}
`)
	steady := h.waitStarted("steady")
	ev := h.waitEvent("start failure", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStartFailed)
		return ok && e.Child == "slow"
	}).(supervise.ChildStartFailed)
	if ev.Permanent || ev.Err == nil || !strings.Contains(ev.Err.Error(), "500ms") {
		t.Errorf("start failure %v (permanent %v): want a retryable error naming the 500ms start_timeout", ev.Err, ev.Permanent)
	}
	// The slow worker is retried: wait for its second start failure, and
	// check status answers quickly meanwhile.
	h.waitEvent("second start attempt", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStarting)
		return ok && e.Child == "slow" && e.Attempt >= 2
	})
	begin := time.Now()
	ws := h.d.Workers()
	if took := time.Since(begin); took > time.Second {
		t.Errorf("status took %s while a start hangs", took)
	}
	if len(ws) != 2 {
		t.Errorf("status lists %d workers, want 2", len(ws))
	}
	if h.pid("steady") != steady || !testplugins.Alive(steady) {
		t.Errorf("the steady worker of the other supervisor was disturbed")
	}
	// Every process launched for the hung start is gone once it was cut off.
	h.waitEvent("second start failure", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStartFailed)
		return ok && e.Child == "slow"
	})
	b, err := os.ReadFile(launches)
	if err != nil {
		t.Fatal(err)
	}
	var slowPids []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var pid int
		var name string
		if _, err := fmtSscan(line, &pid, &name); err == nil && pid != steady {
			slowPids = append(slowPids, pid)
		}
	}
	if len(slowPids) < 2 {
		t.Fatalf("launch log %q: want at least two launches of the slow worker", b)
	}
	waitGone(t, 5*time.Second, slowPids[:2]...)
}

// Bad files in plugin_dir do not stop the host from running the good ones.
func TestBadPluginFilesDoNotStopTheHost(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "crash-on-start")
	linkPlugin(t, plugins, "stdout-printer")
	for name, content := range map[string]string{
		"script.sh": "#!/bin/sh\necho not a plugin\n",
		"notes.txt": "this is text with an executable bit\n",
	} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := startHostIn(t, dir, `
worker "good" {
  class = "chaos"
}
`)
	h.waitStarted("good")
	probs := h.d.Catalog().Problems()
	if len(probs) != 4 {
		t.Errorf("problems = %v, want 4", probs)
	}
	for _, name := range []string{"crash-on-start", "stdout-printer", "script.sh", "notes.txt"} {
		found := false
		for _, p := range probs {
			if filepath.Base(p.Path) == name && p.Err != nil && strings.Contains(p.Err.Error(), name) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem naming %s in %v", name, probs)
		}
	}
}

// A config error is reported by Load, and nothing is started.
func TestLoadReportsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	cfg := filepath.Join(dir, "host.hcl")
	src := "host {\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n}\nworker \"w\" {\n  class = \"chaos\"\n  config {\n    mood = \"run\"\n  }\n}\nworker \"x\" {\n  class = \"nope\"\n}\n"
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), Options{ConfigPath: cfg})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Load: %v, want a ConfigError", err)
	}
	msg := ce.Error()
	for _, want := range []string{`"mood"`, `unknown class "nope"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %s", msg, want)
		}
	}
}

// Each strategy with real plugin processes: crash b of a, b, c and see who
// gets a new process.
func TestStrategiesWithRealProcesses(t *testing.T) {
	for _, tt := range []struct {
		strategy   string
		newProcess map[string]bool
	}{
		{"one_for_one", map[string]bool{"a": false, "b": true, "c": false}},
		{"one_for_all", map[string]bool{"a": true, "b": true, "c": true}},
		{"rest_for_one", map[string]bool{"a": false, "b": true, "c": true}},
	} {
		t.Run(tt.strategy, func(t *testing.T) {
			h := startHost(t, fmt.Sprintf(`
supervisor "root" {
  strategy = %q
  worker "a" {
    class = "chaos"
  }
  worker "b" {
    class = "chaos"
  }
  worker "c" {
    class = "chaos"
  }
}
`, tt.strategy))
			before := map[string]int{}
			for _, w := range []string{"a", "b", "c"} {
				before[w] = h.waitStarted(w)
			}
			if err := syscall.Kill(before["b"], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"a", "b", "c"} {
				if tt.newProcess[w] {
					if again := h.waitStarted(w); again == before[w] {
						t.Errorf("%s kept pid %d", w, again)
					}
				}
			}
			for _, w := range []string{"a", "b", "c"} {
				if !tt.newProcess[w] && h.pid(w) != before[w] {
					t.Errorf("%s was restarted (pid %d -> %d), want it untouched", w, before[w], h.pid(w))
				}
			}
		})
	}
}
