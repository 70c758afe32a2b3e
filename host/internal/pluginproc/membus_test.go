package pluginproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memBus is a small in-memory BusHost for tests that run several workers
// together: durable queues bound with routing keys on one exchange,
// competing consumers with prefetch, requeue on nack and on close.
type memBus struct {
	mu       sync.Mutex
	queues   map[string]*memQueue
	bindings map[string][]string // routing key -> queues
}

type memQueue struct {
	ready  []Delivery    // waiting, oldest first
	wake   chan struct{} // closed and replaced when ready grows
	nextID uint64
}

func newMemBus() *memBus {
	return &memBus{queues: map[string]*memQueue{}, bindings: map[string][]string{}}
}

func (b *memBus) queue(name string) *memQueue {
	q := b.queues[name]
	if q == nil {
		q = &memQueue{wake: make(chan struct{})}
		b.queues[name] = q
	}
	return q
}

// push appends (or, for a requeue, prepends) a delivery; b.mu is held.
func (q *memQueue) push(d Delivery, front bool) {
	if front {
		q.ready = append([]Delivery{d}, q.ready...)
	} else {
		q.ready = append(q.ready, d)
	}
	close(q.wake)
	q.wake = make(chan struct{})
}

func (b *memBus) Publish(_ context.Context, key string, body []byte, headers map[string]string, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range b.bindings[key] {
		b.queue(name).push(Delivery{RoutingKey: key, Body: slices.Clone(body), Headers: headers}, false)
	}
	return nil
}

func (b *memBus) Consume(ctx context.Context, spec ConsumeSpec) (Consumer, error) {
	queue, bindings, prefetch := spec.Queue, spec.Bindings, spec.Prefetch
	b.mu.Lock()
	b.queue(queue)
	for _, k := range bindings {
		if !slices.Contains(b.bindings[k], queue) {
			b.bindings[k] = append(b.bindings[k], queue)
		}
	}
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	c := &memConsumer{bus: b, queue: queue, ch: make(chan Delivery), cancel: cancel, unacked: map[uint64]Delivery{}, credit: make(chan struct{}, prefetch)}
	for range prefetch {
		c.credit <- struct{}{}
	}
	go c.run(ctx)
	return c, nil
}

type memConsumer struct {
	bus    *memBus
	queue  string
	ch     chan Delivery
	cancel context.CancelFunc
	credit chan struct{}

	mu      sync.Mutex
	unacked map[uint64]Delivery
	closed  bool
}

func (c *memConsumer) run(ctx context.Context) {
	for {
		select {
		case <-c.credit:
		case <-ctx.Done():
			return
		}
		var d Delivery
		for {
			c.bus.mu.Lock()
			q := c.bus.queues[c.queue]
			if len(q.ready) > 0 {
				d = q.ready[0]
				q.ready = q.ready[1:]
				q.nextID++
				d.Tag = q.nextID
				c.bus.mu.Unlock()
				break
			}
			wake := q.wake
			c.bus.mu.Unlock()
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			d.Redelivered = true
			c.bus.mu.Lock()
			c.bus.queue(c.queue).push(d, true)
			c.bus.mu.Unlock()
			return
		}
		c.unacked[d.Tag] = d
		c.mu.Unlock()
		select {
		case c.ch <- d:
		case <-ctx.Done():
			return // Close requeues it
		}
	}
}

func (c *memConsumer) Deliveries() <-chan Delivery { return c.ch }

func (c *memConsumer) settle(tag uint64) (Delivery, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.unacked[tag]
	if !ok || c.closed {
		return d, errors.New("unknown delivery")
	}
	delete(c.unacked, tag)
	c.credit <- struct{}{}
	return d, nil
}

func (c *memConsumer) Ack(tag uint64) error { _, err := c.settle(tag); return err }

func (c *memConsumer) Nack(tag uint64, requeue bool, _ string) error {
	d, err := c.settle(tag)
	if err == nil && requeue {
		d.Redelivered = true
		c.bus.mu.Lock()
		c.bus.queue(c.queue).push(d, true)
		c.bus.mu.Unlock()
	}
	return err
}

func (c *memConsumer) Close() error {
	c.cancel()
	c.mu.Lock()
	c.closed = true
	left := c.unacked
	c.unacked = nil
	c.mu.Unlock()
	c.bus.mu.Lock()
	defer c.bus.mu.Unlock()
	for _, d := range left {
		d.Redelivered = true
		c.bus.queue(c.queue).push(d, true)
	}
	return nil
}

// The first-party telnet transport and echo application, each in its own
// plugin process, on one bus: a client's line comes back.
func TestTelnetAndEchoOnOneBus(t *testing.T) {
	bus := newMemBus()
	opts := func(plugin, class string, cfg map[string]any) Options {
		o := chaosOptions(t, cfg)
		o.Path = filepath.Join(pluginDir, plugin)
		o.Checksum = sha(t, o.Path)
		o.Class = class
		o.WorkerName = plugin
		o.BusHost = bus
		return o
	}
	start(t, opts("echo", "echo", map[string]any{"transport_name": "tel"}))
	tp := start(t, opts("telnet", "telnet", map[string]any{"transport_name": "tel", "port": 0}))
	raw, err := tp.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Addr == "" {
		t.Fatalf("status %s: %v", raw, err)
	}
	conn, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, line := range []string{"hello", "second line"} {
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := r.ReadString('\n')
		if err != nil || strings.TrimRight(got, "\r\n") != line {
			t.Fatalf("sent %q, read %q, %v", line, got, err)
		}
	}
}
