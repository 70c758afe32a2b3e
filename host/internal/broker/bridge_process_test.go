package broker

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// gatedBus is a bus whose PublishAsync confirmations come only once gate
// is closed: a broker that is slower than the worker.
type gatedBus struct {
	Bus
	gate chan struct{}
}

func (b *gatedBus) PublishAsync(ctx context.Context, key string, body []byte, headers map[string]string) (*Confirmation, error) {
	if _, err := b.Bus.PublishAsync(ctx, key, body, headers); err != nil {
		return nil, err
	}
	return &Confirmation{done: b.gate}, nil
}

// startBusPlugin starts the test plugin "bus" as a worker process whose
// bus is host.
func startBusPlugin(t *testing.T, host pluginproc.BusHost, cfg map[string]any) *pluginproc.Process {
	t.Helper()
	path := filepath.Join(testplugins.Build(t, "bus"), "bus")
	t.Cleanup(testplugins.Cleanup)
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := pluginproc.Start(ctx, pluginproc.Options{
		Path: path, Checksum: sum[:], WorkerName: "flood", Class: "bus", ConfigJSON: raw,
		SystemID: "test", HostName: "test-host", Logger: hclog.NewNullLogger(), BusHost: host,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		p.Kill("test over")
		select {
		case <-p.Done():
		case <-time.After(time.Minute):
			t.Error("the plugin process did not end")
		}
	})
	return p
}

// published reads the flood handler's count of publishes that returned.
func published(t *testing.T, p *pluginproc.Process) int {
	t.Helper()
	raw, err := p.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var st struct {
		Published int `json:"published"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Status %s: %v", raw, err)
	}
	return st.Published
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// A real worker process whose handler publishes (deferred) without end and
// never returns, so it never acks: while the broker does not confirm, it
// is held back once MaxDeferred publishes are outstanding (its Publish
// blocks: the host stops reading its Outbox stream), and the host keeps
// no more than that; once confirmations come it proceeds, and the
// confirmed publishes are not kept, so the host's heap stays flat however
// many it makes without acking.
func TestDeferredPublishBackpressureRealProcess(t *testing.T) {
	const bound = 1000
	emb := NewEmbeddedBus()
	defer emb.Close()
	bus := &gatedBus{Bus: emb, gate: make(chan struct{})}
	h := NewBridges(bus).process(BridgeOptions{MaxDeferred: bound})
	ctx := context.Background()
	if err := emb.Declare(ctx, "in", nil); err != nil {
		t.Fatal(err)
	}
	p := startBusPlugin(t, h, map[string]any{"queue": "in", "reply_to": "out", "prefetch": 2})
	heap0 := heapInUse()
	if err := emb.Publish(ctx, "in", []byte("flood"), nil); err != nil {
		t.Fatal(err)
	}
	// Held back: the count reaches the bound (plus what the SDK and gRPC
	// buffer) and stays there.
	const slack = 20000
	var last int
	sdktest.Eventually(t, time.Minute, func() bool {
		n := published(t, p)
		still := n == last && n >= bound
		last = n
		if !still {
			time.Sleep(300 * time.Millisecond) // let it move, if it can
		}
		return still
	}, "the flooding worker was not held back (published %d)", last)
	if last > bound+slack {
		t.Fatalf("held back only after %d publishes, bound %d", last, bound)
	}
	h.pubs.mu.Lock()
	kept := len(h.pubs.pending)
	h.pubs.mu.Unlock()
	if kept > bound {
		t.Fatalf("the host keeps %d confirmations, bound %d", kept, bound)
	}
	// Confirmations come: it proceeds, never acking, and the host keeps
	// next to nothing of it.
	close(bus.gate)
	target := last + 20*bound
	sdktest.Eventually(t, 2*time.Minute, func() bool { return published(t, p) >= target },
		"the worker did not proceed once its publishes were confirmed")
	h.pubs.mu.Lock()
	kept = len(h.pubs.pending)
	h.pubs.mu.Unlock()
	if kept > bound {
		t.Errorf("the host keeps %d confirmations after they came", kept)
	}
	if grown := int64(heapInUse()) - int64(heap0); grown > 64<<20 {
		t.Errorf("host heap grew by %d bytes over %d unacked publishes", grown, target)
	}
	t.Logf("held back at %d publishes (bound %d); %d publishes without an ack, %d kept", last, bound, published(t, p), kept)
	// Released, the handler returns and its delivery is acked.
	if err := emb.Publish(ctx, "in", []byte("release"), nil); err != nil {
		t.Fatal(err)
	}
}
