package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/events"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// supervisorTimeout bounds the start and the stop of a supervisor child.
// Each of its own children is bounded by its own timeouts, so this only
// guards against a bug.
const supervisorTimeout = time.Hour

// Options configure a Tree.
type Options struct {
	Logger hclog.Logger
	// Store persists what control messages started; State is what it held
	// when the host started (nil: nothing).
	Store *state.Store
	State *state.State
	// Launch starts one incarnation of a worker (a plugin process) and
	// returns once it runs. children is the Host service's ChildHost of
	// that incarnation, for a worker that turns out to be a hybrid.
	Launch func(ctx context.Context, w *config.Worker, children pluginproc.ChildHost) (supervise.Instance, error)
	// Resolve validates a class and config with the class's schema and
	// builds the worker (its Path set under supervisor).
	Resolve func(name, class string, cfg json.RawMessage, supervisor string) (*config.Worker, *control.Error)
	// EventHook receives every supervision event (see supervise.Spec).
	EventHook func(supervise.Event)
	// Forget, if set, is called once a worker is gone from the host, so
	// that what is kept by name elsewhere (its metric series) goes too.
	Forget func(name string)
	// ControlStarted, if set, is called after a control message started a
	// worker (the daemon keeps a warm spare of its binary).
	ControlStarted func(w *config.Worker)
	// StartConcurrency bounds the worker starts in flight at once when the
	// host starts and during a reload; below 1 means 1.
	StartConcurrency int
	// Limits bound the hybrids' children (ChildrenPerWorker, Children);
	// the zero value means config.DefaultInputLimits().
	Limits config.InputLimits
}

type kind int

const (
	kindWorker kind = iota
	kindSupervisor
)

// node is one supervisor or worker of the tree.
type node struct {
	name   string
	kind   kind
	source string
	// parent is the supervisor the node runs in (nil for the root); for a
	// hybrid's child, its owner (a worker node).
	parent *node
	// children are, for a supervisor, its workers and supervisors in
	// declared (then start) order; for a hybrid worker, the children of
	// its current incarnation.
	children []*node

	worker *config.Worker     // workers
	sup    *config.Supervisor // supervisors
	run    *supervise.Supervisor
	// fam is the Family of a worker's current incarnation (its children,
	// if it starts any).
	fam *supervise.Family
	// home is the Family a hybrid's child runs in (its owner's
	// incarnation).
	home *supervise.Family
	// removing marks a control-started supervisor being removed: nothing
	// may start under it any more.
	removing bool
	gone     bool // removed from the tree

	// clusterHash and clusterGen are a cluster worker's spec hash and
	// generation as the cluster has them (see cluster.go).
	clusterHash string
	clusterGen  int64
	// cancelStart cancels the start of the worker's incarnation in
	// flight, nil when none is: a cluster stop past its deadline uses it.
	cancelStart context.CancelFunc
}

// path of a supervisor, or of the supervisor a worker runs in.
func (n *node) supPath() string {
	switch {
	case n.kind == kindSupervisor:
		return n.sup.Path
	case n.source == api.SourceHybrid:
		return n.parent.familyPath()
	}
	return n.parent.sup.Path
}

// familyPath is the path of a worker's children's supervisor.
func (n *node) familyPath() string { return n.supPath() + "/" + n.name }

// runner is the supervise.Supervisor a worker is a child of (nil for a
// hybrid's child whose family is gone).
func (n *node) runner() *supervise.Supervisor {
	if n.source == api.SourceHybrid {
		return n.home.Current()
	}
	return n.parent.run
}

// Tree is the host's supervision tree. See the package documentation.
type Tree struct {
	opts     Options
	logger   hclog.Logger
	locks    nameLocks
	saveMu   sync.Mutex // serialises writes of the state file
	reloadMu sync.Mutex // one reload at a time

	mu       sync.Mutex
	nodes    map[string]*node // every name: supervisors, workers, hybrids' children
	root     *node
	closed   bool
	dynW     []state.Worker     // persisted control-started workers, in start order
	dynS     []state.Supervisor // persisted control-started supervisors, in start order
	version  uint64             // of dynW/dynS in memory
	saved    uint64             // the version last written
	restored bool
}

// New builds the tree of the HCL configuration: every supervisor is made
// (nothing runs under it yet) and every worker registered. Start starts
// them. Call Stop even when Start is not called, to end the supervisors'
// goroutines.
func New(opts Options, root *config.Supervisor) (*Tree, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Limits == (config.InputLimits{}) {
		opts.Limits = config.DefaultInputLimits()
	}
	t := &Tree{opts: opts, logger: opts.Logger, nodes: map[string]*node{}}
	if opts.State != nil {
		t.dynW = slices.Clone(opts.State.Workers)
		t.dynS = slices.Clone(opts.State.Supervisors)
	}
	if err := t.build(root, nil); err != nil {
		_ = t.Stop(context.Background())
		return nil, err
	}
	return t, nil
}

func (t *Tree) build(s *config.Supervisor, parent *node) error {
	n, err := t.newSupervisorNode(s, parent, api.SourceHCL)
	if err != nil {
		return err
	}
	if parent == nil {
		t.root = n
	}
	if err := t.register(n); err != nil {
		return err
	}
	for _, c := range s.Children {
		if c.Worker != nil {
			w := &node{name: c.Worker.Name, kind: kindWorker, source: api.SourceHCL, parent: n, worker: c.Worker}
			if err := t.register(w); err != nil {
				return err
			}
			continue
		}
		if err := t.build(c.Supervisor, n); err != nil {
			return err
		}
	}
	return nil
}

// register adds n to the names and to its parent's children.
func (t *Tree) register(n *node) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, taken := t.nodes[n.name]; taken {
		// Callers check names first; this is the last guard, and a name
		// clash is the client's conflict, never an internal error.
		what := "worker"
		if old.kind == kindSupervisor {
			what = "supervisor"
		}
		return control.Errorf(control.CodeConflict, "the name %q is taken by a %s (worker and supervisor names are one name space)", n.name, what)
	}
	t.nodes[n.name] = n
	if n.parent != nil {
		n.parent.children = append(n.parent.children, n)
	}
	return nil
}

// unregisterLocked removes n and everything below it from the names.
func (t *Tree) unregisterLocked(n *node) []*node {
	var gone []*node
	var visit func(*node)
	visit = func(x *node) {
		if t.nodes[x.name] == x {
			delete(t.nodes, x.name)
		}
		x.gone = true
		gone = append(gone, x)
		for _, c := range x.children {
			visit(c)
		}
	}
	visit(n)
	if p := n.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *node) bool { return c == n })
	}
	return gone
}

// forget tells Options.Forget about the workers among nodes and ends the
// goroutines of the supervisors among them. Called without t.mu.
func (t *Tree) forget(nodes []*node) {
	for _, n := range nodes {
		switch n.kind {
		case kindWorker:
			if t.opts.Forget != nil {
				t.opts.Forget(n.name)
			}
		case kindSupervisor:
			_ = n.run.Stop(context.Background())
		}
	}
}

func supIntensity(n int) int {
	if n == 0 {
		return -1 // configured 0: no restart at all (supervise's 0 is its default)
	}
	return n
}

func (t *Tree) newSupervisorNode(s *config.Supervisor, parent *node, source string) (*node, error) {
	run, err := supervise.New(supervise.Spec{
		Name:      s.Path,
		Strategy:  supervise.Strategy(s.Strategy),
		Intensity: supIntensity(s.Intensity),
		Period:    s.Period,
		EventHook: t.opts.EventHook,
	})
	if err != nil {
		return nil, fmt.Errorf("supervisor %q: %w", s.Path, err)
	}
	return &node{name: s.Name, kind: kindSupervisor, source: source, parent: parent, sup: s, run: run}, nil
}

// supChildSpec is the child spec of supervisor n in its parent.
func supChildSpec(n *node) supervise.ChildSpec {
	return supervise.ChildSpec{
		Name:            n.name,
		Service:         n.run.AsChild(),
		StartTimeout:    supervisorTimeout,
		ShutdownTimeout: supervisorTimeout,
		// The marks by which the events package names this child's events
		// supervisor_* on the wire.
		Meta: map[string]string{events.MetaKind: events.KindSupervisor, events.MetaPath: n.sup.Path},
	}
}

// workerSpec is the child spec of worker n.
func (t *Tree) workerSpec(n *node) supervise.ChildSpec {
	w := n.worker
	rt, err := supervise.ParseRestartType(w.Restart)
	if err != nil {
		rt = supervise.Permanent // validated already
	}
	return supervise.ChildSpec{
		Name:            w.Name,
		Service:         &workerService{t: t, n: n},
		Restart:         rt,
		StartTimeout:    w.StartTimeout,
		ShutdownTimeout: w.ShutdownTimeout,
		Backoff:         supervise.Backoff{Initial: w.Backoff.Initial, Max: w.Backoff.Max, ResetAfter: w.Backoff.ResetAfter},
		Meta:            map[string]string{"class": w.Class, "path": w.Path},
	}
}

// workerService starts one incarnation of a worker, with the Family its
// children (if it starts any) run in.
type workerService struct {
	t *Tree
	n *node
}

func (s *workerService) Start(ctx context.Context) (supervise.Instance, error) {
	t, n := s.t, s.n
	var fam *supervise.Family
	fam = supervise.NewFamily(supervise.Spec{Name: n.familyPath(), EventHook: t.opts.EventHook},
		func() { t.familyEnded(n, fam) })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the supervisor cancels ctx after Start anyway
	t.mu.Lock()
	n.fam = fam
	n.cancelStart = cancel
	t.mu.Unlock()
	inst, err := t.opts.Launch(ctx, n.worker, &childHost{t: t, owner: n, fam: fam})
	t.mu.Lock()
	n.cancelStart = nil
	t.mu.Unlock()
	if err != nil {
		fam.Close() // children started during the failed Start
		return nil, err
	}
	return fam.Join(inst), nil
}

// Start starts the configured workers and supervisors in declared order,
// depth first (up to StartConcurrency worker starts in flight), then the
// supervisors and workers persisted by control messages. It returns the
// number of workers started (successfully or not) once each has had its
// first start attempt.
func (t *Tree) Start(ctx context.Context) int {
	n := t.startHCL(ctx)
	n += t.restore(ctx)
	return n
}

func (t *Tree) concurrency() int { return max(t.opts.StartConcurrency, 1) }

func (t *Tree) startHCL(ctx context.Context) int {
	sem := make(chan struct{}, t.concurrency())
	var wg sync.WaitGroup
	n := 0
	for _, sn := range t.supervisorNodes() {
		t.mu.Lock()
		kids := slices.Clone(sn.children)
		t.mu.Unlock()
		for _, c := range kids {
			if c.source != api.SourceHCL {
				continue
			}
			if c.kind == kindSupervisor {
				// Its children are added when the loop reaches it; it
				// runs already, so its start here returns at once.
				if err := sn.run.Add(ctx, supChildSpec(c)); err != nil && ctx.Err() == nil {
					t.logger.Error("adding supervisor", "supervisor", c.sup.Path, "error", err)
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			result, err := sn.run.AddAsync(ctx, t.workerSpec(c))
			if err != nil {
				<-sem
				t.logger.Error("adding worker", "worker", c.name, "error", err)
				continue
			}
			n++
			wg.Go(func() {
				<-result // a failed first start is logged by the event hook
				<-sem
			})
		}
	}
	wg.Wait()
	return n
}

// supervisorNodes returns the supervisors, depth first in tree order.
func (t *Tree) supervisorNodes() []*node {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*node
	var visit func(*node)
	visit = func(n *node) {
		out = append(out, n)
		for _, c := range n.children {
			if c.kind == kindSupervisor {
				visit(c)
			}
		}
	}
	visit(t.root)
	return out
}

// Stop stops the tree: control operations and hybrids' requests are
// refused from now on, and the root stops its children in reverse order,
// each within its shutdown timeout (a sub-supervisor likewise stops its own
// first); then every supervisor's goroutine ends.
func (t *Tree) Stop(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	if t.root == nil {
		return nil
	}
	var errs []error
	for _, sn := range t.supervisorNodes() {
		if err := sn.run.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping supervisor %q: %w", sn.sup.Path, err))
		}
	}
	return errors.Join(errs...)
}

// errClosed is returned by operations once Stop began.
var errClosed = control.Errorf(control.CodeConflict, "the host is shutting down")

// findSupervisor finds a supervisor by its path ("root/campaign-a"), its
// path without the root ("campaign-a"), its name alone (names are unique in
// the host), or "" for the root. Call with t.mu held.
func (t *Tree) findSupervisorLocked(path string) *node {
	path = strings.Trim(path, "/")
	if path == "" {
		return t.root
	}
	if !strings.Contains(path, "/") {
		if n := t.nodes[path]; n != nil && n.kind == kindSupervisor {
			return n
		}
	}
	for _, n := range t.nodes {
		if n.kind == kindSupervisor && (n.sup.Path == path || n.sup.Path == config.RootName+"/"+path) {
			return n
		}
	}
	return nil
}

// hybridAtLocked returns the worker whose children's supervisor has that
// path, if it has one now.
func (t *Tree) hybridAtLocked(path string) *node {
	path = strings.Trim(path, "/")
	for _, n := range t.nodes {
		if n.kind == kindWorker && n.source != api.SourceHybrid && n.fam != nil && n.fam.Current() != nil &&
			(n.familyPath() == path || n.familyPath() == config.RootName+"/"+path) {
			return n
		}
	}
	return nil
}

// Sizes reports how many entries each of the tree's maps holds, so that a
// test can check that they return to their size when the workers they
// were for are gone.
func (t *Tree) Sizes() map[string]int {
	t.mu.Lock()
	nodes, dw, ds := len(t.nodes), len(t.dynW), len(t.dynS)
	t.mu.Unlock()
	return map[string]int{"nodes": nodes, "locks": t.locks.size(), "persisted_workers": dw, "persisted_supervisors": ds}
}
