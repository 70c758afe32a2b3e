package pluginproc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

const (
	// spareLaunchTimeout bounds the go-plugin handshake of a warm spare.
	spareLaunchTimeout = DefaultStartTimeout
	// DefaultSpareIdleExpiry is how long a binary's spares are kept while
	// no Start takes one of them.
	DefaultSpareIdleExpiry = time.Hour
	// MaxSpareDepth is how many spares the pool keeps at most of a binary
	// whose starts come faster than its spares are launched (a crash loop,
	// control starts in a row), unless the pool's size is larger. A spare
	// costs about 2.4 MiB (PSS) of a 13 MB Go plugin, so a crash-looping
	// binary holds about 10 MiB of them.
	MaxSpareDepth = 4
	// DefaultSpareDepthDecay is how long a binary keeps a depth above the
	// pool's size without a Start that found no spare ready; then the depth
	// shrinks by one, and a spare beyond it is discarded.
	DefaultSpareDepthDecay = 10 * time.Second
	// spareLaunchParallel bounds the launches of one binary's spares under
	// way at once. A launch is mostly CPU (the checksum, the plugin's
	// runtime start-up): two side by side overlap one's waits with the
	// other's work, while more would mostly make each, and the Start
	// waiting for the first, take longer on a small machine.
	spareLaunchParallel = 2
)

// spareDeathBackoff spaces out the replacements of spares that die while
// idle: 100ms after one death, doubled for every further spare of the
// binary that died in a row, up to a minute. It is not
// jittered: a binary's replacements are few (at most its depth) and its
// own, so there is no crowd to spread out.
var spareDeathBackoff = supervise.Backoff{Initial: 100 * time.Millisecond, Max: time.Minute, Jitter: -1}

// Spares is a pool of warm spares: plugin processes launched ahead of need
// (the binary checked against its checksum — run from the ExecStore's
// verified copy, or hashed without a store —, the handshake done, the
// Worker client dispensed) that have not been sent Start. Start, given the
// pool in Options.Spares, takes a spare of the right binary when the pool
// has one and only sends it the worker's Start, so a restart costs about
// one Start RPC instead of an exec and a handshake. A spare is launched with nothing of a worker: the
// worker's name (for its logs) and health settings are attached when it is
// taken. Each spare is still a fresh go-plugin client and process, used for
// one worker only.
//
// Spares are kept per key: the binary's path, the checksum the catalog
// recorded, the extra environment (Options.Env) and the log level passed
// to plugins; a Start for a path with
// another checksum (a rescanned binary) drops the old key's spares. A key
// gets spares once a worker started from it ends other than by Stop (it
// crashed, exited or was killed, so a restart is coming): a host whose
// workers never fail runs no spare processes.
//
// From then on the pool keeps the key's depth of spares ready or being
// launched, and launches the missing ones at once, side by side, in the
// background. The depth starts at the pool's size. A Start that finds no
// spare ready (its starts come faster than spares are launched: a crash
// loop, control starts in a row), after an earlier Start of the key had
// one, raises it by one, up to MaxSpareDepth (or
// the size, if larger), so that the next starts find one; a depth above the
// size shrinks by one, its extra spare discarded, every
// DefaultSpareDepthDecay in which no Start found the key without a spare
// ready. The replacement of a spare a Start took is launched once that Start
// has returned, so that it does not slow that Start down, unless another
// launch of the key ends or starts meanwhile. A Start that finds no spare
// ready while some are being launched waits for the first of them to be
// ready (it is ready sooner than a process launched now would be), as long
// as there are more launches under way than Starts waiting; the pool then
// launches another one at once.
//
// A launch that fails stops the refilling of the key until a Start of it
// succeeds without a spare (launches already under way go on, and Starts
// waiting beyond those left launch a process of their own); a spare that
// dies while idle is replaced after a backoff. A key whose spares no Start
// has asked for during DefaultSpareIdleExpiry is dropped until the next
// failure.
//
// Spares killed by the pool (at Close, when their key is dropped, or beyond
// a shrunk depth) are never handed out, so they never show up as a worker's
// exit. Close kills and reaps them all. The methods of a nil *Spares do
// nothing.
type Spares struct {
	size     int
	maxDepth int
	logger   hclog.Logger
	expiry   time.Duration
	decay    time.Duration
	exec     *ExecStore // spares are run from it (UseExecStore); nil hashes at each launch

	ctx    context.Context // cancelled by Close: aborts launches
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	keys    map[spareKey]*spareSet
	wg      sync.WaitGroup // launches, watches and discards; Add under mu while !closed
	closing chan struct{}  // closed when Close has finished
	changed chan struct{}  // closed and replaced when spares come or go (for tests)
}

// spareKey says which spares can serve a Start. Spares are launched with
// the limits of the workers they are for, in cgroups already limited.
type spareKey struct {
	path   string
	sum    string // the checksum's bytes
	level  hclog.Level
	env    string // Options.Env, joined by NULs: a spare's environment is fixed at launch
	limits contain.Limits
}

func newSpareKey(path string, checksum []byte, level hclog.Level, env []string, limits contain.Limits) spareKey {
	return spareKey{path: path, sum: string(checksum), level: level, env: strings.Join(env, "\x00"), limits: limits}
}

// envList is the key's extra environment (Options.Env) as a list.
func (k spareKey) envList() []string {
	if k.env == "" {
		return nil
	}
	return strings.Split(k.env, "\x00")
}

// spareSet is the pool's state for one key.
type spareSet struct {
	key      spareKey
	checksum []byte
	idle     []*spare
	// delayed counts the launches waiting for their backoff, launching
	// those under way: with idle, what the key has or will have.
	delayed   int
	launching int
	// waiters are the Starts waiting for a launch under way, oldest
	// first; never more than launching.
	waiters []*spareWaiter
	depth   int         // how many spares the key keeps: from the pool's size to its maxDepth
	served  bool        // a Start has had a spare of the key (so its spares had time to be launched)
	missed  bool        // a Start found no spare ready since the depth was last checked
	shrink  *time.Timer // checks the depth every decay while it is above the size
	paused  bool        // a launch failed: no refill until a Start succeeds without a spare
	deaths  int         // spares that died while idle since one was last used
	used    time.Time   // when a Start last asked for the key
	expire  *time.Timer
	gone    bool // dropped from the pool
}

// spareWaiter is a Start that found no spare ready and waits for one being
// launched, rather than launch a process of its own that would be ready
// later.
type spareWaiter struct {
	set *spareSet
	// ch gets the first spare launched after the waiter came (ahead of
	// later waiters), or nil when no launch is left for it; buffered, it is
	// sent to once, under the pool's lock, by whoever removes the waiter
	// from set.waiters.
	ch chan *spare
}

type spare struct {
	p   *Process
	log *retargetLogger
	// taken is closed when the spare leaves the pool (taken by a Start,
	// or discarded); it ends the spare's watch.
	taken chan struct{}
}

// NewSpares returns a pool that keeps at least size (at least 1), and at
// most the larger of size and MaxSpareDepth, warm spares per binary; its
// own messages (and the logs of spares not yet taken) go to logger. It
// launches nothing until a worker started with it fails. Close it when
// done.
func NewSpares(size int, logger hclog.Logger) *Spares {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	size = max(size, 1)
	ctx, cancel := context.WithCancel(context.Background())
	return &Spares{
		size:     size,
		maxDepth: max(size, MaxSpareDepth),
		logger:   logger,
		expiry:   DefaultSpareIdleExpiry,
		decay:    DefaultSpareDepthDecay,
		ctx:      ctx,
		cancel:   cancel,
		keys:     map[spareKey]*spareSet{},
		closing:  make(chan struct{}),
		changed:  make(chan struct{}),
	}
}

// notifyLocked wakes those waiting for a change of the pool (tests).
func (s *Spares) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close kills every spare, stops launching new ones and returns once all
// of them, and any launch under way, are gone and reaped. Processes already
// taken by a Start are not the pool's: Close leaves them alone. Start still
// works after Close, launching a process for every start.
func (s *Spares) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closing
		return
	}
	s.closed = true
	s.cancel()
	var idle []*spare
	for _, set := range s.keys {
		idle = append(idle, s.removeLocked(set)...)
	}
	s.mu.Unlock()
	for _, sp := range idle {
		sp.log.retarget(hclog.NewNullLogger())
		sp.p.Kill("warm spare no longer needed")
	}
	for _, sp := range idle {
		<-sp.p.done
	}
	s.wg.Wait()
	close(s.closing)
}

// take returns a live spare of key, its logs now sent to logger. If no spare
// is ready, it raises the key's depth and, if more spares are being launched
// than Starts wait for them, returns a waiter for the caller to await.
// Otherwise it returns nothing.
func (s *Spares) take(key spareKey, logger hclog.Logger) (*Process, *spareWaiter) {
	if s == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	for k, set := range s.keys {
		if k.path == key.path && (k.sum != key.sum || k.level != key.level) {
			s.dropLocked(set) // the catalog has another checksum now
		}
	}
	set := s.keys[key]
	if set == nil {
		return nil, nil
	}
	set.used = time.Now()
	for len(set.idle) > 0 {
		sp := set.idle[0]
		set.idle = slices.Delete(set.idle, 0, 1)
		close(sp.taken)
		s.notifyLocked()
		if isClosed(sp.p.done) {
			set.deaths++ // died while idle; its watch has not noticed yet
			continue
		}
		sp.log.retarget(logger)
		s.logger.Debug("starting a worker in a warm spare", "path", key.path, "pid", sp.p.pid)
		set.served = true
		return sp.p, nil
	}
	s.missLocked(set)
	// The missing spares are launched now, not once this Start has
	// returned: the next Start may come sooner. This one waits for the
	// first of them, as it would for a process launched for it.
	s.fillLocked(set, deathBackoff(set.deaths))
	if len(set.waiters) >= set.launching {
		return nil, nil
	}
	w := &spareWaiter{set: set, ch: make(chan *spare, 1)}
	set.waiters = append(set.waiters, w)
	return nil, w
}

// missLocked records that a Start found no spare of set ready: the key's
// starts come faster than its spares are launched, so it keeps one more,
// up to the pool's maxDepth. Not so for the first Start after the key got
// spares: the key's first spare is launched because of the failure that
// led to that Start (a restart), and is naturally not ready yet.
func (s *Spares) missLocked(set *spareSet) {
	set.missed = true
	if set.depth >= s.maxDepth || set.paused || !set.served {
		return // a paused key's launches fail: more of them would not help
	}
	set.depth++
	s.logger.Debug("a start found no warm spare ready; keeping more", "path", set.key.path, "depth", set.depth)
	if set.shrink == nil {
		set.shrink = time.AfterFunc(s.decay, func() { s.shrinkSet(set) })
	}
	s.notifyLocked()
}

// shrinkSet lowers set's depth by one, and discards an idle spare beyond
// it, unless a Start found no spare ready during the last decay period.
func (s *Spares) shrinkSet(set *spareSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || set.gone {
		return
	}
	if !set.missed && set.depth > s.size {
		set.depth--
		s.logger.Debug("starts find warm spares ready; keeping fewer", "path", set.key.path, "depth", set.depth)
		for len(set.idle) > set.depth {
			sp := set.idle[len(set.idle)-1]
			set.idle = set.idle[:len(set.idle)-1]
			close(sp.taken)
			s.discardLater(sp)
		}
		s.notifyLocked()
	}
	set.missed = false
	if set.depth > s.size {
		set.shrink.Reset(s.decay)
	} else {
		set.shrink = nil
	}
}

// await waits for the spare w waits for, or for ctx to be done, and returns
// the spare, its logs now sent to logger, or nil.
func (s *Spares) await(ctx context.Context, w *spareWaiter, logger hclog.Logger) *Process {
	var sp *spare
	select {
	case sp = <-w.ch:
	case <-ctx.Done():
		s.mu.Lock()
		if i := slices.Index(w.set.waiters, w); i >= 0 {
			w.set.waiters = slices.Delete(w.set.waiters, i, i+1)
			s.notifyLocked()
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		sp = <-w.ch // it was sent one as ctx ended
	}
	switch {
	case sp == nil:
		return nil
	case ctx.Err() == nil && !isClosed(sp.p.done):
		sp.log.retarget(logger)
		s.logger.Debug("starting a worker in a warm spare that was being launched", "path", w.set.key.path, "pid", sp.p.pid)
		return sp.p
	}
	s.mu.Lock()
	if !s.closed && !w.set.gone && !isClosed(sp.p.done) && len(w.set.idle) < w.set.depth {
		s.addIdleLocked(w.set, sp) // not used: back to the pool
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.discard(sp)
	return nil
}

// started is told how a Start of key ended, and refills the key's spares.
func (s *Spares) started(key spareKey, fromSpare, ok bool) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.keys[key]
	if set == nil || s.closed {
		return
	}
	set.used = time.Now()
	switch {
	case ok && fromSpare:
		set.deaths = 0
	case ok:
		set.paused = false // the binary starts: try spares again
	}
	s.fillLocked(set, deathBackoff(set.deaths))
}

// Warm gives the binary of o (its Path, Checksum and Logger's level, as
// Start would use them) spares now, as a failure of one of its workers
// would: for binaries whose next start is likely soon, such as those of
// workers started by control messages, where a client waits for the start.
func (s *Spares) Warm(o Options) {
	if s == nil || len(o.Checksum) == 0 {
		return
	}
	o = o.withDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warmLocked(newSpareKey(o.Path, o.Checksum, o.Logger.GetLevel(), o.Env, o.Limits), o.Checksum, "keeping warm spares for a binary started by control messages")
}

// watchWorker waits for the end of p, started from key, and gives the key
// spares if p ended other than by Stop: a restart is likely to follow.
func (s *Spares) watchWorker(key spareKey, checksum []byte, p *Process) {
	<-p.done
	p.mu.Lock()
	stopped := p.stopStarted
	p.mu.Unlock()
	if stopped {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warmLocked(key, checksum, "keeping warm spares for a binary whose worker ended")
}

// warmLocked makes sure key has a set and starts filling it.
func (s *Spares) warmLocked(key spareKey, checksum []byte, why string) {
	if s.closed {
		return
	}
	set := s.keys[key]
	if set == nil {
		set = &spareSet{key: key, checksum: checksum, depth: s.size}
		s.keys[key] = set
		set.expire = time.AfterFunc(s.expiry, func() { s.expireSet(set) })
		s.logger.Debug(why, "path", key.path, "size", s.size)
		s.notifyLocked()
	}
	set.used = time.Now()
	s.fillLocked(set, deathBackoff(set.deaths))
}

// deathBackoff is the delay before replacing a spare after deaths spares of
// its binary died in a row.
func deathBackoff(deaths int) time.Duration { return spareDeathBackoff.Delay(deaths, nil) }

// fillLocked starts, after delay, the launches set needs to have its depth
// of spares, and one for each Start waiting, ready or under way; at most
// spareLaunchParallel at a time (the launches that end start the others).
func (s *Spares) fillLocked(set *spareSet, delay time.Duration) {
	if s.closed || set.gone || set.paused {
		return
	}
	n := set.depth + len(set.waiters) - len(set.idle) - set.delayed - set.launching
	n = min(n, spareLaunchParallel-set.delayed-set.launching)
	for range n {
		if delay > 0 {
			set.delayed++
		} else {
			set.launching++
		}
		s.wg.Add(1)
		go s.fill(set, delay)
	}
	if n > 0 {
		s.notifyLocked()
	}
}

// fill launches a spare of set, after delay, and hands it to the first Start
// waiting for one, or to the pool.
func (s *Spares) fill(set *spareSet, delay time.Duration) {
	defer s.wg.Done()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		s.mu.Lock()
		set.delayed--
		set.launching++
		s.notifyLocked()
		s.mu.Unlock()
	}
	var sp *spare
	var err error
	if s.ctx.Err() == nil {
		sp, err = s.launch(set)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set.launching--
	defer s.notifyLocked()
	switch {
	case sp == nil:
		if err != nil && !s.closed && !set.gone {
			if !set.paused {
				s.logger.Warn("launching a warm spare failed; none for this binary until one of its workers starts without one",
					"path", set.key.path, "error", err)
			}
			set.paused = true
		}
		// Starts waiting beyond the launches left launch their own, the
		// latest first: the earlier ones wait for launches begun earlier.
		for len(set.waiters) > set.launching {
			w := set.waiters[len(set.waiters)-1]
			set.waiters = set.waiters[:len(set.waiters)-1]
			w.ch <- nil
		}
	case s.closed || set.gone:
		s.discardLater(sp)
	case len(set.waiters) > 0:
		w := set.waiters[0]
		set.waiters = slices.Delete(set.waiters, 0, 1)
		w.ch <- sp
		set.served = true
		// That Start is late already: launch the next spare now rather
		// than once it has returned.
		s.fillLocked(set, 0)
	case len(set.idle) >= set.depth:
		s.discardLater(sp) // the depth shrank meanwhile
	default:
		s.addIdleLocked(set, sp)
		s.fillLocked(set, 0)
	}
}

// addIdleLocked puts sp into the pool.
func (s *Spares) addIdleLocked(set *spareSet, sp *spare) {
	set.idle = append(set.idle, sp)
	s.wg.Add(1)
	go s.watch(set, sp)
	s.logger.Debug("warm spare ready", "path", set.key.path, "pid", sp.p.pid)
	s.notifyLocked()
}

// launch launches a spare of set's binary: with the host's environment and
// the key's log level, logging to the pool's logger until it is taken.
func (s *Spares) launch(set *spareSet) (*spare, error) {
	log := newRetargetLogger(s.logger)
	// The process's context is not the pool's: Close aborts a launch, but
	// must not touch a spare a Start has taken.
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(s.ctx, func() {
		log.retarget(hclog.NewNullLogger()) // quietly, as Close kills the idle ones
		cancel()
	})
	p, err := launch(ctx, launchConfig{
		path:      set.key.path,
		checksum:  set.checksum,
		exec:      s.exec,
		logger:    log,
		env:       pluginEnvLevel(set.key.level, set.key.envList()),
		timeout:   fmt.Sprintf("the warm spare's handshake timeout (%s)", spareLaunchTimeout),
		handshake: spareLaunchTimeout,
		cancel:    cancel,
		name:      "spare",
		limits:    set.key.limits,
	})
	stop()
	if err != nil {
		cancel()
		return nil, err
	}
	return &spare{p: p, log: log, taken: make(chan struct{})}, nil
}

// watch replaces sp if it dies while idle.
func (s *Spares) watch(set *spareSet, sp *spare) {
	defer s.wg.Done()
	select {
	case <-sp.taken:
		return
	case <-sp.p.done:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(set.idle, sp)
	if i < 0 {
		return // taken or discarded meanwhile
	}
	set.idle = slices.Delete(set.idle, i, i+1)
	close(sp.taken)
	s.notifyLocked()
	set.deaths++
	delay := deathBackoff(set.deaths)
	s.logger.Warn("a warm spare died while idle; replacing it", "path", set.key.path, "pid", sp.p.pid,
		"error", sp.p.ExitErr(), "delay", delay.String())
	s.fillLocked(set, delay)
}

// expireSet drops set if no Start asked for it for the expiry time.
func (s *Spares) expireSet(set *spareSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || set.gone {
		return
	}
	if idle := time.Since(set.used); idle < s.expiry {
		set.expire.Reset(s.expiry - idle)
		return
	}
	s.logger.Debug("dropping the warm spares of an unused binary", "path", set.key.path)
	s.dropLocked(set)
}

// dropLocked removes set from the pool and discards its spares in the
// background.
func (s *Spares) dropLocked(set *spareSet) {
	for _, sp := range s.removeLocked(set) {
		s.discardLater(sp)
	}
}

// discardLater discards sp, which has left the pool, in the background;
// the pool is locked and not closed, or Close is waiting for its launches.
func (s *Spares) discardLater(sp *spare) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.discard(sp)
	}()
}

// removeLocked removes set from the pool and returns its idle spares, which
// the caller discards; the Starts waiting for its launches launch their own.
func (s *Spares) removeLocked(set *spareSet) []*spare {
	set.gone = true
	delete(s.keys, set.key)
	set.expire.Stop()
	if set.shrink != nil {
		set.shrink.Stop()
	}
	for _, w := range set.waiters {
		w.ch <- nil
	}
	set.waiters = nil
	idle := set.idle
	set.idle = nil
	for _, sp := range idle {
		close(sp.taken)
	}
	s.notifyLocked()
	return idle
}

// discard kills a spare that left the pool without being taken, quietly,
// and returns once it is reaped.
func (s *Spares) discard(sp *spare) {
	sp.log.retarget(hclog.NewNullLogger())
	sp.p.Kill("warm spare no longer needed")
	<-sp.p.done
}

// SparePool is what a pool holds ready for one binary (Spares.Ready).
type SparePool struct {
	Path string
	Pids []int // the ready spares' processes, in pid order
}

// Ready returns the pool's idle spares, launched and waiting for a Start,
// per binary path in path order (spares of one path with different keys
// counted together); nil for a nil pool or one that holds none. It is for
// status: a spare may be taken or die right after.
func (s *Spares) Ready() []SparePool {
	if s == nil {
		return nil
	}
	byPath := map[string][]int{}
	s.mu.Lock()
	for _, set := range s.keys {
		for _, sp := range set.idle {
			byPath[set.key.path] = append(byPath[set.key.path], sp.p.Pid())
		}
	}
	s.mu.Unlock()
	var out []SparePool
	for path, pids := range byPath {
		slices.Sort(pids)
		out = append(out, SparePool{Path: path, Pids: pids})
	}
	slices.SortFunc(out, func(a, b SparePool) int { return strings.Compare(a.Path, b.Path) })
	return out
}
