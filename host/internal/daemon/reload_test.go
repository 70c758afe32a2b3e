package daemon

import (
	"context"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// rewrite replaces the host's configuration with body under the same host
// block as startHostIn's.
func (h *harness) rewrite(body string) {
	h.t.Helper()
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = \"test-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n}\n%s\n", body)
	if err := os.WriteFile(filepath.Join(h.dir, "host.hcl"), []byte(src), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// Reload: unchanged workers keep their pids, changed ones get new pids,
// removed ones stop, added ones start; a configuration with errors changes
// nothing.
func TestReloadAppliesTheDifference(t *testing.T) {
	h := startHost(t, `
worker "same" {
  class = "chaos"
}
worker "changed" {
  class = "chaos"
}
worker "removed" {
  class = "chaos"
}
worker "paused" {
  class = "chaos"
}
`)
	pids := map[string]int{}
	for _, w := range []string{"same", "changed", "removed", "paused"} {
		pids[w] = h.waitStarted(w)
	}
	ctx := context.Background()
	if err := h.d.StopWorker(ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	h.rewrite(`
worker "same" {
  class = "chaos"
}
worker "changed" {
  class = "chaos"
  config {
    message = "new spec"
  }
}
worker "paused" {
  class = "chaos"
}
worker "added" {
  class = "chaos"
}
`)
	out, err := h.d.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := out
	if fmt.Sprint(res.Added, res.Removed, res.Restarted, res.Resumed, res.Unchanged) != "[added] [removed] [changed] [paused] 1" {
		t.Errorf("result %+v", res)
	}
	if h.pid("same") != pids["same"] {
		t.Errorf("unchanged worker got a new pid")
	}
	if p := h.pid("changed"); p == 0 || p == pids["changed"] {
		t.Errorf("changed worker pid %d (was %d): want a new process", p, pids["changed"])
	}
	if _, ok := h.d.Worker("removed"); ok {
		t.Error("removed worker still listed")
	}
	waitGone(t, waitTimeout, pids["removed"])
	for _, w := range []string{"added", "paused"} {
		if ws, _ := h.d.Worker(w); ws.State != "running" {
			t.Errorf("%s: state %s, want running", w, ws.State)
		}
	}

	// A configuration with errors changes nothing.
	before := h.d.Workers()
	h.rewrite(`
worker "same" {
  class = "chaos"
  config {
    mood = "x"
  }
}
`)
	_, err = h.d.Reload(ctx)
	ce := wantCode(t, err, control.CodeInvalidConfig)
	if len(ce.Details) == 0 || !strings.Contains(ce.Details[0].Summary, "host.hcl:") {
		t.Errorf("details %+v: want the diagnostics with positions", ce.Details)
	}
	after := h.d.Workers()
	if fmt.Sprint(pidsOf(before)) != fmt.Sprint(pidsOf(after)) {
		t.Errorf("a bad reload changed workers: %v -> %v", pidsOf(before), pidsOf(after))
	}
}

func pidsOf(ws []api.Worker) map[string]int {
	m := map[string]int{}
	for _, w := range ws {
		m[w.Name] = w.Pid
	}
	return m
}

// Reload diffs the supervisors too: added ones start, removed ones stop
// with their subtree, reconfigured ones keep their children running.
func TestReloadSupervisors(t *testing.T) {
	h := startHost(t, `
supervisor "root" {
  worker "top" {
    class = "chaos"
  }
  supervisor "a" {
    worker "a1" {
      class = "chaos"
    }
  }
  supervisor "b" {
    worker "b1" {
      class = "chaos"
    }
    supervisor "b2" {
      worker "b21" {
        class = "chaos"
      }
    }
  }
}
`)
	top, a1, b1, b21 := h.waitStarted("top"), h.waitStarted("a1"), h.waitStarted("b1"), h.waitStarted("b21")
	// A supervisor from HCL stopped by request is started again by the
	// reload, like a worker.
	if _, err := h.d.StopSupervisor(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 5*time.Second, a1)
	h.rewrite(`
supervisor "root" {
  worker "top" {
    class = "chaos"
  }
  supervisor "a" {
    strategy  = "one_for_all"
    intensity = 9
    worker "a1" {
      class = "chaos"
    }
  }
  supervisor "c" {
    worker "c1" {
      class = "chaos"
    }
  }
}
`)
	out, err := h.d.Reload(context.Background())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	res := out
	if fmt.Sprint(res.SupervisorsAdded, res.SupervisorsRemoved, res.SupervisorsReconfigured, res.SupervisorsResumed, res.Added, res.Removed, res.Unchanged) !=
		"[root/c] [root/b/b2 root/b] [root/a] [root/a] [c1] [b1 b21] 2" {
		t.Fatalf("result = %+v", res)
	}
	h.waitStarted("c1")
	a1 = h.waitStarted("a1")
	waitGone(t, 5*time.Second, b1, b21)
	if h.pid("top") != top || h.pid("a1") != a1 {
		t.Fatal("an unchanged worker was restarted")
	}
	if s := h.supervisor("root/a"); s.Strategy != "one_for_all" || s.Intensity != 9 {
		t.Fatalf("a = %+v", s)
	}
	var paths []string
	for _, s := range h.d.Supervisors() {
		paths = append(paths, s.Path)
	}
	if fmt.Sprint(paths) != "[root root/a root/c]" {
		t.Fatalf("supervisors = %v", paths)
	}
	if ws, _ := h.d.Worker("c1"); ws.Supervisor != "root/c" || ws.State != "running" {
		t.Fatalf("c1 = %+v", ws)
	}
}
