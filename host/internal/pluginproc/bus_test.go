package pluginproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// published is one message a fakeBus took.
type published struct {
	key      string
	body     string
	headers  map[string]string
	deferred bool
}

// fakeBus is a BusHost and MetricSink that records what it is given. Its
// consumers hand out what the test pushes.
type fakeBus struct {
	mu         sync.Mutex
	pubs       []published
	metrics    []string // "name=value[aggs]"
	consumers  []*fakeConsumer
	consumeErr error
	// deferredErr, if set, fails the deferred publishes of this body.
	deferredErr   map[string]error
	deferredTried map[string]bool    // the bodies of the deferred publishes refused
	newCons       chan *fakeConsumer // every new consumer, if set
	pubSignal     chan struct{}      // signalled at every publish, if set
	// preload, if set, are the bodies of deliveries its consumers have
	// ready from the start (in a buffer of that size).
	preload []string
}

func newFakeBus() *fakeBus {
	return &fakeBus{newCons: make(chan *fakeConsumer, 16), pubSignal: make(chan struct{}, 1000)}
}

func (b *fakeBus) Publish(_ context.Context, key string, body []byte, headers map[string]string, deferred bool) error {
	b.mu.Lock()
	if err := b.deferredErr[string(body)]; err != nil && deferred {
		if b.deferredTried == nil {
			b.deferredTried = map[string]bool{}
		}
		b.deferredTried[string(body)] = true
		b.mu.Unlock()
		return err
	}
	b.pubs = append(b.pubs, published{key, string(body), headers, deferred})
	b.mu.Unlock()
	select {
	case b.pubSignal <- struct{}{}:
	default:
	}
	return nil
}

func (b *fakeBus) Consume(ctx context.Context, spec ConsumeSpec) (Consumer, error) {
	queue, bindings, prefetch := spec.Queue, spec.Bindings, spec.Prefetch
	if b.consumeErr != nil {
		return nil, b.consumeErr
	}
	c := &fakeConsumer{queue: queue, bindings: bindings, prefetch: prefetch, ch: make(chan Delivery, len(b.preload)),
		settled: map[uint64]string{}, closed: make(chan struct{}), settleSig: make(chan struct{}, 1), ctx: ctx}
	for _, body := range b.preload {
		c.push(body, false, time.Second) // buffered: does not wait
	}
	b.mu.Lock()
	b.consumers = append(b.consumers, c)
	b.mu.Unlock()
	if b.newCons != nil {
		b.newCons <- c
	}
	return c, nil
}

func (b *fakeBus) Metric(name string, value float64, aggs []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.metrics = append(b.metrics, fmt.Sprintf("%s=%v%v", name, value, aggs))
	return nil
}

func (b *fakeBus) published() []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.pubs)
}

// waitPublished waits until a message with key and body was published.
func (b *fakeBus) waitPublished(t *testing.T, key, body string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, p := range b.published() {
			if p.key == key && p.body == body {
				return
			}
		}
		select {
		case <-b.pubSignal:
		case <-deadline:
			t.Fatalf("nothing published to %q with body %q; published: %+v", key, body, b.published())
		}
	}
}

func (b *fakeBus) consumer(t *testing.T) *fakeConsumer {
	t.Helper()
	select {
	case c := <-b.newCons:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no Consume call reached the BusHost")
		return nil
	}
}

// fakeConsumer is a Consumer whose deliveries the test pushes one by one;
// a push completes when pluginproc takes the delivery.
type fakeConsumer struct {
	queue    string
	bindings []string
	prefetch int
	ctx      context.Context
	ch       chan Delivery
	closed   chan struct{}

	mu        sync.Mutex
	nextTag   uint64
	taken     int
	nsettled  int
	maxOut    int
	settled   map[uint64]string // tag -> ack, requeue, drop
	closeN    int
	settleSig chan struct{} // signalled after each settlement
}

// push offers a delivery and reports whether pluginproc took it within d.
func (c *fakeConsumer) push(body string, redelivered bool, d time.Duration) bool {
	c.mu.Lock()
	c.nextTag++
	tag := c.nextTag + 1000 // not pluginproc's tags
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c.ch <- Delivery{Tag: tag, RoutingKey: c.queue, Body: []byte(body), Headers: map[string]string{"n": body}, Redelivered: redelivered}:
	case <-t.C:
		c.mu.Lock()
		c.nextTag-- // not taken: the tag may be used again
		c.mu.Unlock()
		return false
	}
	c.mu.Lock()
	c.taken++
	c.maxOut = max(c.maxOut, c.taken-c.nsettled)
	c.mu.Unlock()
	return true
}

func (c *fakeConsumer) mustPush(t *testing.T, body string) {
	t.Helper()
	if !c.push(body, false, 10*time.Second) {
		t.Fatalf("pluginproc did not take %q within 10s", body)
	}
}

func (c *fakeConsumer) Deliveries() <-chan Delivery { return c.ch }

func (c *fakeConsumer) settle(tag uint64, how string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.settled[tag]; ok {
		return fmt.Errorf("delivery %d settled twice", tag)
	}
	c.settled[tag] = how
	c.nsettled++
	select {
	case c.settleSig <- struct{}{}:
	default:
	}
	return nil
}

func (c *fakeConsumer) Ack(tag uint64) error { return c.settle(tag, "ack") }
func (c *fakeConsumer) Nack(tag uint64, requeue bool, _ string) error {
	if requeue {
		return c.settle(tag, "requeue")
	}
	return c.settle(tag, "drop")
}

func (c *fakeConsumer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeN++
	if c.closeN == 1 {
		close(c.closed)
	}
	return nil
}

// outcomes lists the settlements in tag order.
func (c *fakeConsumer) outcomes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tags := make([]uint64, 0, len(c.settled))
	for t := range c.settled {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		out = append(out, c.settled[t])
	}
	return out
}

// waitSettled waits until n deliveries are settled, and returns the
// outcomes in tag order.
func (c *fakeConsumer) waitSettled(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := c.nsettled
		c.mu.Unlock()
		if got >= n {
			return c.outcomes()
		}
		select {
		case <-c.settleSig:
		case <-deadline:
			t.Fatalf("%d deliveries settled after 10s, want %d: %v", got, n, c.outcomes())
		}
	}
}

func (c *fakeConsumer) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer was not closed")
	}
}

func busPath() string { return filepath.Join(pluginDir, "bus") }

func busOptions(t *testing.T, cfg map[string]any, b *fakeBus) Options {
	t.Helper()
	o := chaosOptions(t, cfg)
	o.Path = busPath()
	o.Checksum = sha(t, o.Path)
	o.Class = "bus"
	if b != nil {
		o.BusHost = b
		o.MetricSink = b
	}
	return o
}

type busStatus struct {
	Errors    []string `json:"errors"`
	Kinds     []string `json:"kinds"`
	Handled   []string `json:"handled"`
	InHandler int      `json:"in_handler"`
}

func busStatusOf(t *testing.T, p *Process) busStatus {
	t.Helper()
	raw, err := p.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var st busStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Status %s: %v", raw, err)
	}
	return st
}

func TestBusRoundTrip(t *testing.T) {
	b := newFakeBus()
	p := start(t, busOptions(t, map[string]any{
		"queue":       "app.inbound",
		"prefetch":    3,
		"reply_to":    "app.outbound",
		"try_publish": []string{"app.event", "vumi.control.dev.host", "amq.topic", ""},
		"try_consume": []string{"vumi.metrics", "vumi.health.x"},
		"metric":      "greetings",
	}, b))
	c := b.consumer(t)
	if c.queue != "app.inbound" || !slices.Equal(c.bindings, []string{"app.inbound"}) || c.prefetch != 3 {
		t.Errorf("consumer of %q bindings %v prefetch %d", c.queue, c.bindings, c.prefetch)
	}
	pubs := b.published()
	if len(pubs) != 1 || pubs[0].key != "app.event" || pubs[0].body != "hello" || pubs[0].headers["from"] != "w-TestBusRoundTrip" || pubs[0].deferred {
		t.Errorf("published %+v, want only hello on app.event", pubs)
	}
	st := busStatusOf(t, p)
	wantKinds := []string{"reserved", "reserved", "invalid_name", "reserved", "reserved"}
	if !slices.Equal(st.Kinds, wantKinds) {
		t.Fatalf("error kinds %v, want %v; errors %q", st.Kinds, wantKinds, st.Errors)
	}
	if !strings.Contains(st.Errors[0], `routing key "vumi.control.dev.host" is reserved`) || !strings.Contains(st.Errors[0], "control channel") {
		t.Errorf("error %q", st.Errors[0])
	}
	if !strings.Contains(st.Errors[3], `queue "vumi.metrics" is reserved`) {
		t.Errorf("error %q", st.Errors[3])
	}
	b.mu.Lock()
	metrics := slices.Clone(b.metrics)
	b.mu.Unlock()
	if !slices.Equal(metrics, []string{"greetings=1[sum max]"}) {
		t.Errorf("metrics %v", metrics)
	}

	for _, body := range []string{"a", "drop", "fail", "b"} {
		c.mustPush(t, body)
	}
	got := c.waitSettled(t, 4)
	if want := []string{"ack", "drop", "requeue", "ack"}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want %v", got, want)
	}
	if !c.push("fail", true, 10*time.Second) {
		t.Fatal("redelivery not taken")
	}
	c.waitSettled(t, 5)
	b.waitPublished(t, "app.outbound", "got:b")
	st = busStatusOf(t, p)
	if want := []string{"a=ack", "drop=drop", "fail=requeue", "b=ack", "fail=ack*"}; !slices.Equal(st.Handled, want) {
		t.Errorf("handled %v, want %v", st.Handled, want)
	}
	for _, pb := range b.published() {
		if pb.key == "app.outbound" && pb.headers["n"] != strings.TrimPrefix(pb.body, "got:") {
			t.Errorf("reply %+v lost the delivery's headers", pb)
		}
		// Published with the handler's context: deferred (the input is
		// acked only once the output is confirmed).
		if pb.key == "app.outbound" && !pb.deferred {
			t.Errorf("reply %+v published from a handler is not deferred", pb)
		}
	}
}

// A deferred publish the bus refuses (on the worker's outbox, where the
// handler cannot see the error) is the BusHost's to account for
// (broker's bridge requeues the deliveries it protects: see its tests):
// pluginproc passes it on, keeps serving the outbox, and passes the
// worker's acks on as they are. Deliveries after it are handled as usual.
func TestBusOutboxPublishFailurePassedOn(t *testing.T) {
	b := newFakeBus()
	b.deferredErr = map[string]error{"got:doomed": fmt.Errorf("%w: broker away", ErrBusUnavailable)}
	start(t, busOptions(t, map[string]any{"queue": "in", "prefetch": 5, "reply_to": "out"}, b))
	c := b.consumer(t)
	c.mustPush(t, "a")
	c.waitSettled(t, 1)
	c.mustPush(t, "doomed")
	c.waitSettled(t, 2)
	c.mustPush(t, "b")
	got := c.waitSettled(t, 3)
	if want := []string{"ack", "ack", "ack"}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want %v", got, want)
	}
	b.waitPublished(t, "out", "got:b")
	for _, p := range b.published() {
		if !p.deferred {
			t.Errorf("publish %+v from a handler is not deferred", p)
		}
	}
	b.mu.Lock()
	tried := b.deferredTried["got:doomed"]
	b.mu.Unlock()
	if !tried {
		t.Error("the failing deferred publish did not reach the BusHost")
	}
}

// A slow worker slows delivery: pluginproc never takes more deliveries
// from the bus than the worker's prefetch allows.
func TestBusFlowControl(t *testing.T) {
	b := newFakeBus()
	start(t, busOptions(t, map[string]any{"queue": "slow", "prefetch": 2}, b))
	c := b.consumer(t)
	const n = 8
	begin := time.Now()
	for range n {
		c.mustPush(t, "sleep:100ms")
	}
	c.waitSettled(t, n)
	if c.maxOut > 2 {
		t.Errorf("up to %d deliveries were unsettled, prefetch is 2", c.maxOut)
	}
	// 8 handlers of 100ms in a row take 800ms; pushes that did not wait
	// would all be done at once.
	if d := time.Since(begin); d < 700*time.Millisecond {
		t.Errorf("8 slow messages settled within %s", d)
	}
}

// When the process ends, its consumers are closed, so the bus requeues
// what the worker had not settled.
func TestBusConsumersClosedWhenProcessEnds(t *testing.T) {
	b := newFakeBus()
	p := start(t, busOptions(t, map[string]any{"queue": "q", "prefetch": 5}, b))
	c := b.consumer(t)
	c.mustPush(t, "hold")
	c.mustPush(t, "x") // delivered ahead, not handled
	p.Kill("test")
	waitDone(t, p, 10*time.Second)
	c.waitClosed(t)
	if got := c.outcomes(); len(got) != 0 {
		t.Errorf("settled %v after a kill, want nothing", got)
	}
	c.mu.Lock()
	n := c.closeN
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("Close called %d times", n)
	}
}

// Stop stops the consumers first: the handler under way sees its context
// end, its message is requeued, and the stream is closed before the
// process exits.
func TestBusStopRequeuesHandlerUnderWay(t *testing.T) {
	b := newFakeBus()
	p := start(t, busOptions(t, map[string]any{"queue": "q", "prefetch": 5}, b))
	c := b.consumer(t)
	c.mustPush(t, "hold")
	c.mustPush(t, "later")
	sdktest.Eventually(t, 10*time.Second, func() bool { return busStatusOf(t, p).InHandler > 0 },
		"the handler did not start")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Stop took %s", d)
	}
	c.waitClosed(t)
	if got := c.outcomes(); !slices.Equal(got, []string{"requeue"}) {
		t.Errorf("settled %v, want the held message requeued and the other left to Close", got)
	}
}

// The bus ends a consumer (its Deliveries channel closes): the SDK
// subscribes again.
func TestBusConsumerEndedBySubscribesAgain(t *testing.T) {
	b := newFakeBus()
	start(t, busOptions(t, map[string]any{"queue": "q", "bindings": []string{"k1", "k2"}}, b))
	c1 := b.consumer(t)
	c1.mustPush(t, "one")
	c1.waitSettled(t, 1)
	close(c1.ch)
	c1.waitClosed(t)
	c2 := b.consumer(t)
	if c2.queue != "q" || !slices.Equal(c2.bindings, []string{"k1", "k2"}) || c2.prefetch != sdk.DefaultPrefetch {
		t.Errorf("second consumer %q %v %d", c2.queue, c2.bindings, c2.prefetch)
	}
	c2.mustPush(t, "two")
	if got := c2.waitSettled(t, 1); !slices.Equal(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
}

func TestBusWithoutBusHost(t *testing.T) {
	p := start(t, busOptions(t, map[string]any{"try_publish": []string{"a.b"}, "try_consume": []string{"q"}, "metric": "m"}, nil))
	st := busStatusOf(t, p)
	if want := []string{"no_bus", "no_bus", "no_metrics"}; !slices.Equal(st.Kinds, want) {
		t.Fatalf("kinds %v, want %v; errors %q", st.Kinds, want, st.Errors)
	}
	if !strings.Contains(st.Errors[0], `the host offers no message bus to worker "w-TestBusWithoutBusHost" (FailedPrecondition)`) {
		t.Errorf("error %q", st.Errors[0])
	}
	if !strings.Contains(st.Errors[2], "collects no metrics") {
		t.Errorf("error %q", st.Errors[2])
	}
	// A worker that must consume cannot start.
	_, err := Start(context.Background(), busOptions(t, map[string]any{"queue": "q"}, nil))
	if err == nil || !strings.Contains(err.Error(), "offers no message bus") {
		t.Errorf("Start = %v", err)
	}
}

// A worker configured with a reserved queue fails for good.
func TestBusReservedQueueFailsStartForGood(t *testing.T) {
	b := newFakeBus()
	_, err := Start(context.Background(), busOptions(t, map[string]any{"queue": "vumi.control.x"}, b))
	if !IsPermanent(err) || !strings.Contains(err.Error(), `queue "vumi.control.x" is reserved`) {
		t.Errorf("Start = %v (permanent %v)", err, IsPermanent(err))
	}
}

// hostClient serves h on a loopback connection and returns a client.
func hostClient(t *testing.T, h *hostServer) proto.HostClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	proto.RegisterHostServer(gs, h)
	go gs.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		h.consumers.closeAll()
	})
	return proto.NewHostClient(conn)
}

func newHostServer(b *fakeBus) *hostServer {
	h := &hostServer{worker: "w", timeout: 5 * time.Second, logger: hclog.NewNullLogger()}
	if b != nil {
		h.bus, h.metrics = b, b
	}
	return h
}

// The host takes a delivery from the bus only while the worker has fewer
// than prefetch unsettled; an ack makes room for exactly one more.
func TestConsumeStreamCredit(t *testing.T) {
	b := newFakeBus()
	client := hostClient(t, newHostServer(b))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Consume(ctx, &proto.ConsumeRequest{Queue: "q", Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := stream.Recv()
	if err != nil || ready.GetDeliveryTag() != 0 || ready.GetConsumerId() == 0 {
		t.Fatalf("first message %v, %v; want the ready announcement", ready, err)
	}
	id := ready.GetConsumerId()
	c := b.consumer(t)
	c.mustPush(t, "1")
	c.mustPush(t, "2")
	// The three refusals below are bounded waits: nothing tells when the
	// host's stream has settled down to waiting for credit rather than
	// being about to take one more (that wait is a select in the stream's
	// goroutine, behind gRPC). A host that takes deliveries without credit
	// takes the offered one at once, well within 300 ms, and a correct one
	// cannot fail them.
	if c.push("3", false, 300*time.Millisecond) {
		t.Fatal("the host took a third delivery with two unsettled and prefetch 2")
	}
	var tags []uint64
	for range 2 {
		d, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d.GetConsumerId() != id || d.GetHeaders()["n"] != string(d.GetBody()) {
			t.Errorf("delivery %v", d)
		}
		tags = append(tags, d.GetDeliveryTag())
	}
	if !slices.Equal(tags, []uint64{1, 2}) {
		t.Errorf("tags %v, want 1, 2", tags)
	}
	if _, err := client.Ack(ctx, &proto.AckRequest{ConsumerId: id, DeliveryTag: 1}); err != nil {
		t.Fatal(err)
	}
	c.mustPush(t, "3")
	if c.push("4", false, 300*time.Millisecond) {
		t.Fatal("the host took a fourth delivery")
	}
	// Settling twice, an unknown tag or consumer: NotFound, and no credit.
	for _, req := range []*proto.AckRequest{{ConsumerId: id, DeliveryTag: 1}, {ConsumerId: id, DeliveryTag: 99}, {ConsumerId: id + 1, DeliveryTag: 2}} {
		if _, err := client.Ack(ctx, req); status.Code(err) != codes.NotFound {
			t.Errorf("Ack %v = %v, want NotFound", req, err)
		}
	}
	if c.push("4", false, 300*time.Millisecond) {
		t.Fatal("a refused ack gave credit")
	}
	if _, err := client.Nack(ctx, &proto.NackRequest{ConsumerId: id, DeliveryTag: 2, Requeue: true}); err != nil {
		t.Fatal(err)
	}
	c.mustPush(t, "4")
	if got := c.outcomes(); !slices.Equal(got, []string{"ack", "requeue"}) {
		t.Errorf("settled %v", got)
	}
	// The worker cancels the stream: the consumer is closed, and acks of
	// its deliveries are refused. (The host forgets the consumer before it
	// closes it, so once it is closed there is nothing to wait for.)
	cancel()
	c.waitClosed(t)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := client.Ack(ctx2, &proto.AckRequest{ConsumerId: id, DeliveryTag: 3}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "has ended") {
		t.Fatalf("Ack after the stream ended = %v", err)
	}
}

func TestHostServiceRefusesBadBusCalls(t *testing.T) {
	b := newFakeBus()
	client := hostClient(t, newHostServer(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		key  string
		code codes.Code
	}{
		{"", codes.InvalidArgument},
		{"vumi.control", codes.PermissionDenied},
		{"vumi.metrics", codes.PermissionDenied},
		{"vumi.health.beat", codes.PermissionDenied},
		{"vumi.events.sys.host.worker_started", codes.PermissionDenied},
		{"amq.rabbitmq.trace", codes.PermissionDenied},
		{strings.Repeat("k", 256), codes.InvalidArgument},
		// (gRPC refuses to send a string that is not UTF-8.)
	} {
		_, err := client.Publish(ctx, &proto.PublishRequest{RoutingKey: tt.key, Body: []byte("x")})
		if status.Code(err) != tt.code {
			t.Errorf("Publish %.20q = %v, want %s", tt.key, err, tt.code)
		}
		consume := func(req *proto.ConsumeRequest) error {
			s, err := client.Consume(ctx, req)
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}
		if err := consume(&proto.ConsumeRequest{Queue: tt.key}); status.Code(err) != tt.code {
			t.Errorf("Consume %.20q = %v, want %s", tt.key, err, tt.code)
		}
		if err := consume(&proto.ConsumeRequest{Queue: "ok", Bindings: []string{"ok", tt.key}}); status.Code(err) != tt.code {
			t.Errorf("Consume binding %.20q = %v, want %s", tt.key, err, tt.code)
		}
	}
	s, err := client.Consume(ctx, &proto.ConsumeRequest{Queue: "ok", Prefetch: sdk.MaxPrefetch + 1})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Consume with prefetch too large = %v", err)
	}
	for _, req := range []*proto.MetricRequest{
		{Name: "", Value: 1},
		{Name: "m", Value: 1, Aggregators: []string{"median"}},
	} {
		if _, err := client.Metric(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Metric %v = %v", req, err)
		}
	}
	if _, err := client.Metric(ctx, &proto.MetricRequest{Name: "m", Value: 2, Aggregators: []string{"max", "max", "sum"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Metric(ctx, &proto.MetricRequest{Name: "n", Value: 3}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pubs) != 0 || len(b.consumers) != 0 {
		t.Errorf("refused calls reached the bus: %v, %d consumers", b.pubs, len(b.consumers))
	}
	if !slices.Equal(b.metrics, []string{"m=2[max sum]", "n=3[avg]"}) {
		t.Errorf("metrics %v", b.metrics)
	}
}

// A BusHost whose Consume errs: the worker gets the mapped status.
func TestConsumeSetupError(t *testing.T) {
	b := newFakeBus()
	b.consumeErr = fmt.Errorf("declaring the queue: %w", ErrBusUnavailable)
	client := hostClient(t, newHostServer(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Consume(ctx, &proto.ConsumeRequest{Queue: "q"})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "declaring the queue") {
		t.Errorf("Consume = %v", err)
	}
}

func TestCheckBusName(t *testing.T) {
	for _, name := range []string{"smpp.inbound", "vumi", "vumi.control2x", "my.vumi.control", "Vumi.Control.x", "amq", "telnet.outbound"} {
		if name == "vumi.control2x" {
			// "starts with vumi.control": refused, even without a dot.
			if err := CheckBusName("queue", name); !errors.Is(err, ErrReservedName) {
				t.Errorf("CheckBusName(%q) = %v, want reserved", name, err)
			}
			continue
		}
		if err := CheckBusName("queue", name); err != nil {
			t.Errorf("CheckBusName(%q) = %v", name, err)
		}
	}
	err := CheckBusName("routing key", "vumi.health")
	if !errors.Is(err, ErrReservedName) || errors.Is(err, ErrInvalidName) || !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("CheckBusName(vumi.health) = %v", err)
	}
	if s, _ := status.FromError(HostStatus(err)); s.Code() != codes.PermissionDenied || s.Message() != err.Error() {
		t.Errorf("HostStatus = %v", s)
	}
	err = CheckBusName("queue", "")
	if !errors.Is(err, ErrInvalidName) || err.Error() != `queue "" must not be empty` {
		t.Errorf("CheckBusName(\"\") = %v", err)
	}
	if s, _ := status.FromError(HostStatus(err)); s.Code() != codes.InvalidArgument {
		t.Errorf("HostStatus = %v", s)
	}
	if s, _ := status.FromError(HostStatus(fmt.Errorf("x: %w", ErrChildNotFound))); s.Code() != codes.NotFound {
		t.Errorf("HostStatus falls back to ChildStatus: %v", s)
	}
}
