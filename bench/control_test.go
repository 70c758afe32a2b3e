package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// httpAPI calls the host's HTTP API.
type httpAPI struct {
	base string
	c    *http.Client
}

func newHTTPAPI(base string, inFlight int) *httpAPI {
	return &httpAPI{base: base, c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: inFlight * 2}, Timeout: controlRPCTimeout}}
}

// do sends a request and returns the reply, which must be OK.
func (a *httpAPI) do(method, path string, body []byte) (reply, error) {
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Dynworkers-Request", "1") // what the API requires of a POST or DELETE without a token
	resp, err := a.c.Do(req)
	if err != nil {
		return reply{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return reply{}, fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("%s %s: HTTP %s: %s", method, path, resp.Status, b)
	}
	return okReply(b)
}

// workerStatus is a worker in the status result.
type workerStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Pid   int    `json:"pid"`
}

// statusWorkers decodes the workers of a status reply.
func statusWorkers(rep reply) ([]workerStatus, error) {
	var res struct {
		Workers []workerStatus `json:"workers"`
	}
	if err := json.Unmarshal(rep.Result, &res); err != nil {
		return nil, fmt.Errorf("status result %s: %w", rep.Result, err)
	}
	return res.Workers, nil
}

// startResult is the result of a start (vumi_worker, POST /v1/workers).
type startResult struct {
	Action string `json:"action"`
	State  string `json:"state"`
	Pid    int    `json:"pid"`
}

func checkStarted(rep reply) (startResult, error) {
	var sr startResult
	if err := json.Unmarshal(rep.Result, &sr); err != nil || sr.Action != "started" || sr.State != "running" {
		return sr, fmt.Errorf("start reply %s: want action started, state running", rep.Result)
	}
	return sr, nil
}

// TestControl measures the control channel of `dynworkers serve` on an
// amqp block with a system_id of its own, from outside: status round trips
// over AMQP and over HTTP (one and controlInFlight in flight), start+stop
// cycles over AMQP, and the time from the publication of a start to its
// reply, split by the events of vumi.events. Without a broker it records
// that it did not run.
func TestControl(t *testing.T) {
	f := setup(t)
	url := needBroker(t, func(reason string) {
		record(func(r *Results) { r.Control = &ControlResult{NotRun: reason} })
	})
	socketDir(t)
	sys := benchID(t)
	admin := newAMQPAdmin(t, url)
	admin.deleteAtCleanup(controlQueues(sys, controlHost)...)
	events := watchEvents(admin, sys, controlHost)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, controlConfig, sys, controlHost, f.pluginDir, url), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, f.host, dir, cfg)
	h.waitRunning(1)
	api := newHTTPAPI(h.apiURL(), controlInFlight)
	defer api.c.CloseIdleConnections()

	// A status over AMQP answered means the host consumes its control
	// queue (the resident worker runs before it does).
	cli := newAMQPClient(t, admin, sys+"."+controlHost)
	statusBody := []byte(`{"operation": "status"}`)
	rep, err := cli.call(statusBody)
	if err != nil {
		t.Fatalf("first status over AMQP: %v", err)
	}
	ws, err := statusWorkers(rep)
	if err != nil || len(ws) != 1 || ws[0].Name != "resident" || ws[0].State != "running" {
		t.Fatalf("status does not show the resident worker running: %s (%v)", rep.Result, err)
	}
	resident := ws[0].Pid

	brokerCPU0, t0 := BrokerCPU(), time.Now()
	res := &ControlResult{Broker: redactURL(url)}

	// Status round trips.
	amqpStatus := func() error { _, err := cli.call(statusBody); return err }
	httpStatus := func() error { _, err := api.do(http.MethodGet, "/v1/status", nil); return err }
	for _, run := range []struct {
		transport, request string
		do                 func() error
		inFlight           int
	}{
		{"amqp", string(statusBody), amqpStatus, 1}, {"amqp", string(statusBody), amqpStatus, controlInFlight},
		{"http", "GET /v1/status", httpStatus, 1}, {"http", "GET /v1/status", httpStatus, controlInFlight},
	} {
		if _, _, err := closedLoop(controlWarmup, run.inFlight, run.do); err != nil {
			t.Fatalf("status over %s, warm-up: %v", run.transport, err)
		}
		lat, elapsed, err := closedLoop(controlStatusN, run.inFlight, run.do)
		if err != nil {
			t.Fatalf("status over %s, %d in flight: %v", run.transport, run.inFlight, err)
		}
		rt := RoundTrips{Transport: run.transport, Request: run.request, N: controlStatusN, Warmup: controlWarmup, InFlight: run.inFlight,
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

	// Start+stop cycles.
	var cycle, startRep, stopRep []time.Duration
	c0 := time.Now()
	for i := range controlCycles {
		name := fmt.Sprintf("cycle-%03d", i)
		s := time.Now()
		rep, err := cli.call(startBody(name))
		if err == nil {
			_, err = checkStarted(rep)
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

	// Publish of a start → its reply, split by the worker's events.
	var total, dispatch, start, toReply []time.Duration
	for i := range controlStarts {
		name := fmt.Sprintf("probe-%03d", i)
		t0 := time.Now()
		rep, err := cli.call(startBody(name))
		t1 := time.Now()
		if err == nil {
			_, err = checkStarted(rep)
		}
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		starting := events.next(name, "worker_starting")
		started := events.next(name, "worker_started")
		if starting.Event != "worker_starting" || started.Event != "worker_started" {
			t.Fatalf("start %d: events %s, %s; want worker_starting, worker_started", i, starting.Event, started.Event)
		}
		if _, err := cli.call(stopBody(name)); err != nil {
			t.Fatalf("start %d: stop: %v", i, err)
		}
		if starting.Time.Before(t0) || started.Time.Before(starting.Time) || t1.Before(started.Time) {
			t.Fatalf("start %d: events out of order: publish %v, starting %v, started %v, reply %v", i, t0, starting.Time, started.Time, t1)
		}
		total, dispatch = append(total, t1.Sub(t0)), append(dispatch, starting.Time.Sub(t0))
		start, toReply = append(start, started.Time.Sub(starting.Time)), append(toReply, t1.Sub(started.Time))
	}
	sh := &StartHealth{N: controlStarts, Total: Summarize(total), Dispatch: Summarize(dispatch), Start: Summarize(start), Health: Summarize(toReply),
		TotalUS: Micros(total), DispatchUS: Micros(dispatch), StartUS: Micros(start), HealthUS: Micros(toReply)}
	t.Logf("publish→reply p50 %v p99 %v (publish→starting p50 %v, starting→started p50 %v, started→reply p50 %v)",
		sh.Total.P50, sh.Total.P99, sh.Dispatch.P50, sh.Start.P50, sh.Health.P50)
	res.StartHealth = sh

	res.Elapsed, res.BrokerCPU = time.Since(t0), max(BrokerCPU()-brokerCPU0, 0)
	res.ElapsedMS, res.BrokerCPUMS = res.Elapsed.Milliseconds(), res.BrokerCPU.Milliseconds()
	for _, c := range ChildrenOf(h.pid()) {
		if c.Pid != resident && f.isPluginProc(c.Pid) {
			res.SparesLaunched++
		}
	}
	if rep, err := api.do(http.MethodGet, "/v1/status", nil); err != nil {
		t.Errorf("status at the end: %v", err)
	} else if ws, err := statusWorkers(rep); err != nil || len(ws) != 1 {
		t.Errorf("workers left after the benchmark, want the resident one only: %s (%v)", rep.Result, err)
	}
	cli.mu.Lock()
	stray := cli.stray
	cli.mu.Unlock()
	if stray > 0 {
		t.Errorf("%d replies with an unknown correlation_id", stray)
	}
	h.stop(nil)
	if t.Failed() {
		return
	}
	t.Logf("broker CPU %v in %v; %d plugin processes other than the resident worker at the end", res.BrokerCPU, res.Elapsed, res.SparesLaunched)
	record(func(r *Results) { r.Control = res })
}
