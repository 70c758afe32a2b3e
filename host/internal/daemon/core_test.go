package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// Tests of the properties the tree owner (host/internal/tree) promises,
// with real plugin processes.

// minDuration runs op n times and returns its fastest run: noise on a
// loaded machine only ever adds time, while an operation held behind
// another's lock would be slow every time.
func minDuration(t *testing.T, n int, op func(i int) error) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for i := range n {
		began := time.Now()
		if err := op(i); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(began))
	}
	return best
}

// A worker whose Start hangs for 20 s does not delay a start, stop or
// status of another worker: each takes no more than 100 ms longer than
// the same operation without the hung start.
func TestHungStartDoesNotDelayOthers(t *testing.T) {
	h := startHost(t, `
worker "steady" {
  class = "chaos"
}
`)
	h.waitStarted("steady")
	ctx := context.Background()
	chaos := func(name string) control.WorkerSpec {
		return control.WorkerSpec{Name: name, Class: "chaos", Config: json.RawMessage(`{}`)}
	}
	startStop := func(prefix string) func(int) error {
		return func(i int) error {
			name := fmt.Sprintf("%s-%d", prefix, i)
			if r, err := h.d.StartWorker(ctx, chaos(name)); err != nil || r.State != "running" {
				return fmt.Errorf("start %s: %+v %v", name, r, err)
			}
			return h.d.StopWorker(ctx, name)
		}
	}
	status := func(int) error { _, err := h.d.Status(ctx); return err }
	restart := func(int) error { return h.d.RestartWorker(ctx, "steady") }

	// The fastest of five runs: noise on a loaded machine only adds time.
	const runs = 5
	base := map[string]time.Duration{
		"start+stop": minDuration(t, runs, startStop("before")),
		"status":     minDuration(t, runs, status),
		"restart":    minDuration(t, runs, restart),
	}

	hung := make(chan error, 1)
	go func() {
		spec := control.WorkerSpec{Name: "hung", Class: "chaos", Config: json.RawMessage(`{"mode": "slow_start", "delay": "20s"}`)}
		_, err := h.d.StartWorker(ctx, spec)
		hung <- err
	}()
	h.waitEvent("the hung worker's start", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStarting)
		return ok && e.Child == "hung"
	})
	during := map[string]time.Duration{
		"start+stop": minDuration(t, runs, startStop("during")),
		"status":     minDuration(t, runs, status),
		"restart":    minDuration(t, runs, restart),
	}
	if ws, ok := h.d.Worker("hung"); !ok || ws.State != string(supervise.StateStarting) {
		t.Fatalf("hung = %+v, %v; want it still starting while the others were measured", ws, ok)
	}
	select {
	case err := <-hung:
		t.Fatalf("the hung start returned early: %v", err)
	default:
	}
	for _, op := range slices.Sorted(maps.Keys(base)) {
		delay := during[op] - base[op]
		t.Logf("%-10s without a hung start %6.1f ms, with one %6.1f ms: delay %+.1f ms",
			op, ms(base[op]), ms(during[op]), ms(delay))
		if delay > 100*time.Millisecond {
			t.Errorf("%s took %v longer while another worker's start hung (%v, was %v)", op, delay, during[op], base[op])
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// 50 control starts and stops of distinct names from 8 clients, a reload
// and a hybrid adding children, all at once: the final tree is the one
// expected, the state file and status agree, and no name appears twice.
func TestConcurrentControlReloadAndHybrid(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	linkPlugin(t, filepath.Join(dir, "plugins"), "pool")
	h := startHostIn(t, dir, `
worker "hcl-a" {
  class = "chaos"
}
worker "owner" {
  class = "chaos"
}
`)
	h.waitStarted("hcl-a")
	h.waitStarted("owner")
	children, ok := h.d.Tree().ChildHost("owner")
	if !ok {
		t.Fatal("no ChildHost for owner")
	}
	h.rewrite(`
supervisor "root" {
  worker "hcl-a" {
    class = "chaos"
  }
  worker "owner" {
    class = "chaos"
  }
  supervisor "extra" {
    worker "hcl-b" {
      class = "chaos"
    }
  }
}
`)

	ctx := context.Background()
	const clients, names = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, names*2+10)
	want := map[string]bool{"hcl-a": true, "owner": true, "hcl-b": true}
	var wantMu sync.Mutex
	for c := range clients {
		wg.Go(func() {
			for i := c; i < names; i += clients {
				name := fmt.Sprintf("dyn-%02d", i)
				r, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: name, Class: "chaos", Config: json.RawMessage(`{}`)})
				if err != nil || r.Action != "started" {
					errs <- fmt.Errorf("start %s: %+v %v", name, r, err)
					continue
				}
				if i%2 == 1 {
					if err := h.d.StopWorker(ctx, name); err != nil {
						errs <- fmt.Errorf("stop %s: %v", name, err)
					}
					continue
				}
				wantMu.Lock()
				want[name] = true
				wantMu.Unlock()
			}
		})
	}
	wg.Go(func() {
		res, err := h.d.Reload(ctx)
		if err != nil || fmt.Sprint(res.Added, res.SupervisorsAdded) != "[hcl-b] [root/extra]" {
			errs <- fmt.Errorf("reload: %+v %v", res, err)
		}
	})
	for _, kid := range []string{"k1", "k2", "k3"} {
		wantMu.Lock()
		want["owner."+kid] = true
		wantMu.Unlock()
		wg.Go(func() {
			if _, outcome, err := children.StartChild(ctx, pluginproc.ChildRequest{Name: kid, Class: "chaos"}); err != nil || outcome != pluginproc.ChildStarted {
				errs <- fmt.Errorf("StartChild %s: %s %v", kid, outcome, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// Every worker runs, each name once, and status lists exactly those
	// expected.
	var last []api.Worker
	sdktest.Eventually(t, waitTimeout, func() bool {
		last = h.d.Workers()
		for _, w := range last {
			if w.State != string(supervise.StateRunning) {
				return false
			}
		}
		return len(last) == len(want)
	}, "workers = %v, want %d running", later(func() any { return last }), len(want))
	seen := map[string]bool{}
	for _, w := range last {
		if seen[w.Name] {
			t.Errorf("%s listed twice", w.Name)
		}
		seen[w.Name] = true
		if !want[w.Name] {
			t.Errorf("%s runs but should not", w.Name)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("%s does not run", name)
		}
	}
	rep, err := h.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var persisted, controlled []string
	for _, w := range h.loadState().Workers {
		persisted = append(persisted, w.Name)
	}
	for _, w := range rep.Workers {
		if w.Source == api.SourceControl {
			controlled = append(controlled, w.Name)
		}
	}
	slices.Sort(persisted)
	slices.Sort(controlled)
	if !slices.Equal(persisted, controlled) || len(persisted) != names/2 {
		t.Errorf("state file %v, status %v: want the same %d control workers", persisted, controlled, names/2)
	}
	if s := h.supervisor("root/owner"); s.Source != api.SourceHybrid {
		t.Errorf("the children's supervisor = %+v", s)
	}
	for _, k := range []string{"owner.k1", "owner.k2", "owner.k3"} {
		if ws, _ := h.d.Worker(k); ws.Supervisor != "root/owner" || ws.Owner != "owner" || ws.Source != api.SourceHybrid {
			t.Errorf("%s = %+v", k, ws)
		}
	}
}

// later formats what f returns when the message is printed: the state at
// the end of a wait.
type later func() any

func (l later) String() string { return fmt.Sprint(l()) }

// A control start with "replace": true of a hybrid's child, and a stop or
// restart of it, are refused with a conflict naming the owner, and change
// nothing.
func TestHybridTakeoverRefused(t *testing.T) {
	h := startPoolHost(t, `
worker "pool-a" {
  class = "dynworkers.pool"
  config {
    class = "chaos"
    size  = 2
  }
}
`)
	h.waitStarted("pool-a")
	kid := h.waitStarted("pool-a.1")
	h.waitStarted("pool-a.2")
	ctx := context.Background()
	before := h.loadState()
	checkConflict := func(what string, err error) {
		t.Helper()
		var cerr *control.Error
		if !errors.As(err, &cerr) || cerr.Code != control.CodeConflict || !strings.Contains(cerr.Message, `"pool-a"`) {
			t.Errorf("%s = %v, want a conflict naming the owner pool-a", what, err)
		}
	}
	_, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "pool-a.1", Class: "chaos",
		Config: json.RawMessage(`{"message": "mine now"}`), Replace: true})
	checkConflict("replace of pool-a.1", err)
	_, err = h.d.StartWorker(ctx, control.WorkerSpec{Name: "pool-a.1", Class: "chaos", Config: json.RawMessage(`{}`)})
	checkConflict("start of pool-a.1", err)
	checkConflict("stop of pool-a.1", h.d.StopWorker(ctx, "pool-a.1"))
	checkConflict("restart of pool-a.1", h.d.RestartWorker(ctx, "pool-a.1"))

	ws, ok := h.d.Worker("pool-a.1")
	if !ok || ws.Pid != kid || ws.Source != api.SourceHybrid || ws.Owner != "pool-a" || ws.Config["message"] == "mine now" {
		t.Errorf("pool-a.1 = %+v, want the pool's child, pid %d, untouched", ws, kid)
	}
	if after := h.loadState(); len(after.Workers) != len(before.Workers) {
		t.Errorf("state file changed: %+v", after.Workers)
	}
	for _, ev := range h.d.Events() {
		if e, ok := ev.(supervise.ChildStopping); ok && e.Child == "pool-a.1" {
			t.Errorf("pool-a.1 was stopped: %v", ev)
		}
	}
}

// 1,000 start/stop cycles of distinct names (each worker reporting a
// metric): every map of the host returns to its size before.
func TestStartStopCyclesLeaveNothingBehind(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "bus")
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = \"test-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  warm_spares = 4\n}\n%s\n", `
worker "steady" {
  class = "bus"
  config {
    metric = "steady"
  }
}
`)
	h := startConfig(t, dir, src)
	h.waitStarted("steady")
	ctx := context.Background()
	// Let the monitor see the steady state once, then note the sizes.
	if _, err := h.d.Status(ctx); err != nil {
		t.Fatal(err)
	}
	sdktest.Eventually(t, waitTimeout, func() bool { return h.d.Sizes()["metric_series"] > 0 },
		"steady's metric never reached the registry")
	before := h.d.Sizes()

	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := c; i < cycles; i += clients {
				name := fmt.Sprintf("cycle-%04d", i)
				spec := control.WorkerSpec{Name: name, Class: "bus", Config: json.RawMessage(`{"metric": "m"}`)}
				if r, err := h.d.StartWorker(ctx, spec); err != nil || r.State != "running" {
					errs <- fmt.Errorf("start %s: %+v %v", name, r, err)
					return
				}
				if err := h.d.StopWorker(ctx, name); err != nil {
					errs <- fmt.Errorf("stop %s: %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A sample drops the monitor's figures of the processes gone.
	h.d.monitor().Snapshot()
	var after map[string]int
	sdktest.Eventually(t, waitTimeout, func() bool {
		h.d.monitor().Snapshot()
		after = h.d.Sizes()
		for k, v := range before {
			if k != "event_ring" && after[k] != v {
				return false
			}
		}
		return true
	}, "sizes after %d cycles = %v, before %v", cycles, later(func() any { return after }), before)
	if after["event_ring"] > eventLogSize {
		t.Errorf("event ring holds %d events, more than %d", after["event_ring"], eventLogSize)
	}
	if ws := h.d.Workers(); len(ws) != 1 {
		t.Errorf("workers after the cycles = %v", ws)
	}
	t.Logf("%d cycles; sizes before %v, after %v", cycles, before, after)
}
