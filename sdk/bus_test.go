package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk/internal/eventually"
)

func init() {
	// Set once, before any consumer runs: the race detector would see a
	// test changing them while another test's consumers read them.
	consumerDownGrace = 300 * time.Millisecond
	resubscribeMin, resubscribeMax = 10*time.Millisecond, 50*time.Millisecond
	requeueMin, requeueMax = time.Millisecond, 5*time.Millisecond
}

// fakeStream is one Consume stream of a fakeBusHost, driven by the test.
type fakeStream struct {
	req  *proto.ConsumeRequest
	id   uint64
	send chan *proto.Delivery // the test sends deliveries
	end  chan error           // the test ends the stream with this error
	gone chan struct{}        // closed when the plugin ended the stream
}

func (s *fakeStream) deliver(t *testing.T, tag uint64, body string, redelivered bool) {
	t.Helper()
	d := &proto.Delivery{ConsumerId: s.id, DeliveryTag: tag, RoutingKey: "rk." + body, Body: []byte(body),
		Headers: map[string]string{"h": body}, Redelivered: redelivered}
	select {
	case s.send <- d:
	case <-time.After(10 * time.Second):
		t.Fatalf("delivery %q not sent", body)
	}
}

func (s *fakeStream) waitGone(t *testing.T) {
	t.Helper()
	select {
	case <-s.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not end the stream")
	}
}

// fakeBusHost is a Host service with the messaging calls.
type fakeBusHost struct {
	proto.UnimplementedHostServer

	// noOutbox makes the host refuse the Outbox stream (Unimplemented),
	// as an older host does: the SDK uses the unary calls.
	noOutbox bool

	mu         sync.Mutex
	pubs       []*proto.PublishRequest
	metrics    []*proto.MetricRequest
	consumeErr error
	pubErr     error
	nextID     uint64
	// log is every publish ("pub <key> unary|deferred|outbox") and
	// settlement, in the order the host saw them.
	log       []string
	outboxes  int            // Outbox streams opened
	reqSizes  []int          // the calls of each OutboxRequest, but syncs
	endOutbox chan error     // ends the current Outbox stream, if sent to
	metricN   map[string]int // metrics by how they came: "unary", "outbox"
	// metricErr refuses the unary Metric calls of these names.
	metricErr map[string]error
	outboxOn  chan struct{}  // signalled when an Outbox stream is served
	unaryN    map[string]int // unary calls by name

	streams chan *fakeStream
	settled chan string // "ack 7/1", "nack 7/2 requeue", "nack 7/3 drop"
}

func newFakeBusHost() *fakeBusHost {
	return &fakeBusHost{streams: make(chan *fakeStream, 16), settled: make(chan string, 100),
		endOutbox: make(chan error, 1), metricN: map[string]int{}, unaryN: map[string]int{}, outboxOn: make(chan struct{}, 16)}
}

// newUnaryBusHost is a fakeBusHost that serves no Outbox.
func newUnaryBusHost() *fakeBusHost {
	h := newFakeBusHost()
	h.noOutbox = true
	return h
}

func (h *fakeBusHost) record(entry string) {
	h.mu.Lock()
	h.log = append(h.log, entry)
	h.mu.Unlock()
}

func (h *fakeBusHost) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

func (h *fakeBusHost) Publish(_ context.Context, req *proto.PublishRequest) (*proto.PublishResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unaryN["Publish"]++
	if h.pubErr != nil {
		return nil, h.pubErr
	}
	h.pubs = append(h.pubs, req)
	how := "unary"
	if req.Deferred {
		how = "deferred"
	}
	h.log = append(h.log, "pub "+req.RoutingKey+" "+how)
	return &proto.PublishResponse{}, nil
}

func (h *fakeBusHost) Metric(_ context.Context, req *proto.MetricRequest) (*proto.MetricResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.metricErr[req.Name]; err != nil {
		return nil, err
	}
	h.metrics = append(h.metrics, req)
	h.metricN["unary"]++
	return &proto.MetricResponse{}, nil
}

func (h *fakeBusHost) Outbox(stream proto.Host_OutboxServer) error {
	if h.noOutbox {
		return status.Error(codes.Unimplemented, "no outbox here")
	}
	h.mu.Lock()
	h.outboxes++
	h.mu.Unlock()
	if err := stream.Send(&proto.OutboxReply{}); err != nil {
		return err
	}
	select {
	case h.outboxOn <- struct{}{}:
	default:
	}
	reqs := make(chan *proto.OutboxRequest)
	errs := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case reqs <- r:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for {
		var r *proto.OutboxRequest
		select {
		case r = <-reqs:
		case err := <-errs:
			if err == io.EOF {
				return nil
			}
			return err
		case err := <-h.endOutbox:
			return err
		}
		if n := len(r.Calls); n > 0 && r.Calls[0].GetSync() == 0 {
			h.mu.Lock()
			h.reqSizes = append(h.reqSizes, n)
			h.mu.Unlock()
		}
		for _, call := range r.Calls {
			if err := h.outboxCall(stream, call); err != nil {
				return err
			}
		}
	}
}

func (h *fakeBusHost) outboxCall(stream proto.Host_OutboxServer, call *proto.OutboxCall) error {
	switch c := call.Call.(type) {
	case *proto.OutboxCall_Publish:
		h.mu.Lock()
		h.pubs = append(h.pubs, c.Publish)
		h.log = append(h.log, "pub "+c.Publish.RoutingKey+" outbox")
		h.mu.Unlock()
	case *proto.OutboxCall_Ack:
		e := fmt.Sprintf("ack %d/%d", c.Ack.ConsumerId, c.Ack.DeliveryTag)
		h.record(e)
		h.settled <- e
	case *proto.OutboxCall_Nack:
		e := nackEntry(c.Nack)
		h.record(e)
		h.settled <- e
	case *proto.OutboxCall_Metric:
		h.mu.Lock()
		h.metrics = append(h.metrics, c.Metric)
		h.metricN["outbox"]++
		h.mu.Unlock()
	case *proto.OutboxCall_Sync:
		return stream.Send(&proto.OutboxReply{Synced: c.Sync})
	}
	return nil
}

func nackEntry(req *proto.NackRequest) string {
	how := "drop"
	if req.Requeue {
		how = "requeue"
	}
	return fmt.Sprintf("nack %d/%d %s", req.ConsumerId, req.DeliveryTag, how)
}

func (h *fakeBusHost) Consume(req *proto.ConsumeRequest, stream proto.Host_ConsumeServer) error {
	h.mu.Lock()
	err := h.consumeErr
	h.nextID++
	id := h.nextID
	h.mu.Unlock()
	if err != nil {
		return err
	}
	s := &fakeStream{req: req, id: id, send: make(chan *proto.Delivery), end: make(chan error, 1), gone: make(chan struct{})}
	defer close(s.gone)
	defer h.record(fmt.Sprintf("end %d", id))
	if err := stream.Send(&proto.Delivery{ConsumerId: id}); err != nil {
		return err
	}
	h.streams <- s
	for {
		select {
		case d := <-s.send:
			if err := stream.Send(d); err != nil {
				return err
			}
		case err := <-s.end:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (h *fakeBusHost) Ack(_ context.Context, req *proto.AckRequest) (*proto.AckResponse, error) {
	e := fmt.Sprintf("ack %d/%d", req.ConsumerId, req.DeliveryTag)
	h.record(e + " unary")
	h.settled <- e
	return &proto.AckResponse{}, nil
}

func (h *fakeBusHost) Nack(_ context.Context, req *proto.NackRequest) (*proto.NackResponse, error) {
	e := nackEntry(req)
	h.record(e + " unary")
	h.settled <- e
	return &proto.NackResponse{}, nil
}

// locked returns cond called under h.mu, for eventually.Eventually.
func (h *fakeBusHost) locked(cond func() bool) func() bool {
	return func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return cond()
	}
}

func (h *fakeBusHost) stream(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case s := <-h.streams:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no Consume stream")
		return nil
	}
}

func (h *fakeBusHost) nextSettled(t *testing.T) string {
	t.Helper()
	select {
	case s := <-h.settled:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing settled")
		return ""
	}
}

func TestBusWithoutHostService(t *testing.T) {
	env := startWithHost(t, nil)
	err := env.Publish(ctx(t), "a.b", []byte("x"), nil)
	if !errors.Is(err, ErrNoBus) || !errors.Is(err, ErrNoHostService) || errors.Is(err, ErrNoMetrics) {
		t.Errorf("Publish = %v", err)
	}
	err = env.Consume("q", func(context.Context, Message) error { return nil })
	if !errors.Is(err, ErrNoBus) || !errors.Is(err, ErrNoHostService) {
		t.Errorf("Consume = %v", err)
	}
	err = env.Metric("m", 1)
	if !errors.Is(err, ErrNoMetrics) || !errors.Is(err, ErrNoHostService) || errors.Is(err, ErrNoBus) {
		t.Errorf("Metric = %v", err)
	}
	if !strings.Contains(err.Error(), `Metric "m"`) {
		t.Errorf("Metric error %q does not name the metric", err)
	}
}

// Bad names, prefetches and metrics are refused before they reach the host.
func TestBusLocalChecks(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	nop := func(context.Context, Message) error { return nil }
	for _, key := range []string{"", "vumi.control.x", "vumi.events", "amq.direct", strings.Repeat("x", 300), "\xff"} {
		if err := env.Publish(ctx(t), key, nil, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Publish %.20q = %v", key, err)
		}
		if err := env.Consume(key, nop); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Consume %.20q = %v", key, err)
		}
		if err := env.Consume("ok", nop, WithBindings("ok", key)); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Consume binding %.20q = %v", key, err)
		}
	}
	err := env.Publish(ctx(t), "vumi.metrics", nil, nil)
	if !errors.Is(err, ErrReservedName) || errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), `routing key "vumi.metrics" is reserved`) {
		t.Errorf("Publish(vumi.metrics) = %v", err)
	}
	for _, n := range []int{0, -1, MaxPrefetch + 1} {
		if err := env.Consume("q", nop, WithPrefetch(n)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "prefetch") {
			t.Errorf("prefetch %d: %v", n, err)
		}
	}
	if err := env.Consume("q", nil); err == nil {
		t.Error("Consume with a nil handler")
	}
	for _, m := range []struct {
		name string
		v    float64
		aggs []string
	}{{"", 1, nil}, {"m", math.NaN(), nil}, {"m", math.Inf(1), nil}, {"m", 1, []string{"median"}}} {
		if err := env.Metric(m.name, m.v, m.aggs...); !errors.Is(err, ErrInvalidMetric) {
			t.Errorf("Metric(%q, %v, %v) = %v", m.name, m.v, m.aggs, err)
		}
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	if len(host.pubs) != 0 || len(host.metrics) != 0 || len(host.streams) != 0 {
		t.Errorf("refused calls reached the host")
	}
}

func TestBusPublishAndMetric(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	if err := env.Publish(ctx(t), "smpp.outbound", []byte(`{"a":1}`), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Metric("sent", 2.5, AggSum, AggMax, AggSum); err != nil {
		t.Fatal(err)
	}
	if err := env.Metric("latency", 0.25); err != nil {
		t.Fatal(err)
	}
	if err := env.Metric("sent", 1, AggSum, AggMax); err != nil {
		t.Fatal(err)
	}
	// The first value of each name is a call, which tells that the host
	// takes it; the next ones go on the outbox, without a round trip.
	eventually.Eventually(t, 10*time.Second, host.locked(func() bool { return len(host.metrics) == 3 }),
		"the host did not get the 3 metrics")
	host.mu.Lock()
	p, m := host.pubs, host.metrics
	if host.metricN["unary"] != 2 || host.metricN["outbox"] != 1 {
		t.Errorf("metrics came as %v, want the first of each name unary, the second of sent on the outbox", host.metricN)
	}
	// A name the host refuses (here: as the host refuses a name that
	// collides with sent once sanitised) gives the caller the error, each
	// time, though other names already went on the outbox.
	host.metricErr = map[string]error{"Sent": status.Error(codes.InvalidArgument, `metric "Sent" and "sent" are both "sent" once sanitised`)}
	host.mu.Unlock()
	for range 2 {
		err := env.Metric("Sent", 1, AggSum)
		var he *HostError
		if !errors.Is(err, ErrInvalidMetric) || !errors.As(err, &he) || he.Call != "Metric" || he.Name != "Sent" ||
			!strings.Contains(err.Error(), `"sent" once sanitised`) {
			t.Errorf("Metric of a refused name = %v, want the host's ErrInvalidMetric", err)
		}
	}
	host.mu.Lock()
	if len(p) != 1 || p[0].RoutingKey != "smpp.outbound" || string(p[0].Body) != `{"a":1}` || p[0].Headers["k"] != "v" || p[0].Deferred {
		t.Errorf("published %v", p)
	}
	host.mu.Unlock()
	if len(m) != 3 || m[0].Name != "sent" || m[0].Value != 2.5 || !slices.Equal(m[0].Aggregators, []string{"sum", "max"}) ||
		!slices.Equal(m[1].Aggregators, []string{"avg"}) || m[2].Name != "sent" || m[2].Value != 1 {
		t.Errorf("metrics %v", m)
	}
	// The host's errors keep their meaning.
	for _, tt := range []struct {
		err    error
		target error
	}{
		{status.Error(codes.PermissionDenied, "reserved"), ErrReservedName},
		{status.Error(codes.PermissionDenied, "reserved"), ErrInvalidConfig},
		{status.Error(codes.InvalidArgument, "bad"), ErrInvalidName},
		{status.Error(codes.FailedPrecondition, "no bus"), ErrNoBus},
		{status.Error(codes.Unimplemented, "old host"), ErrNoBus},
		{status.Error(codes.Unimplemented, "old host"), ErrNoHostService},
	} {
		host.mu.Lock()
		host.pubErr = tt.err
		host.mu.Unlock()
		err := env.Publish(ctx(t), "k", nil, nil)
		var he *HostError
		if !errors.Is(err, tt.target) || !errors.As(err, &he) || he.Call != "Publish" || he.Name != "k" {
			t.Errorf("host error %v: Publish = %v, want it to match %v", tt.err, err, tt.target)
		}
		if errors.Is(err, ErrChildNotFound) || errors.Is(err, ErrNoMetrics) {
			t.Errorf("Publish = %v matches a children or metrics error", err)
		}
	}
}

func TestConsumeHandlerOutcomes(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	got := make(chan Message, 10)
	err := env.Consume("app.inbound", func(ctx context.Context, m Message) error {
		got <- m
		switch string(m.Body) {
		case "drop":
			return Drop(errors.New("malformed"))
		case "fail":
			return errors.New("try later")
		}
		return nil
	}, WithPrefetch(7), WithBindings("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	if s.req.Queue != "app.inbound" || !slices.Equal(s.req.Bindings, []string{"a", "b"}) || s.req.Prefetch != 7 {
		t.Errorf("Consume request %v", s.req)
	}
	s.deliver(t, 1, "ok", false)
	s.deliver(t, 2, "drop", false)
	s.deliver(t, 3, "fail", true)
	want := []string{
		fmt.Sprintf("ack %d/1", s.id),
		fmt.Sprintf("nack %d/2 drop", s.id),
		fmt.Sprintf("nack %d/3 requeue", s.id),
	}
	for _, w := range want {
		if g := host.nextSettled(t); g != w {
			t.Errorf("settled %q, want %q", g, w)
		}
	}
	m := <-got
	if m.Queue != "app.inbound" || m.RoutingKey != "rk.ok" || string(m.Body) != "ok" || m.Headers["h"] != "ok" || m.Redelivered {
		t.Errorf("message %+v", m)
	}
	<-got
	if m := <-got; !m.Redelivered {
		t.Errorf("message %+v, want redelivered", m)
	}
}

// Stop stops the consumers before the worker's Stop: the handler under way
// sees its context end, its message is requeued, and the stream is ended.
func TestConsumeStoppedBeforeWorkerStop(t *testing.T) {
	host := newFakeBusHost()
	env, wc, srv := startWithHostServer(t, host)
	w := srv.running().(*echoWorker)
	entered := make(chan struct{})
	sawStopped := make(chan bool, 1)
	if err := env.Consume("q", func(ctx context.Context, m Message) error {
		close(entered)
		<-ctx.Done()
		sawStopped <- w.stopped.Load()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	s.deliver(t, 1, "x", false)
	<-entered
	if _, err := wc.Stop(ctx(t), &proto.StopRequest{TimeoutMs: 5000}); err != nil {
		t.Fatal(err)
	}
	if <-sawStopped {
		t.Error("the worker's Stop ran before the handler returned")
	}
	if g := host.nextSettled(t); g != fmt.Sprintf("nack %d/1 requeue", s.id) {
		t.Errorf("settled %q", g)
	}
	s.waitGone(t)
	// The settlement reached the host before the stream ended (which
	// would have requeued the message anyway, but an ack must not come
	// after it).
	if ev := host.events(); slices.Index(ev, fmt.Sprintf("nack %d/1 requeue", s.id)) > slices.Index(ev, fmt.Sprintf("end %d", s.id)) {
		t.Errorf("the stream ended before the nack: %v", ev)
	}
	if !w.stopped.Load() {
		t.Error("the worker was not stopped")
	}
	if err := env.Consume("q2", func(context.Context, Message) error { return nil }); !errors.Is(err, ErrConsumerStopped) {
		t.Errorf("Consume after Stop = %v", err)
	}
}

// A handler that ignores its context cannot hold Stop beyond its deadline.
func TestConsumeStuckHandlerBoundedByStop(t *testing.T) {
	host := newFakeBusHost()
	env, wc, _ := startWithHostServer(t, host)
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{})
	if err := env.Consume("q", func(context.Context, Message) error {
		close(entered)
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	s.deliver(t, 1, "x", false)
	<-entered
	begin := time.Now()
	if _, err := wc.Stop(ctx(t), &proto.StopRequest{TimeoutMs: 300}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Stop took %s with a stuck handler and a 300ms timeout", d)
	}
	s.waitGone(t)
}

// When the host ends a stream, the SDK subscribes again; while it cannot,
// the worker's health checks fail after the grace period.
func TestConsumeResubscribesAndHealth(t *testing.T) {
	host := newFakeBusHost()
	_, wc, srv := startWithHostServer(t, host)
	env := srv.running().(*echoWorker).env
	if err := env.Consume("q", func(context.Context, Message) error { return nil }, WithPrefetch(3)); err != nil {
		t.Fatal(err)
	}
	s1 := host.stream(t)
	host.mu.Lock()
	host.consumeErr = status.Error(codes.Unavailable, "broker down")
	host.mu.Unlock()
	s1.end <- status.Error(codes.Unavailable, "consumer ended")
	var resp *proto.HealthResponse
	eventually.Eventually(t, 10*time.Second, func() bool {
		var err error
		if resp, err = wc.Health(ctx(t), &proto.HealthRequest{}); err != nil {
			t.Fatal(err)
		}
		return !resp.Healthy
	}, "still healthy after losing the stream")
	if !strings.Contains(resp.Message, `the consumer of queue "q" has had no stream`) || !strings.Contains(resp.Message, "broker down") {
		t.Errorf("health message %q", resp.Message)
	}
	host.mu.Lock()
	host.consumeErr = nil
	host.mu.Unlock()
	s2 := host.stream(t)
	if s2.req.Queue != "q" || s2.req.Prefetch != 3 {
		t.Errorf("second request %v", s2.req)
	}
	s2.deliver(t, 1, "again", false)
	if g := host.nextSettled(t); g != fmt.Sprintf("ack %d/1", s2.id) {
		t.Errorf("settled %q", g)
	}
	if resp, err := wc.Health(ctx(t), &proto.HealthRequest{}); err != nil || !resp.Healthy {
		t.Errorf("health after resubscribing: %v %v", resp, err)
	}
}

func TestConsumeWithContext(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	cctx, cancel := context.WithCancel(context.Background())
	if err := env.Consume("q", func(context.Context, Message) error { return nil }, WithContext(cctx)); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	cancel()
	s.waitGone(t)
}

func TestConsumeSetupErrors(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	host.mu.Lock()
	host.consumeErr = status.Error(codes.PermissionDenied, `queue "x" is reserved`)
	host.mu.Unlock()
	err := env.Consume("x", func(context.Context, Message) error { return nil })
	var he *HostError
	if !errors.As(err, &he) || he.Call != "Consume" || he.Name != "x" || !errors.Is(err, ErrReservedName) || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Consume = %v", err)
	}
	host.mu.Lock()
	host.consumeErr = status.Error(codes.FailedPrecondition, "no bus for you")
	host.mu.Unlock()
	if err := env.Consume("x", func(context.Context, Message) error { return nil }); !errors.Is(err, ErrNoBus) || errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Consume = %v", err)
	}
}

func TestOutcomeOf(t *testing.T) {
	if OutcomeOf(nil) != OutcomeAck || OutcomeOf(errors.New("x")) != OutcomeRequeue ||
		OutcomeOf(Drop(errors.New("x"))) != OutcomeDrop || OutcomeOf(fmt.Errorf("w: %w", ErrDrop)) != OutcomeDrop ||
		OutcomeOf(Drop(nil)) != OutcomeDrop {
		t.Error("OutcomeOf")
	}
	if err := Drop(errors.New("bad json")); err.Error() != "message dropped: bad json" {
		t.Errorf("Drop: %q", err)
	}
}

func TestCheckMetricDefaults(t *testing.T) {
	aggs, err := wire.CheckMetric("m", 1, nil)
	if err != nil || !slices.Equal(aggs, []string{AggAvg}) {
		t.Errorf("CheckMetric = %v, %v", aggs, err)
	}
	aggs, err = wire.CheckMetric("m", -3, []string{"last", "min", "last"})
	if err != nil || !slices.Equal(aggs, []string{"last", "min"}) {
		t.Errorf("CheckMetric = %v, %v", aggs, err)
	}
}

// A publish made with a handler's context, while the handler runs, is
// deferred: on the outbox, before the delivery's ack, or, from a host
// without an outbox, as a Publish call with deferred set. Other publishes
// wait for the host.
func TestHandlerPublishIsDeferred(t *testing.T) {
	for _, mode := range []string{"outbox", "unary"} {
		t.Run(mode, func(t *testing.T) {
			host := newFakeBusHost()
			if mode == "unary" {
				host = newUnaryBusHost()
			}
			env := startWithHost(t, host)
			saved := make(chan context.Context, 1)
			errs := make(chan error, 3)
			if err := env.Consume("q", func(ctx context.Context, m Message) error {
				errs <- env.Publish(ctx, "out", m.Body, nil)
				errs <- env.Publish(context.Background(), "sync", m.Body, nil)
				dctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				errs <- env.Publish(dctx, "derived", m.Body, nil)
				saved <- ctx
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			s := host.stream(t)
			s.deliver(t, 1, "x", false)
			if g := host.nextSettled(t); g != fmt.Sprintf("ack %d/1", s.id) {
				t.Fatalf("settled %q", g)
			}
			for range 3 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			// The handler has returned: its context no longer defers.
			if err := env.Publish(<-saved, "late", []byte("y"), nil); err != nil {
				t.Fatal(err)
			}
			ev := host.events()
			deferred, ack := "outbox", fmt.Sprintf("ack %d/1", s.id)
			if mode == "unary" {
				deferred, ack = "deferred", ack+" unary"
			}
			at := func(e string) int {
				i := slices.Index(ev, e)
				if i < 0 {
					t.Errorf("host saw no %q: %v", e, ev)
				}
				return i
			}
			if at("pub out "+deferred) > at(ack) || at("pub derived "+deferred) > at(ack) {
				t.Errorf("the ack came before the handler's publishes: %v", ev)
			}
			// On the outbox, the handler's publishes go with its ack, in
			// one message.
			if i := at(ack); mode == "outbox" && (i < 2 || ev[i-2] != "pub out outbox" || ev[i-1] != "pub derived outbox") {
				t.Errorf("the publishes do not come with the ack: %v", ev)
			}
			if at("pub sync unary") < 0 || at("pub late unary") < at(ack) {
				t.Errorf("events %v", ev)
			}
		})
	}
}

// The settlements of a consumer reach the host in delivery order, on the
// outbox and without it.
func TestSettlementsInOrder(t *testing.T) {
	for _, mode := range []string{"outbox", "unary"} {
		t.Run(mode, func(t *testing.T) {
			host := newFakeBusHost()
			if mode == "unary" {
				host = newUnaryBusHost()
			}
			env := startWithHost(t, host)
			if err := env.Consume("q", func(ctx context.Context, m Message) error {
				if string(m.Body)[0] == 'f' {
					return Drop(errors.New("f"))
				}
				return env.Publish(ctx, "out", m.Body, nil)
			}, WithPrefetch(50)); err != nil {
				t.Fatal(err)
			}
			s := host.stream(t)
			const n = 40
			go func() {
				for i := 1; i <= n; i++ {
					body := "m"
					if i%7 == 0 {
						body = "f"
					}
					s.send <- &proto.Delivery{ConsumerId: s.id, DeliveryTag: uint64(i), Body: []byte(body)}
				}
			}()
			for i := 1; i <= n; i++ {
				want := fmt.Sprintf("ack %d/%d", s.id, i)
				if i%7 == 0 {
					want = fmt.Sprintf("nack %d/%d drop", s.id, i)
				}
				if g := host.nextSettled(t); g != want {
					t.Fatalf("settlement %d = %q, want %q", i, g, want)
				}
			}
		})
	}
}

// When the outbox stream breaks, the SDK ends the consumers' streams, so
// the host requeues what the worker has not settled. A delivery whose
// handler had sent publishes on it (early: it held more than
// maxHeldCalls) is not settled at all, since they may be lost; it is
// handled again on a new outbox.
func TestOutboxBrokenRequeues(t *testing.T) {
	host := newFakeBusHost()
	env, wc, _ := startWithHostServer(t, host)
	published := make(chan struct{}, 2)
	release := make(chan struct{})
	if err := env.Consume("q", func(ctx context.Context, m Message) error {
		n := 1
		if !m.Redelivered {
			n = maxHeldCalls // sent before the handler returns
		}
		for range n {
			if err := env.Publish(ctx, "out", m.Body, nil); err != nil {
				return err
			}
		}
		published <- struct{}{}
		if !m.Redelivered {
			<-release
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s1 := host.stream(t)
	s1.deliver(t, 1, "x", false)
	<-published
	eventually.Eventually(t, 10*time.Second, host.locked(func() bool { return len(host.pubs) == maxHeldCalls }),
		"the host did not get the handler's %d publishes", maxHeldCalls)
	host.endOutbox <- status.Error(codes.Unavailable, "outbox gone")
	s1.waitGone(t) // the SDK ends the consumer's stream
	close(release)
	s2 := host.stream(t) // and subscribes again
	s2.deliver(t, 1, "x", true)
	<-published
	if g := host.nextSettled(t); g != fmt.Sprintf("ack %d/1", s2.id) {
		t.Errorf("settled %q, want the redelivery's ack", g)
	}
	// Stopping the worker drains its consumer: every settlement the SDK
	// sent has reached the host before the stream ends. So the host's log
	// is complete once s2 is gone, and it must not settle s1's delivery.
	if _, err := wc.Stop(ctx(t), &proto.StopRequest{TimeoutMs: 5000}); err != nil {
		t.Fatal(err)
	}
	s2.waitGone(t)
	for _, e := range host.events() {
		if strings.HasPrefix(e, fmt.Sprintf("ack %d/", s1.id)) || strings.HasPrefix(e, fmt.Sprintf("nack %d/", s1.id)) {
			t.Errorf("the first delivery was settled (%q) after its outbox broke", e)
		}
	}
	host.mu.Lock()
	n := host.outboxes
	host.mu.Unlock()
	if n != 2 {
		t.Errorf("%d outboxes opened, want 2", n)
	}
}

// A deferred publish is held until the handler returns, but its caller may
// reuse the body and headers as soon as Publish returns.
func TestDeferredPublishCopiesItsMessage(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	if err := env.Consume("q", func(ctx context.Context, m Message) error {
		body, headers := []byte("first"), map[string]string{"k": "v1"}
		if err := env.Publish(ctx, "out", body, headers); err != nil {
			return err
		}
		copy(body, "XXXXX")
		headers["k"] = "changed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	s.deliver(t, 1, "x", false)
	host.nextSettled(t)
	host.mu.Lock()
	defer host.mu.Unlock()
	if len(host.pubs) != 1 || string(host.pubs[0].Body) != "first" || host.pubs[0].Headers["k"] != "v1" {
		t.Errorf("published %v", host.pubs)
	}
}

// A stream message with several deliveries (Delivery.more, which the SDK
// asks for with ConsumeRequest.max_batch) is handled in order, and the
// deliveries' publishes and settlements go to the host in one outbox
// message, each settlement after its handler's publishes.
func TestConsumeBatch(t *testing.T) {
	host := newFakeBusHost()
	env := startWithHost(t, host)
	var mu sync.Mutex
	var handled []string
	if err := env.Consume("q", func(ctx context.Context, m Message) error {
		mu.Lock()
		handled = append(handled, string(m.Body))
		mu.Unlock()
		return env.Publish(ctx, "out."+string(m.Body), m.Body, nil)
	}); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	if got, want := s.req.GetMaxBatch(), int32(maxBatch(DefaultPrefetch)); got != want || want < 2 {
		t.Errorf("ConsumeRequest.max_batch = %d, want %d (more than 1)", got, want)
	}
	d := func(tag uint64) *proto.Delivery {
		return &proto.Delivery{ConsumerId: s.id, DeliveryTag: tag, RoutingKey: "q", Body: fmt.Appendf(nil, "%d", tag)}
	}
	first := d(1)
	first.More = []*proto.Delivery{d(2), d(3)}
	select {
	case s.send <- first:
	case <-time.After(10 * time.Second):
		t.Fatal("batch not sent")
	}
	for tag := 1; tag <= 3; tag++ {
		if g, want := host.nextSettled(t), fmt.Sprintf("ack %d/%d", s.id, tag); g != want {
			t.Errorf("settled %q, want %q", g, want)
		}
	}
	mu.Lock()
	if !slices.Equal(handled, []string{"1", "2", "3"}) {
		t.Errorf("handled %v, want 1, 2, 3", handled)
	}
	mu.Unlock()
	var want []string
	for tag := 1; tag <= 3; tag++ {
		want = append(want, fmt.Sprintf("pub out.%d outbox", tag), fmt.Sprintf("ack %d/%d", s.id, tag))
	}
	if ev := host.events(); !slices.Equal(ev, want) {
		t.Errorf("the host saw %q, want %q", ev, want)
	}
	host.mu.Lock()
	sizes := slices.Clone(host.reqSizes)
	host.mu.Unlock()
	if !slices.Equal(sizes, []int{6}) {
		t.Errorf("outbox messages of %v calls, want one of 6", sizes)
	}
}
