package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/supervise/supervisetest"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// waitTimeout bounds every wait of these tests. It is generous because the
// tests never wait for time to pass, only for goroutines to be scheduled,
// which can take long on a loaded machine under -race.
const waitTimeout = 10 * time.Second

var (
	errCrash  = errors.New("crash")
	errKilled = errors.New("killed after shutdown timeout")
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// lifeLog records what the fakes went through, in order, across services.
type lifeLog struct {
	mu      sync.Mutex
	entries []string
	changed chan struct{}
}

func newLifeLog() *lifeLog { return &lifeLog{changed: make(chan struct{})} }

func (l *lifeLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf(format, args...))
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lifeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// filter returns the entries that start with prefix.
func (l *lifeLog) filter(prefix string) []string {
	var out []string
	for _, e := range l.all() {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// waitEntry waits until entry has been logged.
func (l *lifeLog) waitEntry(t *testing.T, entry string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		found, changed := slices.Contains(l.entries, entry), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in log %q", entry, l.all())
		}
	}
}

// startPlan scripts one call of fakeService.Start.
type startPlan struct {
	err        error         // fail with this error
	block      chan struct{} // wait for this to close before going on
	ignoreCtx  bool          // while blocked, ignore ctx (a hung Start)
	ignoreStop bool          // the instance ignores Stop until ctx ends
}

// fakeService is a scripted Service. Each Start consumes the next plan; with
// no plan left it starts an instance that behaves.
type fakeService struct {
	name string
	log  *lifeLog

	mu    sync.Mutex
	plans []startPlan
	n     int
	// deadlines records the ctx deadline of each Start, to check that ctx
	// carries StartTimeout on the supervisor's clock.
	deadlines []time.Time
	ctxErrs   []error
}

func newFakeService(name string, log *lifeLog, plans ...startPlan) *fakeService {
	return &fakeService{name: name, log: log, plans: plans}
}

func (f *fakeService) plan(p ...startPlan) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans = append(f.plans, p...)
}

func (f *fakeService) starts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeService) Start(ctx context.Context) (supervise.Instance, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	var p startPlan
	if len(f.plans) > 0 {
		p, f.plans = f.plans[0], f.plans[1:]
	}
	dl, _ := ctx.Deadline()
	f.deadlines = append(f.deadlines, dl)
	f.mu.Unlock()
	id := fmt.Sprintf("%s#%d", f.name, n)
	f.log.add("start %s", id)
	if p.block != nil {
		if p.ignoreCtx {
			<-p.block
		} else {
			select {
			case <-p.block:
			case <-ctx.Done():
				f.mu.Lock()
				f.ctxErrs = append(f.ctxErrs, ctx.Err())
				f.mu.Unlock()
				f.log.add("start %s gave up", id)
				return nil, ctx.Err()
			}
		}
	}
	if p.err != nil {
		f.log.add("start %s failed", id)
		return nil, p.err
	}
	f.log.add("run %s", id)
	return &fakeInstance{id: id, log: f.log, done: make(chan struct{}), ignoreStop: p.ignoreStop}, nil
}

// fakeInstance exits when the test says so (Exit) or when stopped.
type fakeInstance struct {
	id         string
	log        *lifeLog
	ignoreStop bool

	once sync.Once
	err  error
	done chan struct{}
}

func (i *fakeInstance) Done() <-chan struct{} { return i.done }
func (i *fakeInstance) ExitErr() error        { return i.err }

// Exit makes the instance exit by itself with err (nil: normally).
func (i *fakeInstance) Exit(err error) {
	i.log.add("exit %s %v", i.id, err)
	i.exit(err)
}

func (i *fakeInstance) exit(err error) {
	i.once.Do(func() {
		i.err = err
		close(i.done)
	})
}

func (i *fakeInstance) Stop(ctx context.Context) error {
	i.log.add("stop %s", i.id)
	if i.ignoreStop {
		select {
		case <-i.done:
			return nil
		case <-ctx.Done():
		}
		i.exit(errKilled)
		i.log.add("killed %s", i.id)
		return errKilled
	}
	i.exit(nil)
	return nil
}

// recorder is an EventHook that keeps every event and lets the test wait for
// them. Each child name (and "" for all) has its own read cursor, so waiting
// for one child's events does not skip another's.
type recorder struct {
	mu      sync.Mutex
	events  []supervise.Event
	cursor  map[string]int
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{cursor: map[string]int{}, changed: make(chan struct{})}
}

func (r *recorder) hook(ev supervise.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
}

func childOf(ev supervise.Event) string { return ev.Map()["worker"].(string) }

// all returns the events so far, of child unless child is "".
func (r *recorder) all(child string) []supervise.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []supervise.Event
	for _, ev := range r.events {
		if child == "" || childOf(ev) == child {
			out = append(out, ev)
		}
	}
	return out
}

// types returns the types of the events so far of child ("" for all).
func (r *recorder) types(child string) []supervise.EventType {
	var out []supervise.EventType
	for _, ev := range r.all(child) {
		out = append(out, ev.Type())
	}
	return out
}

// waitFor returns the first event of child ("" for any) after that child's
// cursor that satisfies pred, and moves the cursor past it.
func (r *recorder) waitFor(t *testing.T, child string, what string, pred func(supervise.Event) bool) supervise.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		for i := r.cursor[child]; i < len(r.events); i++ {
			ev := r.events[i]
			if (child == "" || childOf(ev) == child) && pred(ev) {
				r.cursor[child] = i + 1
				r.mu.Unlock()
				return ev
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s of %q; events: %v", what, child, r.all(""))
		}
	}
}

// next waits for the next event of type T of child.
func next[T supervise.Event](t *testing.T, r *recorder, child string) T {
	t.Helper()
	var zero T
	ev := r.waitFor(t, child, fmt.Sprintf("%T", zero), func(ev supervise.Event) bool {
		_, ok := ev.(T)
		return ok
	})
	return ev.(T)
}

// harness is a supervisor on a fake clock with a recorder and a shared log.
type harness struct {
	t   *testing.T
	clk *supervisetest.Clock
	rec *recorder
	log *lifeLog
	sup *supervise.Supervisor
	// before holds the goroutines of earlier tests, which the leak check
	// ignores.
	before map[string]bool
}

// newHarness makes a supervisor from spec (Clock and EventHook are filled
// in). At the end of the test it stops the supervisor and checks that no
// goroutine of it is left.
func newHarness(t *testing.T, spec supervise.Spec) *harness {
	t.Helper()
	h := &harness{t: t, clk: supervisetest.NewClock(time.Time{}), rec: newRecorder(), log: newLifeLog(),
		before: goroutineIDs(supervisorGoroutines())}
	spec.Clock = h.clk
	spec.EventHook = h.rec.hook
	if spec.Name == "" {
		spec.Name = "root"
	}
	sup, err := supervise.New(spec)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.sup = sup
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := sup.Stop(ctx); err != nil && errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop at cleanup: %v", err)
			return
		}
		checkNoGoroutines(t, h.before)
	})
	return h
}

// noJitter is a backoff with exact delays, for checking them.
var noJitter = supervise.Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Hour, Jitter: -1}

// add adds a child with a fake service and waits until it runs.
func (h *harness) add(cs supervise.ChildSpec, plans ...startPlan) (*fakeService, *fakeInstance) {
	h.t.Helper()
	svc := newFakeService(cs.Name, h.log, plans...)
	cs.Service = svc
	if err := h.sup.Add(testCtx(h.t), cs); err != nil {
		h.t.Fatalf("Add(%q): %v", cs.Name, err)
	}
	ev := next[supervise.ChildStarted](h.t, h.rec, cs.Name)
	return svc, ev.Instance.(*fakeInstance)
}

// state returns the child's state from Status.
func (h *harness) state(name string) supervise.State {
	h.t.Helper()
	st, ok := h.sup.Child(name)
	if !ok {
		h.t.Fatalf("child %q not found", name)
	}
	return st.State
}

func (h *harness) wantState(name string, want supervise.State) {
	h.t.Helper()
	if got := h.state(name); got != want {
		h.t.Fatalf("state of %q = %s, want %s", name, got, want)
	}
}

func (h *harness) wantPending(want ...time.Duration) {
	h.t.Helper()
	if got := h.clk.Pending(); !slices.Equal(got, want) {
		h.t.Fatalf("pending timers = %v, want %v", got, want)
	}
}

// async runs f in a goroutine and returns a channel with its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a call to return")
		return nil
	}
}

// checkNoGoroutines fails the test if a goroutine of package supervise is
// still alive, other than those in ignore (left by earlier tests that
// failed). Goroutines end a moment after they signal that they are done,
// and nothing tells when, so it polls until waitTimeout.
func checkNoGoroutines(t *testing.T, ignore map[string]bool) {
	t.Helper()
	var left []string
	sdktest.Eventually(t, waitTimeout, func() bool {
		left = left[:0]
		for _, g := range supervisorGoroutines() {
			if !ignore[goroutineID(g)] {
				left = append(left, g)
			}
		}
		return len(left) == 0
	}, "goroutines of the supervisor left:\n%s", lazy(func() any { return strings.Join(left, "\n\n") }))
}

// lazy is an argument of sdktest.Eventually's message that is computed
// when the message is: only if the wait fails, with the state at the end.
type lazy func() any

func (f lazy) String() string { return fmt.Sprint(f()) }

// supervisorGoroutines returns the stacks of the goroutines that run code of
// package supervise or were started by it.
func supervisorGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/supervise.(*Supervisor)") || strings.Contains(g, "internal/supervise.withTimeout") {
			out = append(out, g)
		}
	}
	return out
}

// goroutineID returns N of a stack that starts "goroutine N [".
func goroutineID(stack string) string {
	f := strings.Fields(stack)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func goroutineIDs(stacks []string) map[string]bool {
	ids := map[string]bool{}
	for _, g := range stacks {
		ids[goroutineID(g)] = true
	}
	return ids
}

// gate returns a channel for startPlan.block and a function that closes it
// (once). The test's cleanup closes it too, so that a failing test does not
// leave a Start blocked.
func gate(t *testing.T) (chan struct{}, func()) {
	ch := make(chan struct{})
	open := sync.OnceFunc(func() { close(ch) })
	t.Cleanup(open)
	return ch, open
}
