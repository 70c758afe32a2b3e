package sdk

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// hangWorker's Health hangs, ignoring its deadline, while hang is set, until
// release is closed; calls counts the checks begun.
type hangWorker struct {
	hang    atomic.Bool
	release chan struct{}
	calls   atomic.Int64
}

func (w *hangWorker) Start(context.Context, *Env) error { return nil }
func (w *hangWorker) Stop(context.Context) error        { return nil }
func (w *hangWorker) Health(context.Context) error {
	w.calls.Add(1)
	if w.hang.Load() {
		<-w.release
	}
	return nil
}

// TestHealthBeatsReportAHungCheckWithoutPilingUp streams health beats from a
// worker over a real gRPC connection: healthy beats while Health answers;
// once it hangs, a timed-out beat at its timeout and one per interval while
// it still hangs, without calling it again; healthy beats again once it
// returns.
func TestHealthBeatsReportAHungCheckWithoutPilingUp(t *testing.T) {
	w := &hangWorker{release: make(chan struct{})}
	class := Class{Name: "hang", New: Construct(func(struct{}) (Worker, error) { return w, nil })}
	wc, _ := dial(t, class)
	c := ctx(t)
	if _, err := wc.Start(c, &proto.StartRequest{WorkerName: "h1", Class: "hang", ConfigJson: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	bad, err := wc.HealthBeats(c, &proto.HealthBeatsRequest{IntervalMs: 0, TimeoutMs: 10})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "interval_ms (0)") {
		t.Errorf("HealthBeats with no interval = %v, want InvalidArgument naming interval_ms", err)
	}

	stream, err := wc.HealthBeats(c, &proto.HealthBeatsRequest{IntervalMs: 40, TimeoutMs: 20})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *proto.HealthBeat {
		t.Helper()
		b, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for range 3 {
		if b := recv(); !b.Healthy || b.TimedOut {
			t.Fatalf("beat of a healthy worker = %v", b)
		}
	}
	w.hang.Store(true)
	// The beat of a check begun before the hang may still come healthy.
	b := recv()
	if b.Healthy {
		b = recv()
	}
	if b.Healthy || !b.TimedOut || !strings.Contains(b.Message, "no answer within health_timeout (20ms)") {
		t.Fatalf("beat of a hung check = %v", b)
	}
	calls := w.calls.Load()
	for range 3 {
		if b := recv(); b.Healthy || !b.TimedOut || !strings.Contains(b.Message, "has not returned") {
			t.Fatalf("beat while the check still hangs = %v", b)
		}
	}
	if n := w.calls.Load(); n != calls {
		t.Errorf("Health called %d more times while a check hung", n-calls)
	}
	w.hang.Store(false)
	close(w.release)
	for {
		b := recv() // the intervals the released check still fills may fail
		if b.Healthy {
			break
		}
	}
	if b := recv(); !b.Healthy {
		t.Errorf("beat after the check returned = %v", b)
	}
}
