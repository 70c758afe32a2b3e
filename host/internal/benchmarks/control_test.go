package benchmarks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/daemon"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

const (
	controlHost       = "bench"
	controlWarmup     = 20  // unmeasured status round trips per transport
	controlStatusN    = 500 // measured status round trips per run
	controlInFlight   = 8
	controlCycles     = 100
	controlStarts     = 100
	controlRPCTimeout = 30 * time.Second
)

// controlConfig runs one resident hello worker (so that status reports
// something) on an amqp block; start requests add more.
const controlConfig = `system_id = %q
host {
  name       = %q
  plugin_dir = %q
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
amqp {
  url = %q
}
worker "resident" {
  class = "hello"
  config {
    interval = "1h"
  }
}
`

// brokerURL is AMQP_URL, else the broker the tests use.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return brokertest.DefaultURL
}

// benchID is a system_id unique to this run: "bench-" and 12 hex digits.
func benchID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "bench-" + hex.EncodeToString(b)
}

// amqpClient sends control requests to one host's routing key and matches
// the replies, which come to one reply queue, by correlation_id. It is
// safe for concurrent use.
type amqpClient struct {
	ch     *amqp.Channel
	key    string
	replyQ string
	seq    atomic.Int64

	mu      sync.Mutex
	waiting map[string]chan amqp.Delivery
	stray   int
}

func newAMQPClient(t *testing.T, admin *brokertest.Admin, key string) *amqpClient {
	t.Helper()
	replyQ, deliveries := admin.TempQueue("")
	c := &amqpClient{ch: admin.Channel(), key: key, replyQ: replyQ, waiting: map[string]chan amqp.Delivery{}}
	t.Cleanup(func() { _ = c.ch.Close() })
	go func() {
		for d := range deliveries {
			c.mu.Lock()
			w, ok := c.waiting[d.CorrelationId]
			delete(c.waiting, d.CorrelationId)
			if !ok {
				c.stray++
			}
			c.mu.Unlock()
			if ok {
				w <- d
			}
		}
	}()
	return c
}

// send publishes body with reply_to and a fresh correlation_id, and returns
// the channel its reply will come on. The publish is not confirmed: the
// reply is the confirmation (the host acks only after its reply was).
func (c *amqpClient) send(body []byte) (<-chan amqp.Delivery, error) {
	corr := fmt.Sprintf("bench-%d", c.seq.Add(1))
	w := make(chan amqp.Delivery, 1)
	c.mu.Lock()
	c.waiting[corr] = w
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), controlRPCTimeout)
	defer cancel()
	err := c.ch.PublishWithContext(ctx, control.ControlExchange, c.key, false, false, amqp.Publishing{
		ContentType: "application/json", Body: body, ReplyTo: c.replyQ, CorrelationId: corr,
	})
	if err != nil {
		c.mu.Lock()
		delete(c.waiting, corr)
		c.mu.Unlock()
		return nil, err
	}
	return w, nil
}

// wait returns the reply that arrives on w, decoded, and fails unless it
// is OK.
func (c *amqpClient) wait(w <-chan amqp.Delivery) (control.Reply, error) {
	select {
	case d := <-w:
		return okReply(d.Body)
	case <-time.After(controlRPCTimeout):
		return control.Reply{}, fmt.Errorf("no reply within %v", controlRPCTimeout)
	}
}

// call sends body and waits for its reply.
func (c *amqpClient) call(body []byte) (control.Reply, error) {
	w, err := c.send(body)
	if err != nil {
		return control.Reply{}, err
	}
	return c.wait(w)
}

func okReply(body []byte) (control.Reply, error) {
	var rep control.Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("reply %q: %v", body, err)
	}
	if !rep.OK {
		return rep, fmt.Errorf("reply not ok: %s", body)
	}
	return rep, nil
}

// closedLoop runs n calls of do with inFlight callers, each making its
// next call once its previous one returned, and returns each call's
// duration (in the order they were started) and the time from the first
// call to the end of the last.
func closedLoop(n, inFlight int, do func() error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	t0 := time.Now()
	for range inFlight {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				s := time.Now()
				if err := do(); err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					next.Store(int64(n)) // the others stop too
					return
				}
				lat[i] = time.Since(s)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	select {
	case err := <-errs:
		return nil, 0, err
	default:
	}
	return lat, elapsed, nil
}

// startProbe watches the supervision events of one worker started by the
// start→healthy benchmark; the event hook stamps them.
type startProbe struct {
	name  string
	ready chan struct{} // closed at its first worker_started or worker_start_failed

	mu       sync.Mutex
	starting time.Time
	started  time.Time
	inst     *pluginproc.Process
	err      error
}

func (p *startProbe) event(ev supervise.Event, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started.IsZero() && p.err == nil {
		switch e := ev.(type) {
		case supervise.ChildStarting:
			if p.starting.IsZero() {
				p.starting = at
			}
		case supervise.ChildStarted:
			p.started = at
			if p.inst = daemon.ProcessOf(e.Instance); p.inst == nil {
				p.err = fmt.Errorf("instance is %T, want *pluginproc.Process", e.Instance)
			}
			close(p.ready)
		case supervise.ChildStartFailed:
			p.err = fmt.Errorf("start failed: %v", e.Err)
			close(p.ready)
		}
	}
}

// TestControl measures the control channel with the daemon in-process on
// an amqp block with a system_id of its own: status round trips over AMQP
// and over HTTP (one and controlInFlight in flight), start+stop cycles over
// AMQP, and the time from the publication of a start to the new worker
// answering Health. Without a broker it records that it did not run.
func TestControl(t *testing.T) {
	f := setup(t)
	url := brokerURL()
	if err := brokertest.Probe(url); err != nil {
		reason := fmt.Sprintf("no RabbitMQ broker answered at %s (%v)", broker.RedactURL(url), err)
		record(func(r *Results) { r.Control = &ControlResult{NotRun: reason} })
		t.Skip(reason)
	}
	socketDir(t)
	sys := benchID(t)
	admin := brokertest.NewAdmin(t)
	// Deleted after the host has stopped (cleanups run in reverse order).
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, controlHost), control.AnyQueue(sys)}, nil)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, controlConfig, sys, controlHost, f.pluginDir, url), 0o644); err != nil {
		t.Fatal(err)
	}
	var probe atomic.Pointer[startProbe]
	hook := func(ev supervise.Event) {
		at := time.Now()
		if p := probe.Load(); p != nil {
			if m := ev.Map(); m["worker"] == p.name {
				p.event(ev, at)
			}
		}
	}
	logs := &tailBuffer{max: 64 << 10}
	logger := hclog.New(&hclog.LoggerOptions{Name: "dynworkers", Level: hclog.Info, Output: logs, JSONFormat: true})
	d, err := daemon.Load(context.Background(), daemon.Options{ConfigPath: cfg, Logger: logger, EventHook: hook})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(eventTimeout):
			t.Errorf("Run did not return within %v of cancel", eventTimeout)
		}
		for _, p := range ChildrenOf(os.Getpid()) {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid)); exe == f.plugin {
				t.Errorf("plugin process %d still alive after the host stopped", p.Pid)
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("host log (tail):\n%s", logs.String())
		}
	}
	t.Cleanup(stop)

	wctx, wcancel := context.WithTimeout(context.Background(), eventTimeout)
	defer wcancel()
	if err := d.WaitBroker(wctx); err != nil {
		t.Fatalf("host did not connect to the broker: %v", err)
	}
	var httpAddr string
	sdktest.Eventually(t, eventTimeout, func() bool {
		httpAddr = d.HTTPAddr()
		return httpAddr != ""
	}, "the HTTP API did not listen")
	// The resident worker runs before the host takes control messages; a
	// status over AMQP answered means the transport consumes.
	cli := newAMQPClient(t, admin, control.HostKey(sys, controlHost))
	statusBody := []byte(`{"operation": "status"}`)
	rep, err := cli.call(statusBody)
	if err != nil {
		t.Fatalf("first status over AMQP: %v", err)
	}
	if b, _ := json.Marshal(rep.Result); !strings.Contains(string(b), `"resident"`) || !strings.Contains(string(b), `"running"`) {
		t.Fatalf("status does not show the resident worker running: %s", b)
	}

	brokerCPU0, t0 := BrokerCPU(), time.Now()
	res := &ControlResult{Broker: broker.RedactURL(url)}

	// Status round trips.
	amqpStatus := func() error { _, err := cli.call(statusBody); return err }
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: controlInFlight * 2}, Timeout: controlRPCTimeout}
	defer hc.CloseIdleConnections()
	httpURL := "http://" + httpAddr + "/v1/control"
	httpStatus := func() error {
		resp, err := hc.Post(httpURL, "application/json", bytes.NewReader(statusBody))
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %s: %s", resp.Status, body)
		}
		_, err = okReply(body)
		return err
	}
	for _, run := range []struct {
		transport string
		do        func() error
		inFlight  int
	}{
		{"amqp", amqpStatus, 1}, {"amqp", amqpStatus, controlInFlight},
		{"http", httpStatus, 1}, {"http", httpStatus, controlInFlight},
	} {
		if _, _, err := closedLoop(controlWarmup, run.inFlight, run.do); err != nil {
			t.Fatalf("status over %s, warm-up: %v", run.transport, err)
		}
		lat, elapsed, err := closedLoop(controlStatusN, run.inFlight, run.do)
		if err != nil {
			t.Fatalf("status over %s, %d in flight: %v", run.transport, run.inFlight, err)
		}
		rt := RoundTrips{Transport: run.transport, Request: string(statusBody), N: controlStatusN, Warmup: controlWarmup, InFlight: run.inFlight,
			Elapsed: elapsed, ElapsedUS: elapsed.Microseconds(), Latency: Summarize(lat), LatencyUS: Micros(lat)}
		t.Logf("status over %s, %d in flight: %.0f/s, p50 %v p99 %v", rt.Transport, rt.InFlight, rt.PerSecond(), rt.Latency.P50, rt.Latency.P99)
		res.Status = append(res.Status, rt)
	}

	startBody := func(name string) []byte {
		return fmt.Appendf(nil, `{"operation": "vumi_worker", "worker_name": %q, "worker_class": "hello", "worker_config": {"interval": "1h"}}`, name)
	}
	stopBody := func(name string) []byte {
		return fmt.Appendf(nil, `{"operation": "stop_worker", "worker_name": %q}`, name)
	}
	checkStarted := func(rep control.Reply) error {
		b, _ := json.Marshal(rep.Result)
		var sr api.StartResult
		if err := json.Unmarshal(b, &sr); err != nil || sr.Action != "started" || sr.State != "running" {
			return fmt.Errorf("start reply %s: want action started, state running", b)
		}
		return nil
	}

	// Start+stop cycles.
	var cycle, startRep, stopRep []time.Duration
	c0 := time.Now()
	for i := range controlCycles {
		name := fmt.Sprintf("cycle-%03d", i)
		s := time.Now()
		rep, err := cli.call(startBody(name))
		if err == nil {
			err = checkStarted(rep)
		}
		if err != nil {
			t.Fatalf("cycle %d: start: %v", i, err)
		}
		m := time.Now()
		if _, err := cli.call(stopBody(name)); err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
		e := time.Now()
		cycle, startRep, stopRep = append(cycle, e.Sub(s)), append(startRep, m.Sub(s)), append(stopRep, e.Sub(m))
	}
	cyc := &Cycles{N: controlCycles, Elapsed: time.Since(c0), Cycle: Summarize(cycle), Start: Summarize(startRep), Stop: Summarize(stopRep),
		CycleUS: Micros(cycle), StartUS: Micros(startRep), StopUS: Micros(stopRep)}
	cyc.ElapsedUS = cyc.Elapsed.Microseconds()
	t.Logf("start+stop cycles: %.1f/s, cycle p50 %v (start reply p50 %v, stop reply p50 %v)", cyc.PerSecond(), cyc.Cycle.P50, cyc.Start.P50, cyc.Stop.P50)
	res.Cycles = cyc

	// Publish of a start → the new worker answers Health.
	var total, dispatch, start, health []time.Duration
	for i := range controlStarts {
		p := &startProbe{name: fmt.Sprintf("probe-%03d", i), ready: make(chan struct{})}
		probe.Store(p)
		body := startBody(p.name)
		t0 := time.Now()
		w, err := cli.send(body)
		if err != nil {
			t.Fatalf("start %d: publishing: %v", i, err)
		}
		select {
		case <-p.ready:
		case <-time.After(controlRPCTimeout):
			t.Fatalf("start %d: no worker_started within %v", i, controlRPCTimeout)
		}
		p.mu.Lock()
		inst, perr, starting, started := p.inst, p.err, p.starting, p.started
		p.mu.Unlock()
		if perr != nil {
			t.Fatalf("start %d: %v", i, perr)
		}
		hctx, hcancel := context.WithTimeout(context.Background(), controlRPCTimeout)
		err = inst.Health(hctx)
		t1 := time.Now()
		hcancel()
		if err != nil {
			t.Fatalf("start %d: Health: %v", i, err)
		}
		probe.Store(nil)
		rep, err := cli.wait(w)
		if err == nil {
			err = checkStarted(rep)
		}
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if _, err := cli.call(stopBody(p.name)); err != nil {
			t.Fatalf("start %d: stop: %v", i, err)
		}
		if starting.IsZero() || starting.Before(t0) || started.Before(starting) {
			t.Fatalf("start %d: events out of order: publish %v, starting %v, started %v", i, t0, starting, started)
		}
		total, dispatch = append(total, t1.Sub(t0)), append(dispatch, starting.Sub(t0))
		start, health = append(start, started.Sub(starting)), append(health, t1.Sub(started))
	}
	sh := &StartHealth{N: controlStarts, Total: Summarize(total), Dispatch: Summarize(dispatch), Start: Summarize(start), Health: Summarize(health),
		TotalUS: Micros(total), DispatchUS: Micros(dispatch), StartUS: Micros(start), HealthUS: Micros(health)}
	t.Logf("publish→healthy p50 %v p99 %v (publish→starting p50 %v, starting→started p50 %v, started→healthy p50 %v)",
		sh.Total.P50, sh.Total.P99, sh.Dispatch.P50, sh.Start.P50, sh.Health.P50)
	res.StartHealth = sh

	res.Elapsed, res.BrokerCPU = time.Since(t0), max(BrokerCPU()-brokerCPU0, 0)
	res.ElapsedMS, res.BrokerCPUMS = res.Elapsed.Milliseconds(), res.BrokerCPU.Milliseconds()
	resident, _ := d.Worker("resident")
	for _, c := range ChildrenOf(os.Getpid()) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.Pid)); exe == f.plugin && c.Pid != resident.Pid {
			res.SparesLaunched++
		}
	}
	if ws := d.Workers(); len(ws) != 1 {
		t.Errorf("%d workers left after the benchmark, want the resident one only: %+v", len(ws), ws)
	}
	cli.mu.Lock()
	stray := cli.stray
	cli.mu.Unlock()
	if stray > 0 {
		t.Errorf("%d replies with an unknown correlation_id", stray)
	}
	stop()
	if t.Failed() {
		return
	}
	t.Logf("broker CPU %v in %v; %d plugin processes other than the resident worker at the end", res.BrokerCPU, res.Elapsed, res.SparesLaunched)
	record(func(r *Results) { r.Control = res })
}
