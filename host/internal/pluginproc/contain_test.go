//go:build linux

package pluginproc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// requireCgroups skips the test on a machine without the cgroups it needs,
// unless CI is set: CI runs on a machine that has them, where a skip would
// hide a regression.
func requireCgroups(t *testing.T, memoryAndPids bool) contain.Support {
	t.Helper()
	sup := contain.Detect().Support()
	missing := ""
	switch {
	case sup.Kill == contain.KillProcessOnly:
		missing = "no usable cgroup"
	case memoryAndPids && (sup.Memory == contain.ByRlimit || sup.Pids == contain.ByRlimit):
		missing = "no usable memory or pids cgroup controller"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s on this CI machine (%v): containment cannot be tested", missing, sup.Notes)
		}
		t.Skipf("%s (%v); run as root on a machine with cgroups", missing, sup.Notes)
	}
	return sup
}

// statusField returns a number of the worker's Status details.
func statusField(t *testing.T, p *Process, key string) int {
	t.Helper()
	raw, err := p.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f, _ := m[key].(float64)
	return int(f)
}

// waitGone polls /proc until pid is gone or a zombie, failing after d.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	sdktest.Eventually(t, d, func() bool { return !testplugins.Alive(pid) }, "process %d still runs", pid)
}

func TestSetsidGrandchildIsStoppedWithWorker(t *testing.T) {
	requireCgroups(t, false)
	for _, how := range []string{"stop", "kill", "exit"} {
		t.Run(how, func(t *testing.T) {
			launchLog(t)
			cfg := map[string]any{"mode": "setsid_child"}
			p := start(t, chaosOptions(t, cfg))
			grandchild := statusField(t, p, "grandchild_pid")
			if grandchild <= 0 || !testplugins.Alive(grandchild) {
				t.Fatalf("grandchild %d does not run", grandchild)
			}
			dirs := p.group.Dirs()
			switch how {
			case "stop":
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := p.Stop(ctx); err != nil {
					t.Fatalf("Stop: %v", err)
				}
			case "kill":
				p.Kill("test kills it")
				waitDone(t, p, 10*time.Second)
			case "exit":
				// The plugin is killed from outside: the host did not
				// ask for it, but its group goes with it.
				proc, _ := os.FindProcess(p.Pid())
				_ = proc.Signal(os.Kill)
				waitDone(t, p, 10*time.Second)
			}
			// Done is closed only once the cgroup is empty: no wait.
			if testplugins.Alive(grandchild) {
				t.Errorf("the setsid grandchild %d outlived its worker (%s)", grandchild, how)
				waitGone(t, grandchild, 5*time.Second)
			}
			for _, d := range dirs {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("cgroup %s left behind: %v", d, err)
				}
			}
		})
	}
}

func TestMemoryLimitIsOOMKilled(t *testing.T) {
	requireCgroups(t, true)
	launchLog(t)
	o := chaosOptions(t, map[string]any{"mode": "oom", "delay": "50ms"})
	o.Limits = contain.Limits{Memory: 64 << 20}
	p := start(t, o)
	waitDone(t, p, 30*time.Second)
	ee := exitError(t, p)
	if !ee.OOM || ee.ExitReason() != ExitOOMKilled || ee.Signal != "SIGKILL" {
		t.Fatalf("ExitError = %q (OOM %v, reason %q, signal %q), want an OOM kill", ee, ee.OOM, ee.ExitReason(), ee.Signal)
	}
	if want := "oom_killed (memory limit 64MiB reached): killed by SIGKILL"; !strings.HasPrefix(ee.Error(), want) {
		t.Errorf("ExitError = %q, want it to start with %q", ee, want)
	}
}

func TestSIGKILLIsNotOOM(t *testing.T) {
	requireCgroups(t, true)
	launchLog(t)
	o := chaosOptions(t, map[string]any{})
	o.Limits = contain.Limits{Memory: 64 << 20}
	p := start(t, o)
	proc, _ := os.FindProcess(p.Pid())
	_ = proc.Signal(os.Kill)
	waitDone(t, p, 10*time.Second)
	if ee := exitError(t, p); ee.OOM || ee.ExitReason() != "" || ee.Signal != "SIGKILL" {
		t.Fatalf("ExitError = %q (OOM %v), want a plain SIGKILL", ee, ee.OOM)
	}
}

// tasks counts the processes and threads of a worker: what pids.max counts.
func tasks(t *testing.T, p *Process) int {
	t.Helper()
	n := 0
	for _, d := range p.group.Dirs() {
		b, err := os.ReadFile(filepath.Join(d, "pids.current"))
		if err == nil {
			n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return n
		}
	}
	// watchExit removes the cgroups of a process that ended just before
	// it closes Done: then there is nothing to count.
	select {
	case <-p.Done():
		return 0
	case <-time.After(10 * time.Second):
	}
	t.Fatalf("no pids.current in %v", p.group.Dirs())
	return n
}

func TestForkBombStopsAtPidsLimit(t *testing.T) {
	requireCgroups(t, true)
	const limit = 48
	o := chaosOptions(t, map[string]any{"mode": "fork_bomb"})
	o.Limits = contain.Limits{Pids: limit}
	p := start(t, o)
	// The bomb forks until forks fail; the Go runtime of the plugin may
	// itself die of it (it cannot make a thread), which ends the bomb too.
	max := 0
	sdktest.Eventually(t, 20*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		n := tasks(t, p)
		max = maxInt(max, n)
		raw, err := p.Status(context.Background())
		if err != nil {
			return false
		}
		var st struct {
			ForkErrors int `json:"fork_errors"`
		}
		return json.Unmarshal(raw, &st) == nil && st.ForkErrors > 0
	}, "the fork bomb never hit its limit")
	for range 20 {
		select {
		case <-p.Done():
		default:
			max = maxInt(max, tasks(t, p))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if max > limit {
		t.Fatalf("the worker had %d tasks, over its pids limit %d", max, limit)
	}
	if kids := len(testplugins.Children(p.Pid())); kids >= limit {
		t.Fatalf("the worker has %d children, over its pids limit %d", kids, limit)
	}
	t.Logf("tasks at most %d of %d", max, limit)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func TestOpenFilesAndCPULimits(t *testing.T) {
	sup := requireCgroups(t, false)
	launchLog(t)
	o := chaosOptions(t, map[string]any{})
	o.Limits = contain.Limits{OpenFiles: 100, CPU: 0.5}
	p := start(t, o)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 5 || f[3] != "100" || f[4] != "100" {
		t.Errorf("open files limit: %q, want 100 100", line)
	}
	switch sup.CPU {
	case contain.ByCgroup1:
		d := sup.Cgroup1["cpu"]
		var found bool
		for _, gd := range p.group.Dirs() {
			if strings.HasPrefix(gd, d) {
				found = true
				q, _ := os.ReadFile(filepath.Join(gd, "cpu.cfs_quota_us"))
				if strings.TrimSpace(string(q)) != "50000" {
					t.Errorf("cpu.cfs_quota_us = %q, want 50000", q)
				}
			}
		}
		if !found {
			t.Errorf("no cpu cgroup in %v", p.group.Dirs())
		}
	case contain.ByCgroup2:
		q, _ := os.ReadFile(filepath.Join(p.group.Dirs()[0], "cpu.max"))
		if strings.TrimSpace(string(q)) != "50000 100000" {
			t.Errorf("cpu.max = %q, want 50000 100000", q)
		}
	}
}
