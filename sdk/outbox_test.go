package sdk

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// gatedOutboxHost serves Outbox streams whose ready reply waits for the
// test (and answers syncs): each open takes a value from answer (nil: serve the stream; an
// error: refuse it with that error).
type gatedOutboxHost struct {
	proto.UnimplementedHostServer

	opened chan struct{} // one per Outbox stream opened
	answer chan error
}

func (h *gatedOutboxHost) Outbox(stream proto.Host_OutboxServer) error {
	h.opened <- struct{}{}
	var err error
	select {
	case err = <-h.answer:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	if err != nil {
		return err
	}
	if err := stream.Send(&proto.OutboxReply{}); err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			return nil
		}
		for _, c := range r.GetCalls() {
			if n := c.GetSync(); n != 0 {
				if err := stream.Send(&proto.OutboxReply{Synced: n}); err != nil {
					return err
				}
			}
		}
	}
}

// gatedBus returns a bus whose Host service is h, served over a real gRPC
// connection.
func gatedBus(t *testing.T, h proto.HostServer) *bus {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	proto.RegisterHostServer(gs, h)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hc := &hostConn{ready: make(chan struct{}), conn: conn, client: proto.NewHostClient(conn)}
	close(hc.ready)
	b := newBus(hc, discardLogger())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.closeOutbox(ctx)
		hc.close()
	})
	return b
}

func waitOpened(t *testing.T, h *gatedOutboxHost) {
	t.Helper()
	select {
	case <-h.opened:
	case <-time.After(20 * time.Second):
		t.Fatal("no Outbox stream was opened")
	}
}

// Opening the outbox is single-flight and does not hold the bus's outbox
// mutex across the round trip: concurrent callers wait for the one open
// and share its outbox.
func TestOutboxOpenSingleFlight(t *testing.T) {
	h := &gatedOutboxHost{opened: make(chan struct{}, 16), answer: make(chan error, 16)}
	b := gatedBus(t, h)
	const callers = 8
	got := make(chan *outbox, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() { got <- b.getOutbox(context.Background()) })
	}
	waitOpened(t, h)
	// The open is under way, waiting for the host: the mutex is free.
	if !b.obMu.TryLock() {
		t.Fatal("the outbox mutex is held while the outbox is being opened")
	}
	opening := b.obOpening != nil
	b.obMu.Unlock()
	if !opening {
		t.Error("no open is recorded as under way")
	}
	h.answer <- nil
	wg.Wait()
	close(got)
	var first *outbox
	for ob := range got {
		if ob == nil {
			t.Fatal("a caller got no outbox")
		}
		if first == nil {
			first = ob
		} else if ob != first {
			t.Error("callers got different outboxes")
		}
	}
	select {
	case <-h.opened:
		t.Error("a second Outbox stream was opened")
	default:
	}
	if err := first.sync(context.Background()); err != nil {
		t.Errorf("sync on the shared outbox: %v", err)
	}
}

// An open whose caller gives up is taken over by a caller that waits; one
// the host refuses makes the callers use the unary calls for a while,
// without trying again at once.
func TestOutboxOpenFailures(t *testing.T) {
	h := &gatedOutboxHost{opened: make(chan struct{}, 16), answer: make(chan error, 16)}
	b := gatedBus(t, h)

	// The first caller's context ends during its open.
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan *outbox, 1)
	go func() { first <- b.getOutbox(ctx1) }()
	waitOpened(t, h)
	second := make(chan *outbox, 1)
	go func() { second <- b.getOutbox(context.Background()) }()
	cancel1()
	select {
	case ob := <-first:
		if ob != nil {
			t.Error("the caller that gave up got an outbox")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the caller that gave up did not return")
	}
	// The waiting caller opens again, and gets it.
	waitOpened(t, h)
	h.answer <- nil
	var ob *outbox
	select {
	case ob = <-second:
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting caller did not return")
	}
	if ob == nil {
		t.Fatal("the waiting caller did not open the outbox after the first gave up")
	}

	// The host ends the outbox; the next open is refused by the host.
	ob.cancel()
	select {
	case <-ob.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the outbox did not end")
	}
	go func() { h.answer <- status.Error(codes.Unavailable, "not now") }()
	if got := b.getOutbox(context.Background()); got != nil {
		t.Error("got an outbox the host refused")
	}
	waitOpened(t, h)
	if got := b.getOutbox(context.Background()); got != nil {
		t.Error("got an outbox right after the host refused one")
	}
	select {
	case <-h.opened:
		t.Error("opened again right after the host refused an outbox")
	default:
	}
}
