package pluginproc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// newSpares returns a pool that is closed at the end of the test (before
// launchLog's check, if launchLog was called first), and its log.
func newSpares(t *testing.T, size int) (*Spares, *logSink) {
	t.Helper()
	logger, sink := testLogger(t)
	s := NewSpares(size, logger.Named("spares"))
	t.Cleanup(s.Close)
	return s, sink
}

// waitPool waits until cond, called with the pool locked and the state of
// o's key (nil if the pool has none), returns true; it returns the key's
// idle spares then.
func waitPool(t *testing.T, s *Spares, o Options, what string, cond func(set *spareSet) bool) []*Process {
	t.Helper()
	key := newSpareKey(o.Path, o.Checksum, o.withDefaults().Logger.GetLevel(), o.Env, o.Limits)
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		set := s.keys[key]
		ok := cond(set)
		var idle []*Process
		if set != nil {
			for _, sp := range set.idle {
				idle = append(idle, sp.p)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return idle
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the pool did not get to %s within 20s", what)
		}
	}
}

// idleSpares waits until the pool holds n idle spares of o's binary and no
// launch of it is under way, and returns them.
func idleSpares(t *testing.T, s *Spares, o Options, n int) []*Process {
	t.Helper()
	return waitPool(t, s, o, fmt.Sprintf("%d idle spares", n), func(set *spareSet) bool {
		return set != nil && len(set.idle) == n && set.launching == 0 && set.delayed == 0
	})
}

// prime starts a worker with o in pool s and SIGKILLs it, which makes the
// pool keep spares of its binary; it returns the first spare once ready.
func prime(t *testing.T, s *Spares, o Options) *Process {
	t.Helper()
	o.Spares = s
	p := start(t, o)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	return waitPool(t, s, o, "a spare", func(set *spareSet) bool { return set != nil && len(set.idle) > 0 })[0]
}

func TestStartTakesSpareAndPoolRefills(t *testing.T) {
	pids := launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	if n := len(pids()); n != 2 {
		t.Fatalf("%d launches, want the crashed worker's and the spare's", n)
	}
	if isClosed(sp.Done()) {
		t.Fatal("the spare is not alive")
	}

	logger, sink := testLogger(t)
	o.Logger = logger
	o.WorkerName = "from-spare"
	logged := sink.seen(fmt.Sprintf("pid=%d", sp.Pid()))
	p := start(t, o)
	if p != sp || p.Pid() != sp.Pid() {
		t.Fatalf("Start launched pid %d, want the spare %d", p.Pid(), sp.Pid())
	}
	// The spare's logs now appear under the worker's name.
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker's start log line did not reach its logger")
	}
	for _, line := range strings.Split(sink.String(), "\n") {
		if strings.Contains(line, "chaos worker starting") && !strings.Contains(line, "test.from-spare.chaos") {
			t.Errorf("plugin log line not under the worker's name: %s", line)
		}
	}
	if err := p.Health(context.Background()); err != nil {
		t.Errorf("Health: %v", err)
	}

	// The pool launches a replacement.
	next := idleSpares(t, s, o, 1)[0]
	if next.Pid() == p.Pid() {
		t.Fatal("the taken spare is still in the pool")
	}
	if n := len(pids()); n != 3 {
		t.Errorf("%d launches, want 3", n)
	}

	// A Process from a spare stops like any other.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr after Stop = %v", err)
	}
	assertGone(t, p.Pid())
}

func TestSpareWorkerKilledFromOutside(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	p := start(t, o)
	if p != sp {
		t.Fatalf("Start launched pid %d, want the spare %d", p.Pid(), sp.Pid())
	}
	dir := p.sockDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if ee.Code != -1 || ee.Signal != "SIGKILL" || ee.Reason != "" || ee.Error() != "killed by SIGKILL" {
		t.Errorf("ExitError = %+v, want signal SIGKILL, code -1, no reason", ee)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket directory %s after Done: %v, want it removed", dir, err)
	}
	// Its crash keeps the pool going: a new spare, not the dead one.
	if next := idleSpares(t, s, o, 1)[0]; next == p {
		t.Error("the dead worker's process is back in the pool")
	}
}

func TestSocketDirRemovedAfterSIGKILL(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{}))
	dir := p.sockDir
	hostDir := SocketDir()
	wantHost := fmt.Sprintf("%s%d-", socketDirPrefix, os.Getpid())
	if !strings.HasPrefix(filepath.Base(hostDir), wantHost) || filepath.Dir(hostDir) != filepath.Clean(os.TempDir()) {
		t.Errorf("host's socket directory %q, want %s* in %s", hostDir, wantHost, os.TempDir())
	}
	if filepath.Dir(dir) != hostDir || !strings.HasPrefix(filepath.Base(dir), "plugin-dir") {
		t.Errorf("socket directory %s, want plugin-dir* in the host's %s", dir, hostDir)
	}
	// Both sides' sockets: the plugin's, and the host's GRPCBroker
	// socket on which it serves the Host service to this worker.
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("socket directory %s holds %v (%v), want the plugin's socket and the host's broker socket", dir, ents, err)
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSocket == 0 {
			t.Errorf("%s in %s is not a socket (%v)", e.Name(), dir, e.Type())
		}
	}
	if fi, err := os.Stat(hostDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("host's socket directory %s: %v, %v; want mode 0700", hostDir, fi, err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket directory %s after Done: %v, want it removed", dir, err)
	}
}

func TestDeadSpareIsReplaced(t *testing.T) {
	launchLog(t)
	s, sink := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	if err := syscall.Kill(sp.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sp, 10*time.Second)
	next := waitPool(t, s, o, "a new spare", func(set *spareSet) bool {
		return set != nil && len(set.idle) == 1 && set.idle[0].p != sp
	})[0]
	if !strings.Contains(sink.String(), "warm spare died while idle") {
		t.Error("the spare's death was not logged")
	}
	p := start(t, o)
	if p != next {
		t.Errorf("Start launched pid %d, want the new spare %d", p.Pid(), next.Pid())
	}
}

// The replacement of spares that keep dying slows down: none to wait for
// while none has died, then 100ms doubled for every death in a row, up to
// a minute, and exact (not jittered).
func TestDeathBackoff(t *testing.T) {
	for deaths, want := range map[int]time.Duration{
		-1: 0, 0: 0, 1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		10: 51200 * time.Millisecond, 11: time.Minute, 21: time.Minute, 1000: time.Minute,
	} {
		for range 3 {
			if got := deathBackoff(deaths); got != want {
				t.Errorf("deathBackoff(%d) = %v, want %v", deaths, got, want)
			}
		}
	}
}

func TestSparesClose(t *testing.T) {
	pids := launchLog(t)
	s, sink := newSpares(t, 2)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	prime(t, s, o)
	spares := idleSpares(t, s, o, 2)
	s.Close()
	for _, sp := range spares {
		if !isClosed(sp.Done()) {
			t.Errorf("spare %d not reaped when Close returned", sp.Pid())
		}
		assertGone(t, sp.Pid())
	}
	if n := len(pids()); n != 3 {
		t.Errorf("%d launches, want the crashed worker's and 2 spares", n)
	}
	if strings.Contains(sink.String(), "plugin process exited") {
		t.Errorf("the spares' deaths were logged:\n%s", sink.String())
	}
	s.Close() // again: a no-op

	// Start still works, the slow way, and a crash launches no spare.
	p := start(t, o)
	if slices.Contains(spares, p) {
		t.Fatal("Start used a spare of a closed pool")
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	if n := len(pids()); n != 4 {
		t.Errorf("%d launches after Close, want 4", n)
	}
}

func TestSparesCloseDuringLaunch(t *testing.T) {
	pids := launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	p := start(t, o)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a launch under way", func(set *spareSet) bool { return set != nil && set.launching > 0 })
	s.Close()
	for _, pid := range pids() {
		assertGone(t, pid)
	}
}

func TestSpareOfOtherChecksumIsNotUsed(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)

	// Another path with the same content is another key.
	other := o
	other.Path = testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "chaos"))
	if p := start(t, other); p == sp {
		t.Fatal("a spare of another path was used")
	}
	if isClosed(sp.Done()) {
		t.Fatal("the spare of the first path is gone")
	}

	// Another checksum for the path (a rescanned binary) is refused by
	// SecureConfig, and the old checksum's spare is dropped, not used.
	changed := o
	changed.Checksum = sha(t, filepath.Join(pluginDir, "other"))
	if _, err := Start(context.Background(), changed); !errors.Is(err, ErrBinaryChanged) {
		t.Errorf("Start with another checksum = %v, want ErrBinaryChanged", err)
	}
	waitDone(t, sp, 10*time.Second)
	assertGone(t, sp.Pid())
}

// A spare's environment is fixed at launch: a Start with another Env does
// not take it (and leaves it to the Starts of its own Env).
func TestNoSpareOfAnotherEnv(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	other := o
	other.Env = []string{"CHAOS_EXTRA=1"}
	if p := start(t, other); p == sp {
		t.Fatal("Start with another Env used the spare")
	}
	if idle := idleSpares(t, s, o, 1); idle[0] != sp {
		t.Error("the spare left the pool")
	}
}

func TestFailedSpareLaunchStopsRefilling(t *testing.T) {
	pids := launchLog(t)
	s, sink := newSpares(t, 1)
	dir := t.TempDir()
	path := testplugins.Copy(t, chaosPath(), filepath.Join(dir, "chaos"))
	o := chaosOptions(t, map[string]any{})
	o.Path, o.Checksum, o.Spares = path, sha(t, path), s
	p := start(t, o)
	// Replace the binary (by rename: the running one is busy) and crash
	// the worker: the spare's launch fails the checksum check.
	replace := func(src string) {
		tmp := testplugins.Copy(t, src, filepath.Join(dir, "next"))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace(filepath.Join(pluginDir, "other"))
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a paused key", func(set *spareSet) bool { return set != nil && set.paused && set.launching == 0 })
	if !strings.Contains(sink.String(), "launching a warm spare failed") {
		t.Error("the failed launch was not logged")
	}
	if n := len(pids()); n != 1 {
		t.Errorf("%d launches, want 1: the changed binary must not run", n)
	}
	if _, err := Start(context.Background(), o); !errors.Is(err, ErrBinaryChanged) {
		t.Errorf("Start = %v, want ErrBinaryChanged", err)
	}
	waitPool(t, s, o, "still paused", func(set *spareSet) bool {
		return set != nil && set.paused && set.launching == 0 && set.depth == 1
	})

	// Once a Start succeeds the slow way, spares come back.
	replace(chaosPath())
	start(t, o)
	idleSpares(t, s, o, 1)
}

func TestStartTimeoutAppliesToSpare(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	slow := chaosOptions(t, map[string]any{"mode": "slow_start", "delay": "1h"})
	slow.Spares = s
	slow.StartTimeout = 300 * time.Millisecond
	_, err := Start(context.Background(), slow)
	if err == nil || !strings.Contains(err.Error(), "start_timeout") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start = %v, want start_timeout exceeded", err)
	}
	if !isClosed(sp.Done()) {
		t.Fatal("the spare that timed out is still running")
	}
	assertGone(t, sp.Pid())
}

func TestUnusedSparesExpire(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	sp := prime(t, s, o)
	s.mu.Lock()
	s.expiry = time.Millisecond
	for _, set := range s.keys {
		set.expire.Reset(time.Millisecond)
	}
	s.mu.Unlock()
	waitDone(t, sp, 10*time.Second)
	waitPool(t, s, o, "no key", func(set *spareSet) bool { return set == nil })
}

func TestStartWaitsForSpareBeingLaunched(t *testing.T) {
	pids := launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	p := start(t, o)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a spare being launched", func(set *spareSet) bool {
		return set != nil && (len(set.idle) > 0 || set.launching > 0)
	})
	q := start(t, o)
	if got := pids(); len(got) < 2 || q.Pid() != got[1] {
		t.Errorf("Start got pid %d, want the spare's (launches %v)", q.Pid(), got)
	}
}

func TestStartTimeoutWhileWaitingForSpare(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	p := start(t, o)
	// Spares launched from now on never complete the handshake (the chaos
	// plugin just blocks when it thinks it is a child).
	t.Setenv("CHAOS_CHILD", "1")
	passEnv(t, "CHAOS_CHILD")
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a spare being launched", func(set *spareSet) bool {
		return set != nil && set.launching > 0
	})
	o.StartTimeout = 300 * time.Millisecond
	begin := time.Now()
	_, err := Start(context.Background(), o)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a warm spare") {
		t.Errorf("Start = %v, want start_timeout exceeded while waiting for the spare", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Start took %s with a 300ms start_timeout", took)
	}
	// The Start no longer waits: another one may wait for the launch.
	waitPool(t, s, o, "a launch no Start waits for", func(set *spareSet) bool {
		return set != nil && set.launching > 0 && len(set.waiters) == 0
	})
}

// Warm gives a binary spares before any worker of it failed, and the next
// Start takes one.
func TestWarmGivesSparesBeforeAFailure(t *testing.T) {
	pids := launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	s.Warm(o)
	sp := idleSpares(t, s, o, 1)[0]
	if n := len(pids()); n != 1 {
		t.Fatalf("%d launches, want the spare's only", n)
	}
	p := start(t, o)
	if p != sp {
		t.Fatalf("Start launched pid %d, want the spare %d", p.Pid(), sp.Pid())
	}
}

// spareKeyOf is the pool's key for the Starts of o.
func spareKeyOf(o Options) spareKey {
	return newSpareKey(o.Path, o.Checksum, o.withDefaults().Logger.GetLevel(), o.Env, o.Limits)
}

// takeOut takes a spare of o's key from the pool as a Start would, without
// starting a worker in it (so without refilling: the refill waits for the
// Start to return), and kills it at the end of the test. It fails the test
// if the pool had none ready.
func takeOut(t *testing.T, s *Spares, o Options) *Process {
	t.Helper()
	p, w := s.take(spareKeyOf(o), hclog.NewNullLogger())
	if w != nil {
		s.await(context.Background(), w, hclog.NewNullLogger())
	}
	if p == nil {
		t.Fatal("the pool had no spare ready")
	}
	t.Cleanup(func() {
		p.Kill("test over")
		waitDone(t, p, 10*time.Second)
		assertGone(t, p.Pid())
	})
	return p
}

// A Start that finds no spare ready (starts coming faster than spares are
// launched) deepens the binary's pool by one, up to MaxSpareDepth; the
// missing spares are launched side by side, at most spareLaunchParallel
// at a time, and the Start waits for the first of them. Once Starts find
// spares ready again, the depth shrinks back to the pool's size, and the
// spares beyond it are killed and reaped without showing as an exit.
func TestSpareDepthGrowsAndShrinks(t *testing.T) {
	pids := launchLog(t)
	s, sink := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	key := spareKeyOf(o)
	prime(t, s, o)
	logger, _ := testLogger(t)
	for depth := 2; depth <= MaxSpareDepth+1; depth++ {
		// Take every spare ready, then ask once more: a miss.
		for _, sp := range idleSpares(t, s, o, min(depth-1, MaxSpareDepth)) {
			if p := takeOut(t, s, o); p != sp {
				t.Fatalf("took pid %d, want the oldest spare %d", p.Pid(), sp.Pid())
			}
		}
		p, w := s.take(key, logger)
		if p != nil || w == nil {
			t.Fatalf("take from an empty pool = %v, %v; want a waiter", p, w)
		}
		s.mu.Lock()
		set := s.keys[key]
		got, launching, waiters := set.depth, set.launching, len(set.waiters)
		s.mu.Unlock()
		if want := min(depth, MaxSpareDepth); got != want {
			t.Fatalf("depth %d after a miss, want %d", got, want)
		}
		if launching != spareLaunchParallel || waiters != 1 {
			t.Fatalf("%d launches under way and %d waiters after a miss, want %d and 1", launching, waiters, spareLaunchParallel)
		}
		sp := s.await(context.Background(), w, logger)
		if sp == nil || isClosed(sp.Done()) {
			t.Fatal("the waiting Start got no live spare")
		}
		t.Cleanup(func() { sp.Kill("test over"); waitDone(t, sp, 10*time.Second) })
	}
	// The depth stays at its bound: as many spares ready, no more.
	spares := idleSpares(t, s, o, MaxSpareDepth)
	launched := len(pids())

	// Starts that find spares ready let the depth shrink, one step per
	// decay period, to the pool's size.
	s.mu.Lock()
	s.decay = time.Millisecond
	s.keys[key].shrink.Reset(time.Millisecond)
	s.mu.Unlock()
	left := waitPool(t, s, o, "the pool's size again", func(set *spareSet) bool {
		return set != nil && set.depth == 1 && len(set.idle) == 1 && set.launching == 0 && set.shrink == nil
	})
	for _, sp := range spares {
		if sp == left[0] {
			continue
		}
		waitDone(t, sp, 10*time.Second)
		assertGone(t, sp.Pid())
	}
	if !slices.Contains(spares, left[0]) {
		t.Error("the spare left is a new one")
	}
	if n := len(pids()); n != launched {
		t.Errorf("%d launches while shrinking, want none", n-launched)
	}
	if strings.Contains(sink.String(), "plugin process exited") || strings.Contains(sink.String(), "died while idle") {
		t.Errorf("the discarded spares' deaths were logged:\n%s", sink.String())
	}
	// The spare left is used as before.
	if p := start(t, o); p != left[0] {
		t.Errorf("Start launched pid %d, want the spare %d", p.Pid(), left[0].Pid())
	}
}

// A depth above the pool's size does not shrink while Starts still find no
// spare ready.
func TestSpareDepthHoldsWhileStartsMiss(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	key := spareKeyOf(o)
	prime(t, s, o)
	takeOut(t, s, o)
	if p, w := s.take(key, hclog.NewNullLogger()); p != nil || w == nil {
		t.Fatalf("take from an empty pool = %v, %v; want a waiter", p, w)
	} else if sp := s.await(context.Background(), w, hclog.NewNullLogger()); sp != nil {
		t.Cleanup(func() { sp.Kill("test over"); waitDone(t, sp, 10*time.Second) })
	}
	idleSpares(t, s, o, 2)
	// A period in which a Start missed keeps the depth, and the next
	// period without one lowers it.
	s.mu.Lock()
	set := s.keys[key]
	set.missed = true
	set.shrink.Stop()
	s.mu.Unlock()
	s.shrinkSet(set)
	s.mu.Lock()
	depth, missed := set.depth, set.missed
	s.mu.Unlock()
	if depth != 2 || missed {
		t.Fatalf("after a period with a miss: depth %d, missed %v; want 2, false", depth, missed)
	}
	s.shrinkSet(set)
	waitPool(t, s, o, "depth 1", func(set *spareSet) bool { return set != nil && set.depth == 1 && len(set.idle) == 1 })
}

// A crash loop run against the pool: every Start succeeds, the pool never
// holds more processes than its bound plus the Starts waiting, and Close
// leaves none of the processes launched alive.
func TestCrashLoopWithSpares(t *testing.T) {
	pids := launchLog(t)
	s, sink := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	key := spareKeyOf(o)
	s.mu.Lock()
	s.decay = time.Hour // no spare discarded by a shrink: every launch is counted below
	s.mu.Unlock()
	const crashes = 30
	for range crashes {
		p := start(t, o)
		if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitDone(t, p, 10*time.Second)
		s.mu.Lock()
		if set := s.keys[key]; set != nil {
			if n := len(set.idle) + set.launching + set.delayed; n > s.maxDepth {
				t.Errorf("the pool holds %d spares ready or launching, above its bound %d", n, s.maxDepth)
			}
			if set.launching+set.delayed > spareLaunchParallel {
				t.Errorf("%d launches under way at once, above %d", set.launching+set.delayed, spareLaunchParallel)
			}
		}
		s.mu.Unlock()
	}
	// Every launch is a worker or a spare: at most the workers plus what
	// the pool may hold.
	if n := len(pids()); n > crashes+MaxSpareDepth {
		t.Errorf("%d launches for %d starts, want at most %d", n, crashes, crashes+MaxSpareDepth)
	}
	s.Close()
	for _, pid := range pids() {
		assertGone(t, pid)
	}
	if strings.Contains(sink.String(), "plugin process exited") {
		t.Errorf("the spares killed by the pool showed as exits:\n%s", sink.String())
	}
}

// Launches that fail pause the refill; a Start waiting for one of them
// gets no spare (and launches its own), none is left waiting.
func TestFailedConcurrentLaunchesReleaseWaiters(t *testing.T) {
	pids := launchLog(t)
	s, _ := newSpares(t, 1)
	dir := t.TempDir()
	path := testplugins.Copy(t, chaosPath(), filepath.Join(dir, "chaos"))
	o := chaosOptions(t, map[string]any{})
	o.Path, o.Checksum, o.Spares = path, sha(t, path), s
	key := spareKeyOf(o)
	prime(t, s, o)
	takeOut(t, s, o)
	launched := len(pids())
	// Replace the binary: the launches of the next miss fail the checksum.
	tmp := testplugins.Copy(t, filepath.Join(pluginDir, "other"), filepath.Join(dir, "next"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	p, w := s.take(key, hclog.NewNullLogger())
	if p != nil || w == nil {
		t.Fatalf("take from an empty pool = %v, %v; want a waiter", p, w)
	}
	if sp := s.await(context.Background(), w, hclog.NewNullLogger()); sp != nil {
		t.Fatalf("the waiting Start got pid %d from launches of a changed binary", sp.Pid())
	}
	waitPool(t, s, o, "a paused key", func(set *spareSet) bool {
		return set != nil && set.paused && set.launching == 0 && len(set.waiters) == 0
	})
	if n := len(pids()); n != launched {
		t.Errorf("%d processes of the changed binary ran", n-launched)
	}
	if _, err := Start(context.Background(), o); !errors.Is(err, ErrBinaryChanged) {
		t.Errorf("Start = %v, want ErrBinaryChanged", err)
	}
}

// The first Start after a binary got spares finds its first spare still
// being launched (launched because of the failure that led to this Start):
// that is no sign of a crash loop, and keeps the depth.
func TestFirstRestartKeepsDepth(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	key := spareKeyOf(o)
	p := start(t, o)
	// Spares launched from now on never complete the handshake, so the
	// next Start cannot find one ready.
	t.Setenv("CHAOS_CHILD", "1")
	passEnv(t, "CHAOS_CHILD")
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a spare being launched", func(set *spareSet) bool { return set != nil && set.launching > 0 })
	q, w := s.take(key, hclog.NewNullLogger())
	if q != nil || w == nil {
		t.Fatalf("take = %v, %v; want a waiter for the launch under way", q, w)
	}
	s.mu.Lock()
	depth, launching := s.keys[key].depth, s.keys[key].launching
	s.mu.Unlock()
	if depth != 1 || launching != 1 {
		t.Errorf("depth %d with %d launches after the first restart's miss, want 1 and 1", depth, launching)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sp := s.await(ctx, w, hclog.NewNullLogger()); sp != nil {
		t.Errorf("await with a cancelled context = pid %d, want nothing", sp.Pid())
	}
}
