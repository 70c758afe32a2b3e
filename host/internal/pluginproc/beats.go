package pluginproc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// healthBeatSlackMax bounds the slack given to a beat's delivery before the
// first silent interval counts as a failed check.
const healthBeatSlackMax = 250 * time.Millisecond

// healthBeats watches the worker's health beats (the Worker service's
// HealthBeats stream: the plugin checks its own health every interval and
// sends the result) until the process ends or Stop begins, and kills it
// after healthFailures failed checks in a row. The host only reads: each
// beat resets one timer, so an idle worker costs the host one small read per
// interval instead of a call with its write, read and ping.
//
// A failed beat is a failed check. So is silence: no beat within
// healthInterval + healthTimeout (and a small slack for its delivery) after
// the last one, and then every further healthInterval without one. A
// process that stopped answering altogether (frozen by SIGSTOP, or its
// runtime wedged) is thus killed within the same bound as one whose health
// check hangs, healthInterval × healthFailures + healthTimeout, plus the
// slack.
//
// It reports whether the host should poll Health instead: the plugin was
// built with an SDK without HealthBeats (Unimplemented), or the stream
// broke while the process still runs.
func (p *Process) healthBeats() (poll bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.mu.Lock()
	if p.stopStarted {
		p.mu.Unlock()
		return false
	}
	p.healthCancel = cancel
	p.mu.Unlock()
	stream, err := p.worker.HealthBeats(ctx, &proto.HealthBeatsRequest{
		IntervalMs: max(p.healthInterval.Milliseconds(), 1),
		TimeoutMs:  max(p.healthTimeout.Milliseconds(), 1),
	})
	if err != nil {
		return !p.healthEnded()
	}
	w := &beatWatch{p: p, last: time.Now(), slack: min(p.healthInterval/4, healthBeatSlackMax)}
	w.mu.Lock()
	w.timer = time.AfterFunc(p.healthInterval+p.healthTimeout+w.slack, w.miss)
	w.mu.Unlock()
	defer w.end()
	for {
		b, err := stream.Recv()
		if err != nil {
			if p.healthEnded() || w.end() {
				return false
			}
			if status.Code(err) == codes.Unimplemented {
				p.logger.Debug("the plugin sends no health beats (built with an older SDK); polling its health")
			} else {
				p.logger.Debug("health beats ended; polling the worker's health", "error", p.rpcMessage(err))
			}
			return true
		}
		w.beat(b)
	}
}

// healthEnded reports whether the process is gone or Stop has begun: health
// means nothing any more.
func (p *Process) healthEnded() bool {
	return isClosed(p.done) || isClosed(p.stopping)
}

// beatWatch judges one worker's health beats and the silences between them.
type beatWatch struct {
	p     *Process
	slack time.Duration

	mu       sync.Mutex
	timer    *time.Timer // fires at the next silence that counts as a failure
	last     time.Time   // when the last beat arrived (or the stream opened)
	misses   int         // silent intervals counted since the last beat
	failures int         // failed checks in a row
	ended    bool        // the process was killed, or the watch ended
}

// beat judges one beat.
func (w *beatWatch) beat(b *proto.HealthBeat) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return
	}
	w.p.beats.Add(1)
	w.last, w.misses = time.Now(), 0
	w.timer.Reset(w.p.healthInterval + w.p.healthTimeout + w.slack)
	var err error
	switch {
	case b.GetHealthy():
	case b.GetTimedOut():
		err = fmt.Errorf("no answer within health_timeout (%s)", w.p.healthTimeout)
	default:
		msg := b.GetMessage()
		if msg == "" {
			msg = "no reason given"
		}
		err = fmt.Errorf("unhealthy: %s", w.p.scrub(msg))
	}
	w.judge(err)
}

// miss counts a silence as a failed check. The first comes healthInterval +
// healthTimeout + slack after the last beat, the following ones each
// healthInterval later than the beat they stand for was due (without the
// slack again).
func (w *beatWatch) miss() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return
	}
	w.misses++
	w.timer.Reset(max(time.Until(w.last.Add(time.Duration(w.misses+1)*w.p.healthInterval+w.p.healthTimeout)), 0))
	w.judge(fmt.Errorf("no health beat for %s (health_interval %s + health_timeout %s)",
		time.Since(w.last).Round(time.Millisecond), w.p.healthInterval, w.p.healthTimeout))
}

// judge records a check's result (err nil: healthy) and kills the process
// after healthFailures failures in a row. w.mu is held.
func (w *beatWatch) judge(err error) {
	p := w.p
	if p.healthEnded() {
		w.stop()
		return // the health of a stopping worker means nothing
	}
	p.unhealthy.Store(err != nil)
	if err == nil {
		w.failures = 0
		return
	}
	w.failures++
	p.logger.Warn("health check failed", "failures", w.failures, "limit", p.healthFailures, "error", err)
	if w.failures >= p.healthFailures {
		w.stop()
		p.logger.Error("killing unhealthy plugin process", "pid", p.pid)
		p.Kill(fmt.Sprintf("health check failed %d times in a row (last: %v)", w.failures, err))
	}
}

// stop ends the watch. w.mu is held.
func (w *beatWatch) stop() {
	w.ended = true
	w.timer.Stop()
}

// end ends the watch and reports whether it had ended already (the process
// was killed for its health).
func (w *beatWatch) end() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.ended
	w.stop()
	return was
}
