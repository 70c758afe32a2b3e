package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

const testPrefix = "/dynworkers/agent-test/"

// instances tracks which hosts run each worker name across the fake
// runners of one test, and records every moment two did.
type instances struct {
	mu    sync.Mutex
	hosts map[string]map[string]bool
	twice []string
}

func newInstances() *instances { return &instances{hosts: map[string]map[string]bool{}} }

func (in *instances) start(name, host string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.hosts[name] == nil {
		in.hosts[name] = map[string]bool{}
	}
	for h := range in.hosts[name] {
		if h != host {
			in.twice = append(in.twice, fmt.Sprintf("%s started on %s while it ran on %s", name, host, h))
		}
	}
	in.hosts[name][host] = true
}

func (in *instances) stop(name, host string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.hosts[name], host)
}

func (in *instances) violations() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.twice...)
}

type fakeEvent struct {
	kind     string // run, restart, stop
	name     string
	at       time.Time // when the worker started (run) or was gone (stop)
	deadline time.Time // the stop's ctx deadline
	spec     Spec
}

// fakeRunner is a Runner whose workers are records: Run makes one
// "running" after a short start, Stop removes it at once.
type fakeRunner struct {
	host string
	in   *instances

	mu      sync.Mutex
	delay   time.Duration // a start's time; 20ms when 0
	active  map[string]int
	maxRuns int // the most Run calls in flight at once
	both    []string
	workers map[string]*WorkerState
	events  []fakeEvent
	runErr  map[string]error // Run fails with it (the worker is then not kept)
	extra   []string         // more classes offered
	pid     int
}

func newFakeRunner(host string, in *instances) *fakeRunner {
	return &fakeRunner{host: host, in: in, workers: map[string]*WorkerState{}, runErr: map[string]error{}, pid: 1000}
}

func (f *fakeRunner) Resolve(name, class string, cfg json.RawMessage, supervisor string) (Resolved, error) {
	return Resolved{Class: class, Supervisor: supervisor, Config: cfg, SpecHash: "h-" + string(cfg)}, nil
}

func (f *fakeRunner) Run(ctx context.Context, spec Spec) (WorkerState, error) {
	f.mu.Lock()
	d := f.delay
	if d == 0 {
		d = 20 * time.Millisecond
	}
	if f.active == nil {
		f.active = map[string]int{}
	}
	if f.active[spec.Name] > 0 {
		f.both = append(f.both, spec.Name)
	}
	f.active[spec.Name]++
	n := 0
	for _, c := range f.active {
		n += c
	}
	f.maxRuns = max(f.maxRuns, n)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.active[spec.Name]--; f.active[spec.Name] == 0 {
			delete(f.active, spec.Name)
		}
		f.mu.Unlock()
	}()
	select { // a start takes a little time
	case <-time.After(d):
	case <-ctx.Done():
		return WorkerState{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.runErr[spec.Name]; err != nil {
		f.events = append(f.events, fakeEvent{kind: "run-failed", name: spec.Name, at: time.Now(), spec: spec})
		return WorkerState{State: "failed"}, err
	}
	f.pid++
	ws := &WorkerState{State: "running", PID: f.pid, Since: time.Now()}
	if _, ok := f.workers[spec.Name]; !ok {
		f.in.start(spec.Name, f.host)
	}
	f.workers[spec.Name] = ws
	f.events = append(f.events, fakeEvent{kind: "run", name: spec.Name, at: time.Now(), spec: spec})
	return *ws, nil
}

func (f *fakeRunner) Stop(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.workers[name]; !ok {
		return nil
	}
	delete(f.workers, name)
	f.in.stop(name, f.host)
	dl, _ := ctx.Deadline()
	f.events = append(f.events, fakeEvent{kind: "stop", name: name, at: time.Now(), deadline: dl})
	return nil
}

func (f *fakeRunner) Restart(ctx context.Context, name string) (WorkerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws, ok := f.workers[name]
	if !ok {
		return WorkerState{}, errors.New("not here")
	}
	f.pid++
	ws.PID, ws.Since = f.pid, time.Now()
	f.events = append(f.events, fakeEvent{kind: "restart", name: name, at: time.Now()})
	return *ws, nil
}

func (f *fakeRunner) Local() map[string]WorkerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]WorkerState{}
	for n, ws := range f.workers {
		out[n] = *ws
	}
	return out
}

func (f *fakeRunner) Offers() Offers {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Offers{Classes: append([]string{"echo"}, f.extra...), Supervisors: []string{"root"}}
}

// crash simulates a worker's crash and restart by its supervisor.
func (f *fakeRunner) crash(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.workers[name]
	f.pid++
	ws.PID, ws.Restarts, ws.State = f.pid, ws.Restarts+1, "backoff"
}

func (f *fakeRunner) eventsOf(kind string) []fakeEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeEvent
	for _, e := range f.events {
		if e.kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeRunner) has(names ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		if _, ok := f.workers[n]; !ok {
			return false
		}
	}
	return true
}

func (f *fakeRunner) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.workers)
}

// newClient is a client of endpoint made as a cluster host makes it.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		DialOptions: DialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type testAgent struct {
	*Agent
	runner *fakeRunner
	cache  *Cache
	client *clientv3.Client
	done   chan error
	cancel context.CancelFunc
}

// startAgent runs an agent of host on endpoint with its own cache and a
// campaign that does nothing.
func startAgent(t *testing.T, endpoint, host string, ttl time.Duration, in *instances) *testAgent {
	t.Helper()
	return startAgentWith(t, endpoint, host, ttl, in, func(ctx context.Context, o LeaderOptions) error {
		<-ctx.Done()
		return ctx.Err()
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func putJSON(t *testing.T, c *clientv3.Client, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

func putWorker(t *testing.T, c *clientv3.Client, name string, gen int64) {
	t.Helper()
	putJSON(t, c, Keys{testPrefix}.Worker(name), WorkerRecord{Name: name, Class: "echo", Supervisor: "root",
		Config: json.RawMessage(`{"n":1}`), SpecHash: "spec-1", Generation: gen, Created: time.Now()})
}

func assignTo(t *testing.T, c *clientv3.Client, name, host string) {
	t.Helper()
	putJSON(t, c, Keys{testPrefix}.Assign(name), Assignment{Host: host, Since: time.Now(), Reason: ReasonPlaced})
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getRunning(t *testing.T, c *clientv3.Client, name string) (Running, int64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Get(ctx, Keys{testPrefix}.Running(name))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return Running{}, 0, false
	}
	var rec Running
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return rec, r.Kvs[0].Lease, true
}

func (ta *testAgent) leaseID() int64 {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return int64(ta.lease)
}

func (ta *testAgent) lastRenewal() time.Time {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.lastOK
}

// testLeader is a minimal leader for the tests: it assigns each worker
// whose assignment is missing or names a dead host to the first live host
// in order.
func testLeader(t *testing.T, ctx context.Context, c *clientv3.Client, order ...string) {
	cache := NewCache(c, testPrefix, nil)
	go func() { _ = cache.Run(ctx) }()
	go func() {
		for ctx.Err() == nil {
			ch := cache.Changed()
			s := cache.Snapshot()
			for name := range s.Workers {
				if as, ok := s.Assign[name]; ok {
					if _, live := s.Hosts[as.Host]; live {
						continue
					}
				}
				for _, h := range order {
					if _, live := s.Hosts[h]; live {
						b, _ := json.Marshal(Assignment{Host: h, Since: time.Now(), Reason: ReasonFailover})
						wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						_, _ = c.Put(wctx, Keys{testPrefix}.Assign(name), string(b))
						cancel()
						break
					}
				}
			}
			select {
			case <-ch:
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
}

func waitJoined(t *testing.T, ta *testAgent) {
	t.Helper()
	eventually(t, 10*time.Second, ta.o.Host+" joined", func() bool {
		s := ta.cache.Snapshot()
		h, ok := s.Hosts[ta.o.Host]
		return ok && h.Lease == ta.leaseID() && h.Lease != 0
	})
}

func TestAgentJoinRegistersHost(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, in)
	waitJoined(t, a)
	h := a.cache.Snapshot().Hosts["h1"]
	if h.Name != "h1" || h.Capacity != 5 || h.Labels["zone"] != "a" || h.HTTPAddr != "127.0.0.1:1" ||
		h.Version != "test" || h.Started.IsZero() || h.Load != 0 {
		t.Fatalf("host record: %+v", h)
	}
	if fmt.Sprint(h.Classes) != "[echo]" || fmt.Sprint(h.Supervisors) != "[root]" {
		t.Fatalf("offers in the host record: %v %v", h.Classes, h.Supervisors)
	}
	// The lease is renewed: the host is still there after two TTLs.
	first := a.leaseID()
	since := time.Now()
	eventually(t, 15*time.Second, "renewals for two TTLs", func() bool {
		return a.lastRenewal().After(since.Add(6 * time.Second))
	})
	s := a.cache.Snapshot()
	if h, ok := s.Hosts["h1"]; !ok || h.Lease != first || a.Fenced() {
		t.Fatalf("after 2 TTLs: host %+v present %v, fenced %v", h, ok, a.Fenced())
	}
	// Load follows the local workers.
	putWorker(t, a.client, "w1", 1)
	assignTo(t, a.client, "w1", "h1")
	eventually(t, 10*time.Second, "load 1 in the host record", func() bool {
		return a.cache.Snapshot().Hosts["h1"].Load == 1
	})
}

func TestAgentNameTakenByLiveHost(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Another live host holds "h1" (its lease is kept alive).
	g, err := c.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KeepAlive(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	putOther := func() {
		b, _ := json.Marshal(HostRecord{Name: "h1"})
		if _, err := c.Put(ctx, Keys{testPrefix}.Host("h1"), string(b), clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	putOther()
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	start := time.Now()
	var runErr error
	select {
	case runErr = <-a.done:
		a.done <- runErr // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not fail within 15s")
	}
	took := time.Since(start)
	want := fmt.Sprintf("host name %q is taken by a live host in the cluster at prefix %q", "h1", testPrefix)
	if runErr == nil || runErr.Error() != want {
		t.Fatalf("Run: %v; want %q", runErr, want)
	}
	if took < 3*time.Second {
		t.Fatalf("Run failed after %v: it should wait TTL+1s for the other lease", took)
	}
	// Nothing of the agent is left: the other host's key is untouched.
	r, err := c.Get(ctx, Keys{testPrefix}.Host("h1"))
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].Lease != int64(g.ID) {
		t.Fatalf("host key after the failed join: %v %v", r, err)
	}
}

func TestAgentNameOfDeadHostIsTakenAfterItsLeaseExpires(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	ctx := context.Background()
	// A host killed with -9 a moment ago: its lease is no longer renewed.
	g, err := c.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(HostRecord{Name: "h1"})
	if _, err := c.Put(ctx, Keys{testPrefix}.Host("h1"), string(b), clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	waitJoined(t, a)
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("joined after %v; the dead lease expired within 3s (+ etcd's expiry check)", took)
	}
	if a.leaseID() == int64(g.ID) {
		t.Fatal("joined under the dead host's lease")
	}
}

func TestAgentRunsAssignedWorkerOnceAndHoldsRunningKey(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, in)
	waitJoined(t, a)
	putWorker(t, a.client, "w1", 1)
	// A record without an assignment runs nowhere.
	time.Sleep(500 * time.Millisecond)
	if n := len(a.runner.eventsOf("run")); n != 0 {
		t.Fatalf("ran %d times before any assignment", n)
	}
	assignTo(t, a.client, "w1", "h1")
	eventually(t, 10*time.Second, "w1 running with its running key", func() bool {
		r, lease, ok := getRunning(t, a.client, "w1")
		return ok && lease == a.leaseID() && r.State == "running" && r.PID != 0
	})
	r, _, _ := getRunning(t, a.client, "w1")
	if r.Host != "h1" || r.SpecHash != "spec-1" || r.Generation != 1 || r.Since.IsZero() {
		t.Fatalf("running record: %+v", r)
	}
	runs := a.runner.eventsOf("run")
	if len(runs) != 1 || runs[0].spec.Class != "echo" || string(runs[0].spec.Config) != `{"n":1}` ||
		runs[0].spec.Supervisor != "root" {
		t.Fatalf("runs: %+v", runs)
	}
	// A restart (generation 2) restarts it, once; a replace (another spec)
	// runs it again.
	putWorker(t, a.client, "w1", 2)
	eventually(t, 10*time.Second, "w1 at generation 2", func() bool {
		r, _, _ := getRunning(t, a.client, "w1")
		return r.Generation == 2
	})
	if n := len(a.runner.eventsOf("restart")); n != 1 {
		t.Fatalf("%d restarts; want 1", n)
	}
	// The record goes: the worker stops and the running key goes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.client.Delete(ctx, Keys{testPrefix}.Worker("w1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "w1 stopped and its running key gone", func() bool {
		_, _, ok := getRunning(t, a.client, "w1")
		return !ok && a.runner.count() == 0
	})
	if n := len(a.runner.eventsOf("run")); n != 1 {
		t.Fatalf("%d runs; want 1", n)
	}
}

func TestAgentPermanentFailureRemovesRecord(t *testing.T) {
	e := etcdtest.Start(t)
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	waitJoined(t, a)
	a.runner.mu.Lock()
	a.runner.runErr["bad"] = fmt.Errorf("starting %q: %w: %w: field x must be set", "bad", supervise.ErrPermanent, sdk.ErrInvalidConfig)
	a.runner.mu.Unlock()
	putWorker(t, a.client, "bad", 1)
	assignTo(t, a.client, "bad", "h1")
	eventually(t, 10*time.Second, "the failure in running/bad and workers/bad gone", func() bool {
		s := a.cache.Snapshot()
		r, ok := s.Running["bad"]
		_, hasW := s.Workers["bad"]
		return ok && r.Permanent && !hasW
	})
	seen := time.Now()
	r := a.cache.Snapshot().Running["bad"]
	if r.Code != "invalid_config" || r.State != "failed" || !strings.Contains(r.Error, "field x must be set") ||
		strings.Contains(r.Error, "permanent") {
		t.Fatalf("running record of the failure: %+v", r)
	}
	// Once the assignment goes, so does the running key; it never ran
	// again.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.client.Delete(ctx, Keys{testPrefix}.Assign("bad")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "running/bad released", func() bool {
		_, ok := a.cache.Snapshot().Running["bad"]
		return !ok
	})
	if shown := time.Since(seen); shown < failureShown-500*time.Millisecond {
		t.Errorf("the failure was shown for %v; want at least %v", shown, failureShown)
	}
	if n := len(a.runner.eventsOf("run-failed")); n != 1 {
		t.Fatalf("%d start attempts; want 1", n)
	}
}

func TestAgentWorkerChangedUpdatesRunningRecord(t *testing.T) {
	e := etcdtest.Start(t)
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	waitJoined(t, a)
	putWorker(t, a.client, "w1", 1)
	assignTo(t, a.client, "w1", "h1")
	eventually(t, 10*time.Second, "w1 running", func() bool {
		r, _, ok := getRunning(t, a.client, "w1")
		return ok && r.State == "running"
	})
	before, _, _ := getRunning(t, a.client, "w1")
	a.runner.crash("w1")
	for range 5 { // a burst of events makes one update
		a.WorkerChanged("w1")
	}
	eventually(t, 5*time.Second, "running/w1 says backoff, 1 restart, the new pid", func() bool {
		r, _, _ := getRunning(t, a.client, "w1")
		return r.State == "backoff" && r.Restarts == 1 && r.PID == a.runner.Local()["w1"].PID
	})
	after, _, _ := getRunning(t, a.client, "w1")
	if !after.Since.Equal(before.Since) {
		t.Fatalf("since changed: %v → %v", before.Since, after.Since)
	}
	if n := len(a.runner.eventsOf("run")); n != 1 {
		t.Fatalf("%d runs; want 1", n)
	}
}

// runningHistory returns the puts and deletes of running/<name> since rev.
func runningHolders(t *testing.T, c *clientv3.Client, name string, fromRev int64) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc := c.Watch(ctx, Keys{testPrefix}.Running(name), clientv3.WithRev(fromRev))
	r, err := c.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	now := r.Header.Revision
	var out []string
	for resp := range wc {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				out = append(out, "delete")
			} else {
				out = append(out, fmt.Sprintf("put:%x", ev.Kv.Lease))
			}
		}
		if resp.Header.Revision >= now {
			break
		}
	}
	return out
}

// checkNeverTwoHolders asserts that running/<name> changed holder only
// through a delete.
func checkNeverTwoHolders(t *testing.T, name string, hist []string) {
	t.Helper()
	holder := ""
	for _, h := range hist {
		switch {
		case h == "delete":
			holder = ""
		case holder != "" && holder != h:
			t.Fatalf("running/%s went from %s to %s without a delete: %v", name, holder, h, hist)
		default:
			holder = h
		}
	}
}

func TestAgentAssignmentMovedStopsBeforeStartElsewhere(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	a1 := startAgent(t, e.Endpoint(), "h1", 3*time.Second, in)
	a2 := startAgent(t, e.Endpoint(), "h2", 3*time.Second, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := a1.client
	r0, err := c.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"m1", "m2", "m3"}
	for _, n := range names {
		putWorker(t, c, n, 1)
		assignTo(t, c, n, "h1")
	}
	eventually(t, 10*time.Second, "h1 runs m1..m3", func() bool { return a1.runner.has(names...) })
	for _, n := range names {
		assignTo(t, c, n, "h2")
	}
	eventually(t, 10*time.Second, "h2 runs m1..m3", func() bool {
		if !a2.runner.has(names...) {
			return false
		}
		for _, n := range names {
			r, lease, ok := getRunning(t, c, n)
			if !ok || lease != a2.leaseID() || r.State != "running" || r.Host != "h2" {
				return false
			}
		}
		return true
	})
	stops := map[string]time.Time{}
	for _, ev := range a1.runner.eventsOf("stop") {
		stops[ev.name] = ev.at
	}
	for _, ev := range a2.runner.eventsOf("run") {
		st, ok := stops[ev.name]
		if !ok || !st.Before(ev.at) {
			t.Errorf("%s started on h2 at %v; stopped on h1 at %v (stopped: %v)", ev.name, ev.at.Format("15:04:05.000"),
				st.Format("15:04:05.000"), ok)
		}
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
	if a1.runner.count() != 0 || len(a2.runner.eventsOf("run")) != 3 || len(a1.runner.eventsOf("run")) != 3 {
		t.Fatalf("h1 has %d; runs h1 %d h2 %d", a1.runner.count(), len(a1.runner.eventsOf("run")), len(a2.runner.eventsOf("run")))
	}
	for _, n := range names {
		checkNeverTwoHolders(t, n, runningHolders(t, c, n, r0.Header.Revision+1))
	}
}

func TestAgentFenceStopsBeforeLeaseExpiry(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	proxy := etcdtest.NewProxy(t, e.Endpoint())
	const ttl = 3 * time.Second
	a1 := startAgent(t, proxy.Addr(), "h1", ttl, in)
	waitJoined(t, a1)
	a2 := startAgent(t, e.Endpoint(), "h2", ttl, in)
	waitJoined(t, a2)
	c := e.Client(t)
	names := []string{"f1", "f2", "f3", "f4"}
	for _, n := range names {
		putWorker(t, c, n, 1)
		assignTo(t, c, n, "h1")
	}
	eventually(t, 10*time.Second, "h1 runs f1..f4 with their running keys", func() bool {
		if !a1.runner.has(names...) {
			return false
		}
		for _, n := range names {
			if _, lease, ok := getRunning(t, c, n); !ok || lease != a1.leaseID() {
				return false
			}
		}
		return true
	})
	r0, err := c.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	testLeader(t, lctx, c, "h1", "h2")
	oldLease := a1.leaseID()

	blocked := time.Now()
	proxy.Block()
	eventually(t, 10*time.Second, "h1 fenced", a1.Fenced)
	lastOK := a1.lastRenewal()
	fencedAfter := time.Since(lastOK)
	eventually(t, 20*time.Second, "h2 runs f1..f4", func() bool { return a2.runner.has(names...) })
	t.Logf("blocked at %s; last renewal sent %s before; fenced %.0f ms after it", blocked.Format("15:04:05.000"),
		blocked.Sub(lastOK).Round(time.Millisecond), float64(fencedAfter.Milliseconds()))

	expiry := lastOK.Add(ttl) // the lease cannot expire before this
	stops := map[string]fakeEvent{}
	for _, ev := range a1.runner.eventsOf("stop") {
		stops[ev.name] = ev
	}
	for _, n := range names {
		st, ok := stops[n]
		if !ok {
			t.Fatalf("%s was not stopped on h1", n)
		}
		if !st.at.Before(expiry) {
			t.Errorf("%s stopped on h1 at %s, not before the lease could expire (%s)", n, st.at.Format("15:04:05.000"),
				expiry.Format("15:04:05.000"))
		}
		if want := lastOK.Add(ttl - time.Second); !st.deadline.Equal(want) {
			t.Errorf("%s: stop deadline %v; want last renewal + TTL - 1s = %v", n, st.deadline, want)
		}
	}
	for _, ev := range a2.runner.eventsOf("run") {
		if !ev.at.After(expiry) || !ev.at.After(stops[ev.name].at) {
			t.Errorf("%s started on h2 at %s: before the lease of h1 could expire (%s) or before h1 stopped it (%s)",
				ev.name, ev.at.Format("15:04:05.000"), expiry.Format("15:04:05.000"), stops[ev.name].at.Format("15:04:05.000"))
		}
	}

	// The cut ends: h1 joins again with a new lease and takes nothing.
	proxy.Unblock()
	eventually(t, 20*time.Second, "h1 unfenced with a new lease, registered", func() bool {
		h, ok := a2.cache.Snapshot().Hosts["h1"]
		return !a1.Fenced() && a1.leaseID() != oldLease && ok && h.Lease == a1.leaseID()
	})
	// Give it time to act wrongly: a few reconcile rounds.
	time.Sleep(3 * time.Second)
	if n := len(a1.runner.eventsOf("run")); n != len(names) {
		t.Fatalf("h1 ran %d times; want %d (nothing after it rejoined)", n, len(names))
	}
	if a1.runner.count() != 0 || !a2.runner.has(names...) || len(a2.runner.eventsOf("stop")) != 0 {
		t.Fatalf("after the rejoin: h1 has %d, h2 stops %d", a1.runner.count(), len(a2.runner.eventsOf("stop")))
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
	for _, n := range names {
		checkNeverTwoHolders(t, n, runningHolders(t, c, n, r0.Header.Revision+1))
	}
}

func TestAgentEtcdRestartStopsNothing(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	const ttl = 5 * time.Second
	a1 := startAgent(t, e.Endpoint(), "h1", ttl, in)
	a2 := startAgent(t, e.Endpoint(), "h2", ttl, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := newClient(t, e.Endpoint())
	for i := range 6 {
		n := fmt.Sprintf("r%d", i)
		putWorker(t, c, n, 1)
		assignTo(t, c, n, []string{"h1", "h2"}[i%2])
	}
	eventually(t, 10*time.Second, "3 workers on each host", func() bool {
		return a1.runner.count() == 3 && a2.runner.count() == 3
	})
	leases := []int64{a1.leaseID(), a2.leaseID()}
	killed := time.Now()
	e.Kill()
	e.Restart()
	t.Logf("etcd was down %v", time.Since(killed).Round(time.Millisecond))
	// Both renew again on the same leases, within the fence threshold.
	eventually(t, 10*time.Second, "renewals after the restart", func() bool {
		return a1.lastRenewal().After(killed) && a2.lastRenewal().After(killed)
	})
	time.Sleep(2 * time.Second)
	for i, a := range []*testAgent{a1, a2} {
		if a.Fenced() || a.leaseID() != leases[i] {
			t.Fatalf("%s: fenced %v, lease %x (was %x)", a.o.Host, a.Fenced(), a.leaseID(), leases[i])
		}
		if s := a.runner.eventsOf("stop"); len(s) != 0 {
			t.Fatalf("%s stopped %d workers", a.o.Host, len(s))
		}
		if r := a.runner.eventsOf("run"); len(r) != 3 {
			t.Fatalf("%s ran %d times; want 3", a.o.Host, len(r))
		}
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
}

func TestAgentLeaveHandsWorkersOver(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	a1 := startAgent(t, e.Endpoint(), "h1", 3*time.Second, in)
	a2 := startAgent(t, e.Endpoint(), "h2", 3*time.Second, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := newClient(t, e.Endpoint())
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	names := []string{"l1", "l2", "l3"}
	for _, n := range names {
		putWorker(t, c, n, 1)
		assignTo(t, c, n, "h1")
	}
	testLeader(t, lctx, c, "h1", "h2")
	eventually(t, 10*time.Second, "h1 runs l1..l3", func() bool {
		for _, n := range names {
			if r, _, ok := getRunning(t, c, n); !ok || r.Host != "h1" || r.State != "running" {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	if a1.runner.count() != 0 {
		t.Fatalf("h1 still runs %d after Leave", a1.runner.count())
	}
	rr, err := c.Get(ctx, testPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range rr.Kvs {
		if kv.Lease != 0 && kv.Lease != a2.leaseID() {
			t.Fatalf("after Leave, %s is still under h1's lease", kv.Key)
		}
	}
	eventually(t, 5*time.Second, "h2 runs l1..l3", func() bool { return a2.runner.has(names...) })
	if took := time.Since(left); took > time.Second {
		t.Errorf("h2 took the workers %v after h1 left; want within a second", took)
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
	// h1 takes nothing after leaving.
	time.Sleep(time.Second)
	if n := len(a1.runner.eventsOf("run")); n != 3 {
		t.Fatalf("h1 ran %d times; want 3", n)
	}
}

func TestAgentLeaderReportsElection(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	camp := func(ctx context.Context, o LeaderOptions) error {
		el := concurrency.NewElection(o.Session, Keys{testPrefix}.Election())
		if err := el.Campaign(ctx, o.Host); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	a1 := startAgentWith(t, e.Endpoint(), "h1", 3*time.Second, in, camp)
	waitJoined(t, a1)
	eventually(t, 10*time.Second, "h1 leads", a1.Leader)
	a2 := startAgentWith(t, e.Endpoint(), "h2", 3*time.Second, in, camp)
	waitJoined(t, a2)
	eventually(t, 5*time.Second, "h2 sees h1's election key", func() bool {
		return a2.cache.Snapshot().Leader() == "h1"
	})
	if a2.Leader() {
		t.Fatal("h2 says it leads while h1 does")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "h2 leads after h1 left", a2.Leader)
	if a1.Leader() {
		t.Fatal("h1 says it leads after leaving")
	}
}

func startAgentWith(t *testing.T, endpoint, host string, ttl time.Duration, in *instances, lead func(context.Context, LeaderOptions) error) *testAgent {
	t.Helper()
	c := newClient(t, endpoint)
	log := hclog.New(&hclog.LoggerOptions{Name: host, Level: hclog.Debug, Output: testWriter{t}})
	cache := NewCache(c, testPrefix, log.Named("cache"))
	r := newFakeRunner(host, in)
	a := NewAgent(AgentOptions{Client: c, Cache: cache, Host: host, TTL: ttl, Capacity: 5,
		Labels: map[string]string{"zone": "a"}, HTTPAddr: "127.0.0.1:1", Version: "test", Runner: r, Logger: log,
		StopTimeout: 5 * time.Second})
	a.lead = lead
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, runner: r, cache: cache, client: c, done: make(chan error, 1), cancel: cancel}
	go func() { _ = cache.Run(ctx) }()
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ta.done:
		case <-time.After(10 * time.Second):
			t.Errorf("agent %s did not end within 10s of its ctx", host)
		}
	})
	return ta
}

func TestAgentShortCutFencesThenResumesOnSameLease(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	proxy := etcdtest.NewProxy(t, e.Endpoint())
	const ttl = 5 * time.Second
	a1 := startAgent(t, proxy.Addr(), "h1", ttl, in)
	a2 := startAgent(t, e.Endpoint(), "h2", ttl, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := e.Client(t)
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	testLeader(t, lctx, c, "h1", "h2")
	names := []string{"s1", "s2"}
	for _, n := range names {
		putWorker(t, c, n, 1)
		assignTo(t, c, n, "h1")
	}
	eventually(t, 10*time.Second, "h1 runs s1, s2", func() bool { return a1.runner.has(names...) })
	lease := a1.leaseID()
	proxy.Block()
	eventually(t, 10*time.Second, "h1 fenced", a1.Fenced)
	if a1.runner.count() != 0 {
		t.Fatalf("fenced h1 still runs %d workers", a1.runner.count())
	}
	proxy.Unblock() // before the lease (TTL 5s) can expire: 0.6·TTL has just passed
	eventually(t, 10*time.Second, "h1 unfenced on the same lease and running s1, s2 again", func() bool {
		return !a1.Fenced() && a1.runner.has(names...)
	})
	if a1.leaseID() != lease {
		t.Fatalf("h1 has a new lease %x; the old one %x was alive", a1.leaseID(), lease)
	}
	for _, n := range names {
		eventually(t, 5*time.Second, n+" running under h1's lease", func() bool {
			r, l, ok := getRunning(t, c, n)
			return ok && l == lease && r.State == "running"
		})
	}
	if n := len(a2.runner.eventsOf("run")); n != 0 {
		t.Fatalf("h2 ran %d workers; the lease of h1 never expired", n)
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
}

func TestAgentLongEtcdOutageFencesThenResumesInPlace(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	const ttl = 3 * time.Second
	a1 := startAgent(t, e.Endpoint(), "h1", ttl, in)
	a2 := startAgent(t, e.Endpoint(), "h2", ttl, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := newClient(t, e.Endpoint())
	for i := range 4 {
		n := fmt.Sprintf("o%d", i)
		putWorker(t, c, n, 1)
		assignTo(t, c, n, []string{"h1", "h2"}[i%2])
	}
	eventually(t, 10*time.Second, "2 workers on each host", func() bool {
		return a1.runner.count() == 2 && a2.runner.count() == 2
	})
	e.Kill()
	eventually(t, 10*time.Second, "both hosts fenced, their workers stopped", func() bool {
		return a1.Fenced() && a2.Fenced() && a1.runner.count() == 0 && a2.runner.count() == 0
	})
	e.Restart()
	// etcd gives every lease a fresh TTL when it starts: the hosts renew
	// the leases they had and run their workers again where they were.
	eventually(t, 20*time.Second, "both unfenced, 2 workers on each again", func() bool {
		return !a1.Fenced() && !a2.Fenced() && a1.runner.count() == 2 && a2.runner.count() == 2
	})
	for _, a := range []*testAgent{a1, a2} {
		if n := len(a.runner.eventsOf("run")); n != 4 {
			t.Errorf("%s ran %d times; want 4 (2, then the same 2 again)", a.o.Host, n)
		}
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
}

func TestAgentRunsAtMostEightStartsAtOnce(t *testing.T) {
	e := etcdtest.Start(t)
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	a.runner.mu.Lock()
	a.runner.delay = 300 * time.Millisecond
	a.runner.mu.Unlock()
	waitJoined(t, a)
	var names []string
	for i := range 20 {
		n := fmt.Sprintf("c%02d", i)
		names = append(names, n)
		putWorker(t, a.client, n, 1)
		assignTo(t, a.client, n, "h1")
	}
	eventually(t, 20*time.Second, "20 workers running", func() bool { return a.runner.has(names...) })
	a.runner.mu.Lock()
	maxRuns, both := a.runner.maxRuns, a.runner.both
	a.runner.mu.Unlock()
	if maxRuns > 8 || maxRuns < 2 {
		t.Fatalf("%d starts at once; want 2..8", maxRuns)
	}
	if len(both) > 0 {
		t.Fatalf("two starts of one name at once: %v", both)
	}
	if n := len(a.runner.eventsOf("run")); n != 20 {
		t.Fatalf("%d runs; want 20", n)
	}
}

func TestAgentKilledHostsWorkersMoveAfterTTL(t *testing.T) {
	e := etcdtest.Start(t)
	in := newInstances()
	const ttl = 3 * time.Second
	a1 := startAgent(t, e.Endpoint(), "h1", ttl, in)
	a2 := startAgent(t, e.Endpoint(), "h2", ttl, in)
	waitJoined(t, a1)
	waitJoined(t, a2)
	c := newClient(t, e.Endpoint())
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	testLeader(t, lctx, c, "h1", "h2")
	names := []string{"k1", "k2", "k3"}
	for _, n := range names {
		putWorker(t, c, n, 1)
		assignTo(t, c, n, "h1")
	}
	eventually(t, 10*time.Second, "h1 runs k1..k3", func() bool { return a1.runner.has(names...) })
	// kill -9: the agent stops renewing at once and its workers die with it.
	lastOK := a1.lastRenewal()
	a1.cancel()
	killed := time.Now()
	a1.runner.mu.Lock()
	for n := range a1.runner.workers {
		in.stop(n, "h1")
	}
	a1.runner.workers = map[string]*WorkerState{}
	a1.runner.mu.Unlock()
	eventually(t, ttl+5*time.Second, "h2 runs k1..k3", func() bool { return a2.runner.has(names...) })
	took := time.Since(killed)
	t.Logf("the workers of the killed host ran on the other %v after the kill", took.Round(time.Millisecond))
	for _, ev := range a2.runner.eventsOf("run") {
		if !ev.at.After(lastOK.Add(ttl)) {
			t.Errorf("%s started on h2 at %s, before h1's lease could expire", ev.name, ev.at.Format("15:04:05.000"))
		}
	}
	if took > ttl+2*time.Second {
		t.Errorf("failover took %v; want within TTL + 2s", took)
	}
	if v := in.violations(); len(v) > 0 {
		t.Fatalf("two instances: %v", v)
	}
}

func TestAgentRefusesBadOptions(t *testing.T) {
	e := etcdtest.Start(t)
	c := newClient(t, e.Endpoint())
	cache := NewCache(c, testPrefix, nil)
	for _, tc := range []struct {
		o    AgentOptions
		want string
	}{
		{AgentOptions{Client: c, Cache: cache, Runner: newFakeRunner("", nil), Host: "a/b"}, `host name "a/b"`},
		{AgentOptions{Client: c, Cache: cache, Runner: newFakeRunner("", nil), Host: ""}, `host name ""`},
		{AgentOptions{Client: c, Cache: cache, Runner: newFakeRunner("", nil), Host: "h", TTL: time.Second}, "lease TTL 1s is too short"},
		{AgentOptions{Client: c, Cache: cache, Host: "h"}, "the runner must be set"},
	} {
		err := NewAgent(tc.o).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run with %+v: %v; want %q", tc.o, err, tc.want)
		}
	}
	r, err := c.Get(context.Background(), testPrefix, clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("bad options wrote to etcd: %v %v", r, err)
	}
}

func TestAgentHostRecordFollowsOffersAndReleasesStrayKeys(t *testing.T) {
	e := etcdtest.Start(t)
	a := startAgent(t, e.Endpoint(), "h1", 3*time.Second, newInstances())
	waitJoined(t, a)
	// A plugin appears: the host record offers its class within seconds
	// (offers are re-read every 3 s).
	a.runner.mu.Lock()
	a.runner.extra = []string{"smpp"}
	a.runner.mu.Unlock()
	eventually(t, 10*time.Second, "smpp in the host record", func() bool {
		return fmt.Sprint(a.cache.Snapshot().Hosts["h1"].Classes) == "[echo smpp]"
	})
	// A running key under this host's lease for a worker it does not run
	// (and that is not assigned to it) is released.
	b, _ := json.Marshal(Running{Host: "h1", State: "running"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.client.Put(ctx, Keys{testPrefix}.Running("stray"), string(b),
		clientv3.WithLease(clientv3.LeaseID(a.leaseID()))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "running/stray released", func() bool {
		_, _, ok := getRunning(t, a.client, "stray")
		return !ok
	})
	if n := len(a.runner.eventsOf("run")) + len(a.runner.eventsOf("stop")); n != 0 {
		t.Fatalf("%d runner calls for a stray key", n)
	}
}
