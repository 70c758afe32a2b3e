package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// monitoredHost runs a host on the test broker that samples every 200ms
// and sends heartbeats every 400ms.
func monitoredHost(t *testing.T, sys, body string) *harness {
	t.Helper()
	url := brokertest.URL(t)
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, "h1"), control.AnyQueue(sys)}, nil)
	src := fmt.Sprintf(`system_id = %q
host {
  name               = "h1"
  plugin_dir         = "plugins"
  state_dir          = "var"
  http_addr          = "127.0.0.1:0"
  metrics_interval   = "200ms"
  heartbeat_interval = "400ms"
}
amqp {
  url = %q
}
%s
`, sys, url, body)
	h := startConfig(t, dir, src)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.d.WaitBroker(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

// rawDatapoints decodes a vumi.metrics body by hand, checking Vumi's shape
// exactly: {"datapoints": [[name, [aggregator, ...], [[timestamp, value],
// ...]], ...]}.
func rawDatapoints(t *testing.T, body []byte) map[string]float64 {
	t.Helper()
	var msg map[string][][]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil || len(msg) != 1 || msg["datapoints"] == nil {
		t.Fatalf("not a Vumi metrics message: %v: %s", err, body)
	}
	out := map[string]float64{}
	for _, dp := range msg["datapoints"] {
		var name string
		var aggs []string
		var points [][]float64
		if len(dp) != 3 || json.Unmarshal(dp[0], &name) != nil || json.Unmarshal(dp[1], &aggs) != nil ||
			json.Unmarshal(dp[2], &points) != nil || len(aggs) == 0 || len(points) == 0 || len(points[0]) != 2 {
			t.Fatalf("datapoint not in Vumi's shape: %s", dp)
		}
		out[name] = points[len(points)-1][1]
	}
	return out
}

// Datapoints reach a consumer bound to vumi.metrics in Vumi's shape; a
// worker's restarts rise by one when it is killed; its rss_bytes is its
// plugin process's.
func TestVumiMetricsOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	admin := brokertest.NewAdmin(t)
	_, deliveries := admin.TempQueue(monitor.MetricsExchange, monitor.MetricsRoutingKey)
	h := monitoredHost(t, sys, `
worker "steady" {
  class = "chaos"
}
`)
	pid := h.waitStarted("steady")
	wp := monitor.WorkerPrefix(sys, "h1", "steady")
	hp := monitor.HostPrefix(sys, "h1")
	// next returns the next datapoints of this host that satisfy pred.
	next := func(what string, pred func(map[string]float64) bool) map[string]float64 {
		t.Helper()
		deadline := time.After(waitTimeout)
		for {
			select {
			case d := <-deliveries:
				if !strings.Contains(string(d.Body), hp+".") {
					continue // another test's host
				}
				if d.ContentType != "application/json" {
					t.Fatalf("content type %q", d.ContentType)
				}
				if dps := rawDatapoints(t, d.Body); pred(dps) {
					return dps
				}
			case <-deadline:
				t.Fatalf("no metrics with %s within %s", what, waitTimeout)
			}
		}
	}
	dps := next("the worker's process", func(m map[string]float64) bool { _, ok := m[wp+".rss_bytes"]; return ok })
	st, err := monitor.ReadProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	self, err := monitor.ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss := dps[wp+".rss_bytes"]
	if rss < float64(st.RSSBytes)/2 || rss > float64(st.RSSBytes)*2 || rss == dps[hp+".host.rss_bytes"] {
		t.Fatalf("rss_bytes %v; plugin %d, host %d (%v published)", rss, st.RSSBytes, self.RSSBytes, dps[hp+".host.rss_bytes"])
	}
	if dps[wp+".restarts"] != 0 || dps[wp+".up"] != 1 || dps[hp+".host.workers.running"] != 1 {
		t.Fatalf("datapoints: restarts %v up %v running %v", dps[wp+".restarts"], dps[wp+".up"], dps[hp+".host.workers.running"])
	}
	if _, ok := dps[hp+".supervisor.root.rss_bytes"]; !ok {
		t.Fatalf("no supervisor totals in %v", dps)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitStarted("steady")
	next("restarts = 1", func(m map[string]float64) bool { return m[wp+".restarts"] == 1 })
}

// Heartbeats carry every field Vumi's heartbeat monitor requires, for
// every healthy worker; a hung worker and a stopped one stop heartbeating.
func TestVumiHeartbeatsOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	admin := brokertest.NewAdmin(t)
	_, deliveries := admin.TempQueue(monitor.HeartbeatExchange, monitor.HeartbeatRoutingKey)
	h := monitoredHost(t, sys, `
worker "steady" {
  class = "chaos"
}
worker "hung" {
  class           = "chaos"
  health_interval = "1s"
  health_timeout  = "1s"
  config {
    mode  = "hang_health"
    delay = "1500ms"
  }
}
worker "stopped" {
  class = "chaos"
}
`)
	pids := map[string]int{}
	for _, w := range []string{"steady", "hung", "stopped"} {
		pids[w] = h.waitStarted(w)
	}
	// beats collects the heartbeats of this host until pred holds.
	seen := map[string]int{}
	// Once since is set, a heartbeat counts only if it comes from a round
	// of the monitor that listed the workers after since. The rounds run
	// one after the other, each with one heartbeat of steady, and reach
	// the queue in the order they were sent (each publish waits for the
	// broker's confirm). So the round after the one whose heartbeat of
	// steady is stamped after since began after since, and every
	// heartbeat that comes after the second heartbeat of steady stamped
	// after since is of such a round.
	var since float64 // a heartbeat timestamp; 0 while every heartbeat counts
	steadyAfter := 0  // heartbeats of steady stamped after since, up to 2
	beats := func(what string, pred func() bool) {
		t.Helper()
		deadline := time.After(waitTimeout)
		for !pred() {
			select {
			case d := <-deliveries:
				var raw map[string]any
				if err := json.Unmarshal(d.Body, &raw); err != nil {
					t.Fatal(err)
				}
				if raw["system_id"] != sys {
					continue
				}
				for _, k := range []string{"version", "system_id", "worker_id", "worker_name", "hostname", "timestamp", "pid"} {
					if _, ok := raw[k]; !ok {
						t.Fatalf("heartbeat without %q: %s", k, d.Body)
					}
				}
				name, _ := raw["worker_name"].(string)
				ts, _ := raw["timestamp"].(float64)
				if name == "hung" && since != 0 && raw["pid"] != float64(pids[name]) {
					continue // its next instance, once it was killed: healthy until a health check fails
				}
				if raw["version"] != "20130319" || raw["worker_id"] != sys+":"+name || raw["hostname"] != "h1" ||
					raw["pid"] != float64(pids[name]) {
					t.Fatalf("heartbeat %s (pids %v)", d.Body, pids)
				}
				if since != 0 && steadyAfter < 2 {
					if name == "steady" && ts > since {
						steadyAfter++
					}
					if steadyAfter < 2 {
						continue // perhaps of a round that listed the workers before the change
					}
				}
				seen[name]++
			case <-deadline:
				t.Fatalf("waiting for %s: heartbeats so far %v", what, seen)
			}
		}
	}
	beats("every worker", func() bool { return seen["steady"] > 0 && seen["hung"] > 0 && seen["stopped"] > 0 })

	if err := h.d.StopWorker(context.Background(), "stopped"); err != nil {
		t.Fatal(err)
	}
	// Wait until the hung worker has failed a health check. It fails
	// every later one: that process stays unhealthy until it is killed,
	// after its third failure.
	sdktest.Eventually(t, waitTimeout, func() bool {
		w := findWorker(h.d.Snapshot(), "hung")
		return w != nil && !w.Healthy && w.Pid == pids["hung"]
	}, "the hung worker never showed as unhealthy")
	// Watch three more rounds, of those that listed the workers after
	// both changes, stamping since as the host stamps heartbeats.
	since = monitor.NewHeartbeat(sys, "steady", "h1", pids["steady"], time.Now()).Timestamp
	clear(seen)
	beats("three more rounds", func() bool { return seen["steady"] >= 3 })
	if seen["stopped"] != 0 {
		t.Errorf("a stopped worker sent %d heartbeats", seen["stopped"])
	}
	if seen["hung"] != 0 {
		t.Errorf("a hung worker sent %d heartbeats", seen["hung"])
	}
}

func findWorker(s *monitor.Snapshot, name string) *monitor.WorkerStats {
	for i := range s.Workers {
		if s.Workers[i].Name == name {
			return &s.Workers[i]
		}
	}
	return nil
}

// GET /metrics serves the snapshot in the Prometheus text format, behind
// the token; no secret shows in metrics, status or events.
func TestMetricsEndpointShowsNoSecret(t *testing.T) {
	const secret = "Zx9-metrics-secret-value"
	const token = "a-token-of-sixteen-chars"
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "smpp")
	h := startConfig(t, dir, fmt.Sprintf(`system_id = "test"
host {
  name       = "test-host"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
  http_token = %q
}
worker "smsc a" {
  class = "smpp"
  config {
    host     = "smpp.example.com"
    password = %q
  }
}
`, token, secret))
	pid := h.waitStarted("smsc a")
	get := func(path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.d.HTTPAddr()+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", false); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d", code)
	}
	code, body := get("/metrics", true)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	st, err := monitor.ReadProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	var rss float64
	for _, m := range families["dynworkers_worker_rss_bytes"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "worker" && l.GetValue() == "smsc a" {
				rss = m.GetGauge().GetValue()
			}
		}
	}
	if rss < float64(st.RSSBytes)/2 || rss > float64(st.RSSBytes)*2 {
		t.Fatalf("rss %v for a plugin of %d", rss, st.RSSBytes)
	}
	for _, f := range []string{"go_goroutines", "process_resident_memory_bytes", "dynworkers_host_workers", "dynworkers_supervisor_up"} {
		if families[f] == nil {
			t.Errorf("no %s", f)
		}
	}
	for _, path := range []string{"/metrics", "/v1/status", "/v1/events", "/v1/classes"} {
		if _, body := get(path, true); strings.Contains(body, secret) {
			t.Errorf("%s shows the secret", path)
		}
	}
	if strings.Contains(h.logs.String(), secret) {
		t.Error("the log shows the secret")
	}
}

// What a worker reports with Env.Metric reaches vumi.metrics under its
// prefix, aggregated as it asked (echo counts its replies with sum).
func TestWorkerMetricsReachVumi(t *testing.T) {
	sys := brokertest.ID(t)
	url := brokertest.URL(t)
	admin := brokertest.NewAdmin(t)
	_, deliveries := admin.TempQueue(monitor.MetricsExchange, monitor.MetricsRoutingKey)
	dir := t.TempDir()
	for _, p := range []string{"telnet", "echo"} {
		linkPlugin(t, filepath.Join(dir, "plugins"), p)
	}
	tn := "chat_" + sys
	admin.DeleteAtCleanup([]string{tn + ".inbound", tn + ".outbound", tn + ".event",
		control.HostQueue(sys, "h1"), control.AnyQueue(sys)}, nil)
	port := freePort(t)
	h := startConfig(t, dir, fmt.Sprintf(`system_id = %q
host {
  name             = "h1"
  plugin_dir       = "plugins"
  state_dir        = "var"
  http_addr        = "127.0.0.1:0"
  metrics_interval = "200ms"
}
amqp {
  url = %q
}
worker "telnet" {
  class = "telnet"
  config {
    transport_name = %q
    port           = %d
  }
}
worker "echo" {
  class = "echo"
  config {
    transport_name = %q
  }
}
`, sys, url, tn, port, tn))
	h.waitStarted("telnet")
	h.waitStarted("echo")
	sess := dial(t, port)
	const n = 5
	for i := range n {
		fmt.Fprintf(sess.conn, "line %d\r\n", i)
	}
	if err := sess.expect(n, func(i int) string { return fmt.Sprintf("line %d", i) }); err != nil {
		t.Fatal(err)
	}
	// As a Vumi worker's MetricManager publishes a Count: the name alone,
	// with the aggregator sum, which Vumi's aggregator appends.
	name := monitor.WorkerPrefix(sys, "h1", "echo") + ".echoed"
	total := 0.0
	deadline := time.After(waitTimeout)
	for total < n {
		select {
		case d := <-deliveries:
			total += workerMetricSum(t, d.Body, name)
		case <-deadline:
			t.Fatalf("%s summed to %v, want %d", name, total, n)
		}
	}
	if total != n {
		t.Fatalf("%s summed to %v, want %d", name, total, n)
	}
}

// workerMetricSum returns the sum of the points of the datapoint name,
// which must have the aggregator sum alone, in a vumi.metrics body; 0 if
// it has none. No datapoint may be named name.sum, as the host once named
// them.
func workerMetricSum(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	var msg map[string][][]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil || msg["datapoints"] == nil {
		t.Fatalf("not a Vumi metrics message: %v: %s", err, body)
	}
	sum := 0.0
	for _, dp := range msg["datapoints"] {
		var n string
		var aggs []string
		var points [][]float64
		if len(dp) != 3 || json.Unmarshal(dp[0], &n) != nil || json.Unmarshal(dp[1], &aggs) != nil ||
			json.Unmarshal(dp[2], &points) != nil {
			t.Fatalf("datapoint not in Vumi's shape: %s", dp)
		}
		switch n {
		case name + ".sum":
			t.Fatalf("datapoint %s: the aggregator is Vumi's to append", n)
		case name:
			if !slices.Equal(aggs, []string{"sum"}) || len(points) == 0 {
				t.Fatalf("datapoint %s", dp)
			}
			for _, p := range points {
				if len(p) != 2 || p[0] != math.Trunc(p[0]) {
					t.Fatalf("point %v of %s: want [whole seconds, value]", p, n)
				}
				sum += p[1]
			}
		}
	}
	return sum
}

// Without an amqp block, the Vumi metrics and heartbeats go on the
// embedded bus under their routing keys: a consumer of its vumi.metrics
// queue gets what a worker reports with Env.Metric, which /metrics shows
// too; once the worker is stopped (a dynamic one: forgotten), its series
// leave the registry of worker metrics.
func TestWorkerMetricsOnEmbeddedBus(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"telnet", "echo"} {
		linkPlugin(t, filepath.Join(dir, "plugins"), p)
	}
	const tn = "chat"
	port := freePort(t)
	h := startConfig(t, dir, fmt.Sprintf(`system_id = "emb"
host {
  name               = "h1"
  plugin_dir         = "plugins"
  state_dir          = "var"
  http_addr          = "127.0.0.1:0"
  metrics_interval   = "200ms"
  heartbeat_interval = "400ms"
}
worker "telnet" {
  class = "telnet"
  config {
    transport_name = %q
    port           = %d
  }
}
`, tn, port))
	h.waitStarted("telnet")
	bus := h.d.Bus() // opened by Run before any worker started
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	metrics, err := bus.Consume(ctx, monitor.MetricsRoutingKey, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Close()
	beats, err := bus.Consume(ctx, monitor.HeartbeatRoutingKey, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer beats.Close()
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "echo", Class: "echo",
		Config: json.RawMessage(fmt.Sprintf(`{"transport_name": %q}`, tn))}); err != nil {
		t.Fatal(err)
	}
	pid := h.waitStarted("echo")

	sess := dial(t, port)
	const n = 7
	for i := range n {
		fmt.Fprintf(sess.conn, "line %d\r\n", i)
	}
	if err := sess.expect(n, func(i int) string { return fmt.Sprintf("line %d", i) }); err != nil {
		t.Fatal(err)
	}
	name := monitor.WorkerPrefix("emb", "h1", "echo") + ".echoed"
	total := 0.0
	beat := false
	deadline := time.After(waitTimeout)
	for total < n || !beat {
		select {
		case d := <-metrics.Deliveries():
			total += workerMetricSum(t, d.Body, name)
			if err := metrics.Ack(d.Tag); err != nil {
				t.Fatal(err)
			}
		case d := <-beats.Deliveries():
			var hb monitor.Heartbeat
			if err := json.Unmarshal(d.Body, &hb); err != nil || hb.Validate() != nil {
				t.Fatalf("heartbeat %s: %v", d.Body, err)
			}
			beat = beat || (hb.WorkerName == "echo" && hb.PID == pid)
			if err := beats.Ack(d.Tag); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("on the embedded bus: %s summed to %v, want %d; echo's heartbeat seen: %v", name, total, n, beat)
		}
	}
	if total != n {
		t.Fatalf("%s summed to %v, want %d", name, total, n)
	}

	// /metrics shows the total as a counter of the worker.
	fams := scrapeMetrics(t, h)
	var got float64
	found := false
	for _, m := range fams["dynworkers_worker_metric_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["worker"] == "echo" && labels["metric"] == "echoed" {
			got, found = m.GetCounter().GetValue(), true
		}
	}
	if !found || got != n {
		t.Errorf("dynworkers_worker_metric_total{worker=\"echo\",metric=\"echoed\"} = %v (found %v), want %d", got, found, n)
	}

	// Echo's series (all sums: each has its total in Values) go with it;
	// telnet's stay.
	reg := h.d.workerMetrics
	echoPrefix := monitor.WorkerPrefix("emb", "h1", "echo")
	before := reg.Len()
	echoSeries := len(reg.Values(echoPrefix))
	if echoSeries == 0 || before < echoSeries {
		t.Fatalf("the registry holds %d series, %d of echo", before, echoSeries)
	}
	if err := h.d.StopWorker(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	// StopWorker forgets a dynamic worker, and with it its series (the
	// tree's Forget), before it returns: nothing to wait for.
	if reg.Len() != before-echoSeries || reg.Values(echoPrefix) != nil {
		t.Fatalf("the registry holds %d series after echo went (%v of echo), want %d", reg.Len(), reg.Values(echoPrefix), before-echoSeries)
	}
}

// scrapeMetrics GETs /metrics of a host without a token and parses it.
func scrapeMetrics(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + h.d.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %v %d %s", err, resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}
