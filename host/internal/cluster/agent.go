package cluster

// OWNER: helper B (agent).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AgentOptions configure an Agent.
type AgentOptions struct {
	Client   *clientv3.Client
	Cache    *Cache
	Host     string
	TTL      time.Duration // the lease TTL (config: cluster.lease_ttl)
	Capacity int           // max_workers; 0: no limit
	Labels   map[string]string
	HTTPAddr string
	Version  string
	Runner   Runner
	Sealer   *Sealer // nil: configs are not sealed
	Logger   hclog.Logger
	// StopTimeout bounds a stop of a cluster worker whose assignment moved
	// away (the runner kills it at the deadline); 0: one minute. A fence
	// stops with its own, shorter deadline.
	StopTimeout time.Duration
}

// DefaultTTL is the lease TTL when the options set none.
const DefaultTTL = 10 * time.Second

// Agent is a host's member of the cluster: it registers the host under its
// lease, renews the lease and fences (stops its cluster workers) when it
// cannot, runs the leader's campaign (Lead), and makes the host run exactly
// the cluster workers assigned to it, holding running/<name> for each.
type Agent struct {
	o    AgentOptions
	log  hclog.Logger
	keys Keys

	started time.Time
	lead    func(context.Context, LeaderOptions) error // Lead; tests replace it
	kickc   chan struct{}                              // reconcile now
	hostc   chan struct{}                              // the host record may have changed
	leasec  chan struct{}                              // closed and replaced when the lease changes or unfences
	sem     chan struct{}                              // bounds concurrent name operations
	ops     sync.WaitGroup

	mu      sync.Mutex
	base    context.Context // Run's ctx; nil before Run
	lease   clientv3.LeaseID
	leaseN  int       // grows with each new lease
	lastOK  time.Time // the send time of the last successful renewal (or grant)
	fenced  bool
	fenceAt time.Time
	stopBy  time.Time     // the fence's stop deadline
	fenceWG chan struct{} // closed once the fence's stops are done
	leaving bool
	left    bool
	// runCtx is the context of the runner calls made while unfenced; it
	// ends at a fence or at Leave. runGen grows with each such end.
	runCtx    context.Context
	cancelRun context.CancelFunc
	runGen    int
	inflight  map[string]bool      // names whose Run/Restart is under way
	specs     map[string]localSpec // what this agent ran for each local name
	pending   map[string]bool      // names with an operation scheduled or running
	retryAt   map[string]time.Time // names whose last operation failed: not before
	written   map[string]int64     // the revision of the agent's last write of each name's keys
	writtenAt map[string]time.Time
	failedAt  map[string]time.Time // when a permanent start failure was recorded
	names     map[string]*nameLock
	wcTimers  map[string]*time.Timer
	lastHost  *HostRecord // the last record put
}

type localSpec struct {
	hash string
	gen  int64
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// NewAgent returns an agent; Run runs it.
func NewAgent(o AgentOptions) *Agent {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	var keys Keys
	if o.Cache != nil {
		keys = o.Cache.Keys()
	}
	a := &Agent{
		o: o, log: o.Logger, keys: keys, lead: Lead,
		kickc: make(chan struct{}, 1), hostc: make(chan struct{}, 1), leasec: make(chan struct{}),
		sem:      make(chan struct{}, 8),
		inflight: map[string]bool{}, specs: map[string]localSpec{}, pending: map[string]bool{},
		retryAt: map[string]time.Time{}, written: map[string]int64{}, writtenAt: map[string]time.Time{}, failedAt: map[string]time.Time{},
		names: map[string]*nameLock{}, wcTimers: map[string]*time.Timer{},
	}
	a.runCtx, a.cancelRun = context.WithCancel(context.Background())
	return a
}

// Run runs the agent until ctx ends. It returns ctx's error, or an error
// when the host cannot join at all (e.g. its name is taken by a live host).
func (a *Agent) Run(ctx context.Context) error {
	switch {
	case a.o.Client == nil || a.o.Cache == nil || a.o.Runner == nil:
		return errors.New("cluster agent: the etcd client, the cache and the runner must be set")
	case a.o.Host == "" || strings.ContainsAny(a.o.Host, "/ \t\n"):
		return fmt.Errorf("cluster agent: host name %q: must be non-empty, without '/' or spaces", a.o.Host)
	case a.o.TTL < 2*time.Second:
		return fmt.Errorf("cluster agent: lease TTL %v is too short: at least 2s", a.o.TTL)
	}
	a.started = time.Now().UTC()
	lease, sent, err := a.join(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	a.mu.Lock()
	if a.leaving {
		a.mu.Unlock()
		a.revoke(lease)
		<-ctx.Done()
		return ctx.Err()
	}
	a.base = ctx
	a.lease, a.lastOK = lease, sent
	a.leaseN++
	a.cancelRun()
	a.runCtx, a.cancelRun = context.WithCancel(ctx)
	a.signalLeaseLocked()
	a.mu.Unlock()
	a.log.Info("joined the cluster", "host", a.o.Host, "lease", fmt.Sprintf("%x", int64(lease)), "ttl", a.o.TTL)

	var wg sync.WaitGroup
	for _, f := range []func(context.Context){a.renewLoop, a.fenceLoop, a.leaderLoop, a.hostLoop, a.reconcileLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	wg.Wait()
	a.ops.Wait()
	return ctx.Err()
}

// Leave stops this host's cluster workers (with the runner), releases
// their running keys and revokes the host's lease, so that the leader
// re-places them at once rather than after the TTL. The daemon calls it
// at shutdown.
func (a *Agent) Leave(ctx context.Context) error {
	a.mu.Lock()
	if a.left {
		a.mu.Unlock()
		return nil
	}
	a.leaving, a.left = true, true
	a.cancelRun()
	a.runGen++
	lease := a.lease
	a.mu.Unlock()
	a.log.Info("leaving the cluster: stopping this host's cluster workers", "host", a.o.Host)

	// Operations under way end soon: their runner calls' ctx ended.
	done := make(chan struct{})
	go func() { a.ops.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	local := a.o.Runner.Local()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	for name := range local {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.o.Runner.Stop(ctx, name); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("stopping cluster worker %q: %w", name, err))
				errMu.Unlock()
				return
			}
			a.forgetSpec(name)
			if lease != 0 {
				if err := a.releaseRunning(ctx, name, lease); err != nil {
					a.log.Debug("cannot release a running key at leave", "worker", name, "error", err)
				}
			}
		}()
	}
	wg.Wait()
	if lease == 0 {
		return errors.Join(errs...)
	}
	// The stops may have used up ctx: the keys and the lease still go,
	// within a few seconds (else the lease expires after the TTL).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// Release every running key still held (failed starts, ...), the host
	// key, and the lease (which would delete them anyway).
	for name, r := range a.o.Cache.Snapshot().Running {
		if r.Lease == int64(lease) {
			_ = a.releaseRunning(ctx, name, lease)
		}
	}
	hk := a.keys.Host(a.o.Host)
	if _, err := a.o.Client.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(hk), "=", lease)).
		Then(clientv3.OpDelete(hk)).Commit(); err != nil {
		a.log.Debug("cannot delete the host key at leave", "error", err)
	}
	if _, err := a.o.Client.Revoke(ctx, lease); err != nil {
		errs = append(errs, fmt.Errorf("revoking the host's lease: %w", err))
	}
	a.log.Info("left the cluster", "host", a.o.Host, "workers_stopped", len(local))
	return errors.Join(errs...)
}

// WorkerChanged tells the agent that the local state of a cluster worker
// changed (the daemon calls it from its supervision event hook), so that it
// updates running/<name>.
func (a *Agent) WorkerChanged(name string) {
	a.mu.Lock()
	if a.wcTimers[name] == nil && a.base != nil && !a.leaving {
		a.wcTimers[name] = time.AfterFunc(50*time.Millisecond, func() {
			a.mu.Lock()
			delete(a.wcTimers, name)
			a.mu.Unlock()
			a.updateRunning(name)
		})
	}
	a.mu.Unlock()
	a.kickHost()
}

// Fenced reports whether the host has stopped its cluster workers because
// it could not renew its lease, and not yet joined again.
func (a *Agent) Fenced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fenced
}

// Leader reports whether this host is the leader now: its election key
// (under its lease) is the oldest one, and it is neither fenced nor
// leaving.
func (a *Agent) Leader() bool {
	a.mu.Lock()
	lease, off := a.lease, a.fenced || a.leaving
	a.mu.Unlock()
	if lease == 0 || off {
		return false
	}
	s := a.o.Cache.Snapshot()
	var best string
	var bestRev int64
	for name, e := range s.elections {
		if bestRev == 0 || e.createRev < bestRev {
			best, bestRev = name, e.createRev
		}
	}
	id := fmt.Sprintf("%x", int64(lease))
	return best != "" && (best == id || strings.HasSuffix(best, "/"+id))
}

// state is what the agent's decisions depend on, read under mu.
type agentState struct {
	lease   clientv3.LeaseID
	fenced  bool
	leaving bool
}

func (a *Agent) state() agentState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return agentState{lease: a.lease, fenced: a.fenced, leaving: a.leaving}
}

func (a *Agent) kick() {
	select {
	case a.kickc <- struct{}{}:
	default:
	}
}

func (a *Agent) kickHost() {
	select {
	case a.hostc <- struct{}{}:
	default:
	}
}

// signalLeaseLocked wakes whoever waits for a new lease or an unfence.
func (a *Agent) signalLeaseLocked() {
	close(a.leasec)
	a.leasec = make(chan struct{})
}

func (a *Agent) lockName(name string) func() {
	a.mu.Lock()
	l := a.names[name]
	if l == nil {
		l = &nameLock{}
		a.names[name] = l
	}
	l.refs++
	a.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		a.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(a.names, name)
		}
		a.mu.Unlock()
	}
}

func (a *Agent) forgetSpec(name string) {
	a.mu.Lock()
	delete(a.specs, name)
	a.mu.Unlock()
	a.kickHost()
}

func (a *Agent) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = a.o.Client.Revoke(ctx, lease)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
