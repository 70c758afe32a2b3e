package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
)

// stubbornInstance ignores a stop until the stop's deadline: then it is
// "killed" (its done closes) and Stop returns.
type stubbornInstance struct {
	once sync.Once
	done chan struct{}
}

func (s *stubbornInstance) Done() <-chan struct{} { return s.done }
func (s *stubbornInstance) ExitErr() error        { return nil }
func (s *stubbornInstance) Stop(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.once.Do(func() { close(s.done) })
	return fmt.Errorf("%w: killed", pluginproc.ErrKilledAtStop)
}

// clusterFake is a tree whose classes behave as their names say: echo
// runs until stopped, stubborn stops only when killed (its
// shutdown_timeout is a minute), hang never finishes its start (until its
// ctx ends), reject fails its start for good (an invalid config).
type clusterFake struct {
	*Tree
	store *state.Store
	// inflight counts the starts that have not returned; instances are
	// the last instance of each worker.
	inflight  atomic.Int64
	mu        sync.Mutex
	instances map[string]supervise.Instance
}

func newClusterFake(t *testing.T, root *config.Supervisor) *clusterFake {
	t.Helper()
	store, err := state.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &clusterFake{store: store, instances: map[string]supervise.Instance{}}
	tr, err := New(Options{
		Store: store,
		Launch: func(ctx context.Context, w *config.Worker, _ pluginproc.ChildHost) (supervise.Instance, error) {
			f.inflight.Add(1)
			defer f.inflight.Add(-1)
			var inst supervise.Instance
			switch w.Class {
			case "echo":
				inst = &fakeInstance{done: make(chan struct{})}
			case "stubborn":
				inst = &stubbornInstance{done: make(chan struct{})}
			case "hang":
				<-ctx.Done()
				return nil, ctx.Err()
			case "reject":
				return nil, fmt.Errorf("%w: %w: port must be set (secret-value-123 was given)", supervise.ErrPermanent, sdk.ErrInvalidConfig)
			}
			f.mu.Lock()
			f.instances[w.Name] = inst
			f.mu.Unlock()
			return inst, nil
		},
		Resolve: func(name, class string, _ json.RawMessage, sup string) (*config.Worker, *control.Error) {
			if !slices.Contains([]string{"echo", "stubborn", "hang", "reject"}, class) {
				return nil, control.Errorf(control.CodeUnknownClass, "no class %q", class)
			}
			w := config.NewWorker(name, sup, class, sdk.Schema{{Name: "password", Type: sdk.TypeString, Sensitive: true}},
				cty.ObjectVal(map[string]cty.Value{"password": cty.StringVal("secret-value-123")}))
			if class == "stubborn" {
				w.ShutdownTimeout = time.Minute
			}
			return w, nil
		},
	}, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Stop(context.Background()) })
	f.Tree = tr
	tr.Start(context.Background())
	return f
}

func (f *clusterFake) instance(name string) supervise.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.instances[name]
}

func isCode(err error, code control.Code) bool {
	var cerr *control.Error
	return errors.As(err, &cerr) && cerr.Code == code
}

// A cluster worker: runs with source cluster, is not persisted, the same
// spec again is unchanged, another replaces it; local control operations
// and other sources cannot take or touch its name; a reload leaves it
// running; StopCluster removes it and everything it held.
func TestClusterWorkerLifecycle(t *testing.T) {
	f := newClusterFake(t, sup("root", w("hcl"), sup("s")))
	ctx := context.Background()
	before := f.Sizes()

	spec := ClusterSpec{Name: "cw", Class: "echo", Supervisor: "s", Config: json.RawMessage(`{}`), SpecHash: "h1", Generation: 1}
	r, err := f.StartCluster(ctx, spec)
	if err != nil || r.Action != "started" || r.State != "running" {
		t.Fatalf("StartCluster = %+v, %v", r, err)
	}
	wi, ok := f.Worker("cw")
	if !ok || wi.Source != api.SourceCluster || wi.Supervisor != "root/s" {
		t.Fatalf("cw = %+v, %v; want source cluster under root/s", wi.Worker, ok)
	}
	if !f.IsCluster("cw") || f.IsCluster("hcl") {
		t.Error("IsCluster is wrong")
	}
	cws := f.ClusterWorkers()
	if got := cws["cw"]; len(cws) != 1 || got.State != "running" || got.SpecHash != "h1" || got.Generation != 1 || got.Since.IsZero() {
		t.Fatalf("ClusterWorkers = %+v", cws)
	}
	if got := persistedNames(t, f.store); len(got) != 0 {
		t.Errorf("persisted %v: a cluster worker must not be in workers.json", got)
	}
	first := f.instance("cw")

	// The same spec: unchanged, the same instance.
	if r, err := f.StartCluster(ctx, spec); err != nil || r.Action != "unchanged" {
		t.Fatalf("same spec = %+v, %v", r, err)
	}
	if f.instance("cw") != first {
		t.Error("an unchanged start restarted the worker")
	}
	// Another spec hash: replaced.
	spec2 := spec
	spec2.SpecHash = "h2"
	if r, err := f.StartCluster(ctx, spec2); err != nil || r.Action != "replaced" || r.State != "running" {
		t.Fatalf("other spec = %+v, %v", r, err)
	}
	if f.instance("cw") == first {
		t.Error("a replace kept the old instance")
	}
	select {
	case <-first.Done():
	default:
		t.Error("the replaced instance still runs")
	}
	if got := f.ClusterWorkers()["cw"].SpecHash; got != "h2" {
		t.Errorf("spec hash = %q after replace", got)
	}

	// Local control operations on a cluster worker: conflicts.
	if _, err := f.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "echo"}); !isCode(err, control.CodeConflict) {
		t.Errorf("local start of a cluster name = %v, want conflict", err)
	}
	if _, err := f.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "echo", Replace: true}); !isCode(err, control.CodeConflict) {
		t.Errorf("local replace of a cluster name = %v, want conflict", err)
	}
	if err := f.StopWorker(ctx, "cw"); !isCode(err, control.CodeConflict) {
		t.Errorf("local stop = %v, want conflict", err)
	}
	if err := f.RestartWorker(ctx, "cw"); !isCode(err, control.CodeConflict) {
		t.Errorf("local restart = %v, want conflict", err)
	}
	// The cluster cannot take names of other sources.
	if _, err := f.StartWorker(ctx, control.WorkerSpec{Name: "dyn", Class: "echo"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hcl", "dyn", "s", "root"} {
		_, err := f.StartCluster(ctx, ClusterSpec{Name: name, Class: "echo", SpecHash: "x"})
		if !isCode(err, control.CodeConflict) && !isCode(err, control.CodeInvalidConfig) {
			t.Errorf("StartCluster(%q) = %v, want a refusal", name, err)
		}
	}
	// A control supervisor holding a cluster worker cannot be removed.
	if _, err := f.StartSupervisor(ctx, control.SupervisorSpec{Name: "cs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.StartCluster(ctx, ClusterSpec{Name: "inside", Class: "echo", Supervisor: "cs", SpecHash: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.StopSupervisor(ctx, "cs"); !isCode(err, control.CodeConflict) {
		t.Errorf("stop_supervisor over a cluster worker = %v, want conflict", err)
	}

	// A reload leaves cluster workers alone.
	cur := f.instance("cw")
	res, err := f.Reload(ctx, sup("root", w("hcl"), w("extra"), sup("s")), nil)
	if err != nil || !slices.Equal(res.Added, []string{"extra"}) || len(res.Removed) != 0 {
		t.Fatalf("reload = %+v, %v", res, err)
	}
	if wi, ok := f.Worker("cw"); !ok || wi.State != "running" || f.instance("cw") != cur {
		t.Fatalf("after reload cw = %+v, %v", wi.Worker, ok)
	}
	// Nor can a reload remove the supervisor a cluster worker runs in.
	if _, err := f.Reload(ctx, sup("root", w("hcl"), w("extra")), nil); !isCode(err, control.CodeConflict) {
		t.Errorf("reload removing root/s = %v, want conflict", err)
	}

	// Stop: gone, and a second stop is a no-op.
	if err := f.StopCluster(ctx, "cw"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cur.Done():
	default:
		t.Error("StopCluster returned with the instance running")
	}
	if _, ok := f.Worker("cw"); ok {
		t.Error("cw is still listed")
	}
	if err := f.StopCluster(ctx, "cw"); err != nil {
		t.Errorf("second stop = %v", err)
	}
	if err := f.StopCluster(ctx, "hcl"); !isCode(err, control.CodeConflict) {
		t.Errorf("StopCluster of an HCL worker = %v, want conflict", err)
	}
	if err := f.StopCluster(ctx, "inside"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.StopSupervisor(ctx, "cs"); err != nil {
		t.Fatal(err)
	}
	if err := f.StopWorker(ctx, "dyn"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Reload(ctx, sup("root", w("hcl"), sup("s")), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.ClusterWorkers(); len(got) != 0 {
		t.Errorf("ClusterWorkers = %v after the stops", got)
	}
	if after := f.Sizes(); !mapsEqual(after, before) {
		t.Errorf("sizes = %v, want %v", after, before)
	}
}

// A permanent first-start failure removes the worker and says so in a
// way the agent can tell (ErrPermanent) and the client understands (the
// code of a local start), without the worker's secrets.
func TestClusterStartPermanentFailure(t *testing.T) {
	f := newClusterFake(t, sup("root"))
	ctx := context.Background()
	before := f.Sizes()
	_, err := f.StartCluster(ctx, ClusterSpec{Name: "bad", Class: "reject", SpecHash: "h"})
	if !errors.Is(err, supervise.ErrPermanent) || !isCode(err, control.CodeInvalidConfig) {
		t.Fatalf("StartCluster = %v, want permanent invalid_config", err)
	}
	if s := err.Error(); !containsAll(s, "port must be set") || containsAll(s, "secret-value-123") {
		t.Errorf("error %q: want the plugin's reason without the secret", s)
	}
	if _, ok := f.Worker("bad"); ok {
		t.Error("the failed worker is still on the host")
	}
	// A class this host does not have: permanent too.
	if _, err := f.StartCluster(ctx, ClusterSpec{Name: "x", Class: "nope", SpecHash: "h"}); !errors.Is(err, supervise.ErrPermanent) || !isCode(err, control.CodeUnknownClass) {
		t.Errorf("unknown class = %v", err)
	}
	// A supervisor this host does not have: not found (not permanent:
	// the leader only places where the supervisor is).
	if _, err := f.StartCluster(ctx, ClusterSpec{Name: "x", Class: "echo", Supervisor: "missing", SpecHash: "h"}); !isCode(err, control.CodeNotFound) {
		t.Errorf("missing supervisor = %v", err)
	}
	if after := f.Sizes(); !mapsEqual(after, before) {
		t.Errorf("sizes = %v, want %v", after, before)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// A stop whose ctx ends before the worker's shutdown_timeout kills it at
// ctx's deadline, and returns only once it is gone.
func TestStopClusterKillsAtDeadline(t *testing.T) {
	f := newClusterFake(t, sup("root"))
	ctx := context.Background()
	if _, err := f.StartCluster(ctx, ClusterSpec{Name: "st", Class: "stubborn", SpecHash: "h"}); err != nil {
		t.Fatal(err)
	}
	inst := f.instance("st")
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := f.StopCluster(sctx, "st"); err != nil {
		t.Fatalf("StopCluster = %v", err)
	}
	took := time.Since(began)
	select {
	case <-inst.Done():
	default:
		t.Fatal("StopCluster returned while the instance runs")
	}
	if took < 250*time.Millisecond || took > 20*time.Second {
		t.Errorf("the stop took %v: want the ctx's deadline (300ms), not the shutdown_timeout (1m)", took)
	}
	if _, ok := f.Worker("st"); ok {
		t.Error("st is still listed")
	}
}

// A stop of a worker whose start hangs (holding its name) cancels that
// start at ctx's deadline rather than waiting out its start_timeout.
func TestStopClusterCancelsHungStart(t *testing.T) {
	f := newClusterFake(t, sup("root"))
	ctx := context.Background()
	started := make(chan error, 1)
	go func() {
		_, err := f.StartCluster(ctx, ClusterSpec{Name: "hung", Class: "hang", SpecHash: "h"})
		started <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !f.IsCluster("hung") {
		if time.Now().After(deadline) {
			t.Fatal("the hung start never registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := f.StopCluster(sctx, "hung"); err != nil {
		t.Fatalf("StopCluster = %v", err)
	}
	if n := f.inflight.Load(); n != 0 {
		t.Errorf("StopCluster returned with %d starts in flight", n)
	}
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the stop took %v; the start_timeout is 30s", took)
	}
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the hung StartCluster did not return")
	}
	if n := f.inflight.Load(); n != 0 {
		t.Errorf("%d starts still in flight after the stop", n)
	}
	if _, ok := f.Worker("hung"); ok || f.IsCluster("hung") {
		t.Error("hung is still on the host")
	}
}

// RestartCluster starts a new incarnation; names that are not cluster
// workers are not found.
func TestRestartCluster(t *testing.T) {
	f := newClusterFake(t, sup("root", w("hcl")))
	ctx := context.Background()
	if _, err := f.StartCluster(ctx, ClusterSpec{Name: "cw", Class: "echo", SpecHash: "h", Generation: 1}); err != nil {
		t.Fatal(err)
	}
	first := f.instance("cw")
	st, err := f.RestartCluster(ctx, "cw")
	if err != nil || st.State != "running" {
		t.Fatalf("RestartCluster = %+v, %v", st, err)
	}
	if f.instance("cw") == first {
		t.Error("the restart kept the instance")
	}
	select {
	case <-first.Done():
	default:
		t.Error("the old instance runs on")
	}
	f.SetClusterGeneration("cw", 2)
	if got := f.ClusterWorkers()["cw"]; got.Generation != 2 || got.State != "running" {
		t.Errorf("after restart = %+v", got)
	}
	for _, name := range []string{"hcl", "nope"} {
		if _, err := f.RestartCluster(ctx, name); !isCode(err, control.CodeNotFound) {
			t.Errorf("RestartCluster(%q) = %v, want not_found", name, err)
		}
	}
}
