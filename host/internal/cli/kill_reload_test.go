package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// hostStatus asks a running host for its status with `status -json`.
func hostStatus(t *testing.T, addr string) api.Status {
	t.Helper()
	rc, out, errOut := runMain("status", "-json", "-http", addr)
	if rc != 0 {
		t.Fatalf("status: rc %d: %s", rc, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	return st
}

// waitWorkers polls status until ok holds for the workers by name, and
// returns them.
func waitWorkers(t *testing.T, addr string, what string, ok func(map[string]api.Worker) bool) map[string]api.Worker {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ws := map[string]api.Worker{}
		for _, w := range hostStatus(t, addr).Workers {
			ws[w.Name] = w
		}
		if ok(ws) {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s; workers: %+v", waitTimeout, what, ws)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func running(names ...string) func(map[string]api.Worker) bool {
	return func(ws map[string]api.Worker) bool {
		for _, n := range names {
			if w, ok := ws[n]; !ok || w.State != "running" || w.Pid == 0 {
				return false
			}
		}
		return true
	}
}

// `dynworkers kill NAME` kills the worker's process: the pid it prints is
// gone, the worker comes back with a new pid and one restart, and its
// neighbour keeps its process.
func TestKillCommand(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, `
worker "victim" {
  class = "chaos"
}
worker "neighbour" {
  class = "chaos"
}
`))
	addr := h.apiAddr()
	before := waitWorkers(t, addr, "both workers running", running("victim", "neighbour"))

	rc, out, errOut := runMain("kill", "victim", "-http", addr)
	m := regexp.MustCompile(`^killed victim \(pid (\d+)\) with SIGKILL; its supervisor restarts it\n$`).FindStringSubmatch(out)
	if rc != 0 || m == nil {
		t.Fatalf("kill: rc %d stdout %q stderr %q", rc, out, errOut)
	}
	pid, _ := strconv.Atoi(m[1])
	if pid != before["victim"].Pid {
		t.Errorf("kill printed pid %d, the worker's was %d", pid, before["victim"].Pid)
	}
	if testplugins.Alive(pid) {
		t.Errorf("pid %d alive after kill", pid)
	}
	after := waitWorkers(t, addr, "victim back with a new pid", func(ws map[string]api.Worker) bool {
		return running("victim")(ws) && ws["victim"].Pid != pid && ws["victim"].Restarts == 1
	})
	if !strings.Contains(after["victim"].LastExit, "killed by SIGKILL") {
		t.Errorf("victim's last exit %q", after["victim"].LastExit)
	}
	if after["neighbour"].Pid != before["neighbour"].Pid || after["neighbour"].Restarts != 0 {
		t.Errorf("neighbour changed: %+v, was %+v", after["neighbour"], before["neighbour"])
	}
	h.waitLine("worker_exited: worker=victim")

	rc, out, errOut = runMain("kill", "nobody", "-http", addr)
	if rc != 1 || out != "" || !strings.Contains(errOut, `dynworkers kill: not_found: no worker named "nobody"`) || !strings.Contains(errOut, "hint:") {
		t.Errorf("kill nobody: rc %d stdout %q stderr %q", rc, out, errOut)
	}
	if rc, _, errOut = runMain("kill", "-http", addr); rc != 2 || !strings.Contains(errOut, "missing the worker NAME") {
		t.Errorf("kill without a name: rc %d stderr %q", rc, errOut)
	}
}

// `dynworkers reload` applies an edited config and prints what changed; a
// config with errors is refused with its diagnostics and changes nothing.
func TestReloadCommand(t *testing.T) {
	cfg := writeConfig(t, `
worker "a" {
  class = "chaos"
}
`)
	h := startServe(t, "-config", cfg)
	addr := h.apiAddr()
	waitWorkers(t, addr, "a running", running("a"))

	rc, out, errOut := runMain("reload", "-http", addr)
	if rc != 0 || out != "no changes (1 worker unchanged)\n" {
		t.Fatalf("reload of the same config: rc %d stdout %q stderr %q", rc, out, errOut)
	}

	appendFile(t, cfg, "worker \"b\" {\n  class = \"chaos\"\n}\n")
	rc, out, errOut = runMain("reload", "-http", addr)
	if rc != 0 || out != "added: b\nunchanged: 1 worker\n" {
		t.Fatalf("reload adding b: rc %d stdout %q stderr %q", rc, out, errOut)
	}
	before := waitWorkers(t, addr, "a and b running", running("a", "b"))

	// A bad config: diagnostics with their position, exit 1, nothing changed.
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, cfg, "worker \"c\" {\n  class = \"nope\"\n}\n")
	rc, out, errOut = runMain("reload", "-http", addr)
	if rc != 1 || out != "" {
		t.Errorf("bad reload: rc %d stdout %q", rc, out)
	}
	for _, want := range []string{"dynworkers reload: invalid_config: the configuration has errors; nothing was changed",
		"  - " + cfg + ":", `"nope"`, "hint: `dynworkers validate FILE`"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("bad reload's stderr lacks %q:\n%s", want, errOut)
		}
	}
	now := waitWorkers(t, addr, "a and b still running", running("a", "b"))
	if _, ok := now["c"]; ok || now["a"].Pid != before["a"].Pid || now["b"].Pid != before["b"].Pid {
		t.Errorf("the bad reload changed the workers: %+v, were %+v", now, before)
	}

	// Remove b and change a: -json prints the host's result.
	if err := os.WriteFile(cfg, []byte(strings.Replace(strings.Replace(string(good), "worker \"b\" {\n  class = \"chaos\"\n}\n", "", 1),
		"worker \"a\" {\n  class = \"chaos\"\n", "worker \"a\" {\n  class = \"chaos\"\n  config {\n    mode = \"run\"\n    delay = \"2s\"\n  }\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, out, errOut = runMain("reload", "-http", addr, "-json")
	var res api.ReloadResult
	if rc != 0 || json.Unmarshal([]byte(out), &res) != nil || strings.Join(res.Removed, ",") != "b" || strings.Join(res.Restarted, ",") != "a" {
		t.Fatalf("reload -json: rc %d stdout %q stderr %q", rc, out, errOut)
	}
	if got := reloadLines(res); strings.Join(got, "\n") != "removed: b\nrestarted: a\nunchanged: 0 workers" {
		t.Errorf("its lines: %q", got)
	}
	waitWorkers(t, addr, "a running with a new pid, b gone", func(ws map[string]api.Worker) bool {
		_, b := ws["b"]
		return running("a")(ws) && ws["a"].Pid != before["a"].Pid && !b
	})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// reloadLines covers what the tests of a real host do not reach.
func TestReloadLines(t *testing.T) {
	got := reloadLines(api.ReloadResult{Resumed: []string{"r"}, SupervisorsAdded: []string{"root/s"}, SupervisorsReconfigured: []string{"root/t"},
		SupervisorsRemoved: []string{"root/u"}, SupervisorsResumed: []string{"root/v"}, Unchanged: 3, Ignored: []string{"host", "amqp"}})
	want := "resumed: r\nsupervisors added: root/s\nsupervisors removed: root/u\nsupervisors reconfigured: root/t\nsupervisors resumed: root/v\nunchanged: 3 workers\nignored until the host restarts: host, amqp"
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
	if got := reloadLines(api.ReloadResult{Ignored: []string{"host"}}); strings.Join(got, "\n") != "no changes (0 workers unchanged)\nignored until the host restarts: host" {
		t.Errorf("only ignored: %q", got)
	}
}

// kill and reload over AMQP (-amqp URL -host NAME), against a real host on
// the test broker.
func TestKillAndReloadOverAMQP(t *testing.T) {
	url := brokertest.URL(t)
	sys := brokertest.ID(t)
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, "cli-test"), control.AnyQueue(sys)}, nil)
	cfg := writeConfig(t, fmt.Sprintf("amqp {\n  url = %q\n}\nworker \"w\" {\n  class = \"chaos\"\n}\n", url))
	replaceInFile(t, cfg, `system_id = "test"`, fmt.Sprintf("system_id = %q", sys))
	h := startServe(t, "-config", cfg)
	h.waitLine("connected to the broker")
	addr := h.apiAddr()
	before := waitWorkers(t, addr, "w running", running("w"))
	amqpArgs := []string{"-amqp", url, "-host", "cli-test", "-system-id", sys}

	rc, out, errOut := runMain(append([]string{"kill", "w"}, amqpArgs...)...)
	if want := fmt.Sprintf("killed w (pid %d) with SIGKILL; its supervisor restarts it\n", before["w"].Pid); rc != 0 || out != want {
		t.Fatalf("kill over AMQP: rc %d stdout %q (want %q) stderr %q", rc, out, want, errOut)
	}
	waitWorkers(t, addr, "w back with a new pid", func(ws map[string]api.Worker) bool {
		return running("w")(ws) && ws["w"].Pid != before["w"].Pid && ws["w"].Restarts == 1
	})

	appendFile(t, cfg, "worker \"v\" {\n  class = \"chaos\"\n}\n")
	rc, out, errOut = runMain(append([]string{"reload"}, amqpArgs...)...)
	if rc != 0 || out != "added: v\nunchanged: 1 worker\n" {
		t.Fatalf("reload over AMQP: rc %d stdout %q stderr %q", rc, out, errOut)
	}
	waitWorkers(t, addr, "v running", running("w", "v"))
}
