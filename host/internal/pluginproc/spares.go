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
)

// spareDeathBackoff spaces out the replacements of spares that die while
// idle: 100ms after one death, doubled for every further spare of the
// binary that died in a row, up to a minute. It is not
// jittered: each binary has one replacement in flight at a time, so there
// is no crowd to spread out.
var spareDeathBackoff = supervise.Backoff{Initial: 100 * time.Millisecond, Max: time.Minute, Jitter: -1}

// Spares is a pool of warm spares: plugin processes launched ahead of need
// (the binary checked against its checksum by go-plugin's SecureConfig, the
// handshake done, the Worker client dispensed) that have not been sent
// Start. Start, given the pool in Options.Spares, takes a spare of the right
// binary when the pool has one and only sends it the worker's Start, so a
// restart costs about one Start RPC instead of a checksum of the binary, an
// exec and a handshake. A spare is launched with nothing of a worker: the
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
// workers never fail runs no spare processes. From then on the pool keeps
// size spares of the key ready, launching them one at a time in the
// background; the replacement of a spare is launched once the Start that
// took it has returned, so that it does not slow that Start down. A Start
// that finds no spare ready while one is being launched waits for that one
// (it is ready sooner than a process launched now would be) unless another
// Start already does; the next launch then begins as soon as it is handed
// over.
//
// A launch that fails stops the refilling of the key until a Start of it
// succeeds without a spare; a spare that dies while idle is replaced after a
// backoff. A key whose spares no Start has asked for during
// DefaultSpareIdleExpiry is dropped until the next failure.
//
// Spares killed by the pool are never handed out, so they never show up as
// a worker's exit. Close kills and reaps them all. The methods of a nil
// *Spares do nothing.
type Spares struct {
	size   int
	logger hclog.Logger
	expiry time.Duration
	exec   *ExecStore // spares are run from it (UseExecStore); nil hashes at each launch

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
	inflight *spareLaunch // the launch under way (or waiting for its backoff), if any
	paused   bool         // a launch failed: no refill until a Start succeeds without a spare
	deaths   int          // spares that died while idle since one was last used
	used     time.Time    // when a Start last asked for the key
	expire   *time.Timer
	gone     bool // dropped from the pool
}

// spareLaunch is a launch of a spare under way. A Start that finds no spare
// ready may claim it and wait for it, rather than launch a process of its
// own that would finish later.
type spareLaunch struct {
	set     *spareSet
	started bool          // past its backoff: the process is being launched
	claimed bool          // a Start waits for it
	done    chan struct{} // closed when the launch has ended
	sp      *spare        // the spare, for the Start that claimed it
}

type spare struct {
	p   *Process
	log *retargetLogger
	// taken is closed when the spare leaves the pool (taken by a Start,
	// or discarded); it ends the spare's watch.
	taken chan struct{}
}

// NewSpares returns a pool that keeps up to size (at least 1) warm spares
// per binary; its own messages (and the logs of spares not yet taken) go to
// logger. It launches nothing until a worker started with it fails. Close it
// when done.
func NewSpares(size int, logger hclog.Logger) *Spares {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Spares{
		size:    max(size, 1),
		logger:  logger,
		expiry:  DefaultSpareIdleExpiry,
		ctx:     ctx,
		cancel:  cancel,
		keys:    map[spareKey]*spareSet{},
		closing: make(chan struct{}),
		changed: make(chan struct{}),
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
// is ready, but one is being launched and no other Start waits for it, it
// returns that launch, now claimed, for the caller to await. Otherwise it
// returns nothing.
func (s *Spares) take(key spareKey, logger hclog.Logger) (*Process, *spareLaunch) {
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
		return sp.p, nil
	}
	if l := set.inflight; l != nil && l.started && !l.claimed {
		l.claimed = true
		return nil, l
	}
	return nil, nil
}

// await waits for the claimed launch l to end, or for ctx to be done, and
// returns the spare it launched, its logs now sent to logger, or nil.
func (s *Spares) await(ctx context.Context, l *spareLaunch, logger hclog.Logger) *Process {
	select {
	case <-l.done:
	case <-ctx.Done():
	}
	s.mu.Lock()
	l.claimed = false // if it is still under way, the spare goes to the pool
	sp := l.sp
	l.sp = nil
	switch {
	case sp == nil:
		s.mu.Unlock()
		return nil
	case ctx.Err() == nil && !isClosed(sp.p.done):
		s.mu.Unlock()
		sp.log.retarget(logger)
		s.logger.Debug("starting a worker in a warm spare that was being launched", "path", l.set.key.path, "pid", sp.p.pid)
		return sp.p
	case !s.closed && !l.set.gone:
		s.addIdleLocked(l.set, sp) // not used: back to the pool
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
		set = &spareSet{key: key, checksum: checksum}
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

// fillLocked starts a launch for set, after delay, unless one is under way
// or set needs none.
func (s *Spares) fillLocked(set *spareSet, delay time.Duration) {
	if s.closed || set.gone || set.inflight != nil || set.paused || len(set.idle) >= s.size {
		return
	}
	l := &spareLaunch{set: set, done: make(chan struct{})}
	set.inflight = l
	s.wg.Add(1)
	go s.fill(l, delay)
}

// fill runs launch l of a spare of l.set, after delay, and hands the spare
// to the Start that claimed the launch, or to the pool.
func (s *Spares) fill(l *spareLaunch, delay time.Duration) {
	defer s.wg.Done()
	set := l.set
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
	s.mu.Lock()
	l.started = true
	s.notifyLocked()
	s.mu.Unlock()
	var sp *spare
	var err error
	if s.ctx.Err() == nil {
		sp, err = s.launch(set)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set.inflight = nil
	defer s.notifyLocked()
	defer close(l.done)
	switch {
	case sp == nil:
		if err != nil && !s.closed && !set.gone {
			set.paused = true
			s.logger.Warn("launching a warm spare failed; none for this binary until one of its workers starts without one",
				"path", set.key.path, "error", err)
		}
	case s.closed || set.gone:
		s.mu.Unlock()
		s.discard(sp)
		s.mu.Lock()
	case l.claimed:
		// The Start waiting for it is late already: launch the next
		// spare now rather than once that Start has returned.
		l.sp = sp
		s.fillLocked(set, 0)
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
	stop := context.AfterFunc(s.ctx, cancel)
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
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.discard(sp)
		}()
	}
}

// removeLocked removes set from the pool and returns its idle spares, which
// the caller discards.
func (s *Spares) removeLocked(set *spareSet) []*spare {
	set.gone = true
	delete(s.keys, set.key)
	set.expire.Stop()
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
