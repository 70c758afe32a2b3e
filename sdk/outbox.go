package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// The outbox (the Host service's Outbox stream) carries a worker process's
// one-way calls in order: the deferred publishes of its handlers, the acks
// and nacks of its deliveries, its metrics. Calls on it are stream
// messages, not round trips (a delivery's publishes and its ack go in one
// message): the host handles them one after another, in the order they
// were sent, so a delivery's ack comes after its handler's publishes, and
// the host holds the ack back until those are confirmed.
// The SDK opens one per process, lazily, and falls back to the unary calls
// (with PublishRequest.deferred for a handler's publish) when the host does
// not serve it.

// outboxReadyTimeout bounds the wait for the host's first reply on a new
// outbox.
const outboxReadyTimeout = 10 * time.Second

// outboxRetry is how long the SDK uses the unary calls after an outbox
// could not be opened, before it tries again.
const outboxRetry = 5 * time.Second

// outbox is the SDK's end of one Outbox stream.
type outbox struct {
	b      *bus
	stream proto.Host_OutboxClient
	cancel context.CancelFunc
	done   chan struct{} // closed once the stream has ended

	sendMu sync.Mutex // one Send at a time

	mu       sync.Mutex
	err      error // why the stream ended; set before done is closed
	closing  bool  // closed by the SDK, not broken
	lastSync uint64
	waiting  map[uint64]chan struct{}
}

// errOutboxGone is the error of a call on an outbox that has ended.
var errOutboxGone = errors.New("the host's outbox stream has ended")

// getOutbox returns the process's outbox, opening it if need be; nil when
// the host does not serve one (use the unary calls), the worker is
// stopping, it could not be opened lately, or ctx ends first.
//
// Opening is single-flight and outside b.obMu: one caller opens (a round
// trip to the host, up to outboxReadyTimeout), the others wait for it
// (or for their ctx) without holding the mutex, so that the outbox's end,
// closeOutbox and the callers that find one open are never held up by
// the network. An open that failed because its caller's ctx ended is tried
// again by the next caller, at once (a waiter takes over); one the host
// failed is not tried again before outboxRetry (the unary calls are used
// meanwhile).
func (b *bus) getOutbox(ctx context.Context) *outbox {
	if b.host == nil {
		return nil
	}
	for {
		b.obMu.Lock()
		if b.ob != nil {
			ob := b.ob
			b.obMu.Unlock()
			return ob
		}
		if b.noOutbox || b.obClosed || time.Now().Before(b.obRetryAt) {
			b.obMu.Unlock()
			return nil
		}
		if opening := b.obOpening; opening != nil {
			b.obMu.Unlock()
			select {
			case <-opening:
				continue // see what the open gave
			case <-ctx.Done():
				return nil
			}
		}
		opening := make(chan struct{})
		b.obOpening = opening
		b.obMu.Unlock()

		ob, err := b.openOutbox(ctx)

		b.obMu.Lock()
		b.obOpening = nil
		close(opening)
		switch {
		case err == nil && b.obClosed:
			// Stopped meanwhile: closeOutbox did not see this one.
			b.obMu.Unlock()
			ob.abandon()
			return nil
		case err == nil:
			b.ob = ob
			b.obMu.Unlock()
			return ob
		case status.Code(err) == codes.Unimplemented:
			b.noOutbox = true
			b.obMu.Unlock()
			b.logger.Debug("the host serves no outbox; using a call per publish and ack")
		case ctx.Err() != nil:
			// The caller gave up, not the host: the next caller opens.
			b.obMu.Unlock()
		default:
			b.obRetryAt = time.Now().Add(outboxRetry)
			b.obMu.Unlock()
			b.logger.Warn("opening the host's outbox failed; using a call per publish and ack for now", "error", err)
		}
		return nil
	}
}

// abandon closes an outbox nothing was sent on.
func (ob *outbox) abandon() {
	ob.mu.Lock()
	ob.closing = true
	ob.mu.Unlock()
	ob.sendMu.Lock()
	_ = ob.stream.CloseSend()
	ob.sendMu.Unlock()
	ob.cancel()
}

// openOutbox opens an Outbox stream and waits for the host's first reply.
func (b *bus) openOutbox(ctx context.Context) (*outbox, error) {
	ctx, cancelWait := context.WithTimeout(ctx, outboxReadyTimeout)
	defer cancelWait()
	client, err := b.host.get(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	stream, err := client.Outbox(sctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if !stop() || err != nil {
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	ob := &outbox{b: b, stream: stream, cancel: cancel, done: make(chan struct{}), waiting: map[uint64]chan struct{}{}}
	go ob.receive()
	return ob, nil
}

// receive reads the host's replies until the stream ends.
func (ob *outbox) receive() {
	for {
		r, err := ob.stream.Recv()
		if err != nil {
			ob.end(err)
			return
		}
		ob.mu.Lock()
		if w, ok := ob.waiting[r.GetSynced()]; ok {
			delete(ob.waiting, r.GetSynced())
			close(w)
		}
		ob.mu.Unlock()
	}
}

// end records that the stream has ended. An outbox the SDK did not close
// broke: the acks sent on it may not have reached the host, so the
// consumers' streams are ended too, which makes the host requeue what the
// worker has not settled (it is delivered again on the streams the
// consumers open next); the next call opens a new outbox.
func (ob *outbox) end(err error) {
	ob.mu.Lock()
	if ob.err != nil {
		ob.mu.Unlock()
		return
	}
	ob.err = fmt.Errorf("%w: %v", errOutboxGone, status.Convert(err).Message())
	closing := ob.closing
	ob.mu.Unlock()
	close(ob.done)
	ob.cancel()
	b := ob.b
	b.obMu.Lock()
	if b.ob == ob {
		b.ob = nil
	}
	b.obMu.Unlock()
	if closing {
		return
	}
	b.logger.Warn("the host's outbox stream ended; resubscribing the consumers", "error", status.Convert(err).Message())
	b.mu.Lock()
	all := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		all = append(all, c)
	}
	b.mu.Unlock()
	for _, c := range all {
		c.cancelStream()
	}
}

// broken reports whether the stream has ended.
func (ob *outbox) broken() bool {
	select {
	case <-ob.done:
		return true
	default:
		return false
	}
}

// send sends calls in one message. It returns once the message is handed
// to gRPC (which may wait for the stream's flow control), not once the
// host has it.
func (ob *outbox) send(calls ...*proto.OutboxCall) error {
	ob.sendMu.Lock()
	err := ob.stream.Send(&proto.OutboxRequest{Calls: calls})
	ob.sendMu.Unlock()
	if err != nil {
		// The stream's error comes from Recv; make sure it ends.
		ob.cancel()
		<-ob.done
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return ob.err
	}
	return nil
}

// sync waits until the host has handled every call sent before it, or ctx
// ends.
func (ob *outbox) sync(ctx context.Context) error {
	ob.mu.Lock()
	if ob.err != nil {
		err := ob.err
		ob.mu.Unlock()
		return err
	}
	ob.lastSync++
	n := ob.lastSync
	w := make(chan struct{})
	ob.waiting[n] = w
	ob.mu.Unlock()
	if err := ob.send(&proto.OutboxCall{Call: &proto.OutboxCall_Sync{Sync: n}}); err != nil {
		return err
	}
	select {
	case <-w:
		return nil
	case <-ob.done:
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return ob.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeOutbox flushes the outbox (until ctx ends) and closes it; later
// calls use the unary ones. Called once the consumers have stopped.
func (b *bus) closeOutbox(ctx context.Context) {
	b.obMu.Lock()
	ob := b.ob
	b.ob = nil
	b.obClosed = true
	b.obMu.Unlock()
	if ob == nil {
		return
	}
	if err := ob.sync(ctx); err != nil && !errors.Is(err, errOutboxGone) {
		b.logger.Debug("flushing the host's outbox failed", "error", err)
	}
	ob.mu.Lock()
	ob.closing = true
	ob.mu.Unlock()
	ob.sendMu.Lock()
	_ = ob.stream.CloseSend()
	ob.sendMu.Unlock()
	select {
	case <-ob.done:
	case <-ctx.Done():
		ob.cancel()
	}
}
