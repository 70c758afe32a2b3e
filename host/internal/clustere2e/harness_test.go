package clustere2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// waitTimeout bounds every wait that has no deadline of its own (a host's
// start-up, a reply): generous, the machine may be loaded.
const waitTimeout = 90 * time.Second

// The binaries every test runs, built once by TestMain.
var (
	dynBin    string // bin/dynworkers of this tree
	pluginDir string // holds hello-worker (class "hello") only
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dynworkers-clustere2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// build builds the host and the hello example plugin into dir. With
// DYNWORKERS_E2E_RACE=1 the host is built with the race detector.
func build(dir string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	gomod, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(gomod))) == 0 {
		return fmt.Errorf("locating the module root: go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	dynBin = filepath.Join(dir, "dynworkers")
	pluginDir = filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		return err
	}
	hostArgs := []string{"build", "-o", dynBin}
	if os.Getenv("DYNWORKERS_E2E_RACE") == "1" {
		hostArgs = append(hostArgs, "-race")
	}
	for _, args := range [][]string{
		append(hostArgs, "./host/cmd/dynworkers"),
		{"build", "-o", filepath.Join(pluginDir, "hello-worker"), "./examples/hello-worker"},
	} {
		cmd := exec.Command(goTool, args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// cluster is one system of a test: an etcd, the broker, hosts.
type cluster struct {
	t     testing.TB
	sys   string
	url   string
	ttl   time.Duration
	etcd  *etcdtest.Server
	etcdc *clientv3.Client
	admin *brokertest.Admin

	replyQueue string
	corr       atomic.Int64
	repMu      sync.Mutex
	waiting    map[string]chan reply

	mu    sync.Mutex
	hosts []*host

	sampler *sampler
}

// newCluster starts an etcd and a reply queue for a system of its own,
// with the given lease TTL for the hosts added later.
func newCluster(t testing.TB, ttl time.Duration) *cluster {
	t.Helper()
	c := &cluster{t: t, sys: brokertest.ID(t), url: brokertest.URL(t), ttl: ttl, waiting: map[string]chan reply{}}
	c.etcd = etcdtest.Start(t)
	c.etcdc = c.etcd.Client(t)
	c.admin = brokertest.NewAdmin(t)
	c.admin.DeleteAtCleanup([]string{control.AnyQueue(c.sys)}, nil)
	q, deliveries := c.admin.TempQueue("")
	c.replyQueue = q
	go c.dispatch(deliveries)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcd under %s:\n%s", c.prefix(), etcdtest.Dump(c.etcdc, c.prefix()))
		}
	})
	return c
}

func (c *cluster) prefix() string { return "/dynworkers/" + c.sys + "/" }

// hostOpts are the settings of one host.
type hostOpts struct {
	// plain is a host without a cluster block.
	plain      bool
	maxWorkers int
	labels     map[string]string
}

// host is one `dynworkers serve` process.
type host struct {
	c     *cluster
	name  string
	dir   string
	proxy *etcdtest.Proxy // nil for a plain host
	plain bool
	cmd   *exec.Cmd
	done  chan struct{}
	rc    int
	addr  string // HTTP API host:port

	killed atomic.Bool
	races  atomic.Int32 // "WARNING: DATA RACE" lines in its log

	mu      sync.Mutex
	raw     strings.Builder
	lines   []map[string]any
	changed chan struct{}
}

// addHost writes the host's config and starts it, and returns once it
// logged "host running".
func (c *cluster) addHost(name string, o hostOpts) *host {
	c.t.Helper()
	h := &host{c: c, name: name, dir: filepath.Join(tempDir(c.t), name), plain: o.plain, done: make(chan struct{}), changed: make(chan struct{})}
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	c.admin.DeleteAtCleanup([]string{control.HostQueue(c.sys, name)}, nil)
	var b strings.Builder
	fmt.Fprintf(&b, "system_id = %q\nhost {\n  name = %q\n  plugin_dir = %q\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  warm_spares = 0\n}\namqp {\n  url = %q\n}\n",
		c.sys, name, pluginDir, c.url)
	if !o.plain {
		h.proxy = etcdtest.NewProxy(c.t, c.etcd.Endpoint())
		fmt.Fprintf(&b, "cluster {\n  endpoints = [%q]\n  lease_ttl = %q\n  max_workers = %d\n", h.proxy.Addr(), c.ttl.String(), o.maxWorkers)
		if len(o.labels) > 0 {
			b.WriteString("  labels = {\n")
			for _, k := range sortedKeys(o.labels) {
				fmt.Fprintf(&b, "    %s = %q\n", k, o.labels[k])
			}
			b.WriteString("  }\n")
		}
		b.WriteString("}\n")
	}
	cfg := filepath.Join(h.dir, "host.hcl")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return c.launch(h)
}

// launch starts h's process on its config and waits until it runs.
func (c *cluster) launch(h *host) *host {
	c.t.Helper()
	h.start(filepath.Join(h.dir, "host.hcl"))
	h.addr, _ = h.waitLog("HTTP API listening")["addr"].(string)
	h.waitLog("host running")
	// "host running" may come before the control queue is consumed: wait
	// for the broker to see the host's consumer.
	waitFor(c.t, waitTimeout, "host "+h.name+" consuming its control queue", func() (bool, string) {
		q, err := c.admin.InspectQueue(control.HostQueue(c.sys, h.name))
		if err != nil {
			return false, err.Error()
		}
		return q.Consumers > 0, fmt.Sprintf("%d consumers", q.Consumers)
	})
	c.mu.Lock()
	c.hosts = append(c.hosts, h)
	c.mu.Unlock()
	return h
}

// restart starts a killed host again: the same name, config, state_dir
// and etcd proxy; the returned host replaces it.
func (h *host) restart() *host {
	h.c.t.Helper()
	if h.alive() {
		h.c.t.Fatalf("restart of %s, which runs", h.name)
	}
	n := &host{c: h.c, name: h.name, dir: h.dir, proxy: h.proxy, plain: h.plain, done: make(chan struct{}), changed: make(chan struct{})}
	return h.c.launch(n)
}

// tempDir is a short temporary directory (unix socket paths are short).
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dwc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (h *host) start(cfg string) {
	t := h.c.t
	h.cmd = exec.Command(dynBin, "serve", "-config", cfg, "-log-json")
	h.cmd.Dir = h.dir
	// A $TMPDIR of its own, removed after the host is killed at the end
	// of the test (registered first, so it runs after the kill): a
	// SIGKILLed host leaves its socket directory behind.
	h.cmd.Env = append(os.Environ(), "TMPDIR="+tempDir(t))
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd.Stdout = io.Discard
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			_ = json.Unmarshal(sc.Bytes(), &line)
			if strings.Contains(sc.Text(), "WARNING: DATA RACE") {
				h.races.Add(1) // a host built with -race (DYNWORKERS_E2E_RACE=1)
			}
			h.mu.Lock()
			h.raw.WriteString(sc.Text() + "\n")
			h.lines = append(h.lines, line)
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
		}
		_ = h.cmd.Wait()
		h.rc = h.cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		h.killed.Store(true)
		_ = h.cmd.Process.Kill()
		<-h.done
		if n := h.races.Load(); n > 0 {
			t.Errorf("host %s reported %d data race(s): see its log", h.name, n)
		}
		if t.Failed() {
			h.mu.Lock()
			log := h.raw.String()
			h.mu.Unlock()
			if len(log) > 64<<10 {
				log = "...\n" + log[len(log)-64<<10:]
			}
			t.Logf("log of host %s:\n%s", h.name, log)
		}
	})
}

// waitLog returns the first log line whose message is msg.
func (h *host) waitLog(msg string) map[string]any {
	t := h.c.t
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		for _, l := range h.lines {
			if l["@message"] == msg {
				h.mu.Unlock()
				return l
			}
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-h.done:
			h.mu.Lock()
			exited := h.changed == changed
			h.mu.Unlock()
			if exited {
				t.Fatalf("host %s exited (status %d) without logging %q", h.name, h.rc, msg)
			}
		case <-deadline:
			t.Fatalf("host %s did not log %q within %s", h.name, msg, waitTimeout)
		}
	}
}

// pid is the host process's pid.
func (h *host) pid() int { return h.cmd.Process.Pid }

// alive reports whether the host was not killed and has not exited.
func (h *host) alive() bool {
	if h.killed.Load() {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// kill9 kills the host with SIGKILL (its plugin processes die with it:
// Pdeathsig) after handing its last status to the sampler, which then
// watches those pids until /proc says they are gone.
func (h *host) kill9() time.Time {
	t := h.c.t
	t.Helper()
	if st, err := h.status(); err == nil && h.c.sampler != nil {
		h.c.sampler.track(h.name, st.Workers, time.Now())
	}
	h.killed.Store(true)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		t.Fatalf("host %s did not exit after SIGKILL", h.name)
	}
	return at
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get GETs path of the host's API and decodes the result into out.
func (h *host) get(path string, out any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+h.addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Dynworkers-Request", "1")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var rep struct {
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  *control.Error  `json:"error"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("GET %s of %s: %v: %s", path, h.name, err, body)
	}
	if !rep.OK {
		return fmt.Errorf("GET %s of %s: %d %v", path, h.name, resp.StatusCode, rep.Error)
	}
	if out != nil {
		return json.Unmarshal(rep.Result, out)
	}
	return nil
}

// status is GET /v1/status.
func (h *host) status() (api.Status, error) {
	var st api.Status
	err := h.get("/v1/status", &st)
	return st, err
}

// statusRaw is GET /v1/status as the JSON object of its result.
func (h *host) statusRaw() (map[string]json.RawMessage, error) {
	var st map[string]json.RawMessage
	err := h.get("/v1/status", &st)
	return st, err
}

// view is GET /v1/cluster.
func (h *host) view() (api.ClusterView, error) {
	var v api.ClusterView
	err := h.get("/v1/cluster", &v)
	return v, err
}

// clusterWorkers are the host's running cluster workers: name → pid.
func (h *host) clusterWorkers() (map[string]int, error) {
	st, err := h.status()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, w := range st.Workers {
		if w.Source == api.SourceCluster && w.State == "running" && w.Pid > 0 {
			out[w.Name] = w.Pid
		}
	}
	return out, nil
}

// live returns the hosts neither killed nor exited.
func (c *cluster) live() []*host {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*host
	for _, h := range c.hosts {
		if h.alive() {
			out = append(out, h)
		}
	}
	return out
}

// placement is where the cluster workers run, from the live hosts' status.
type placement map[string][]where

type where struct {
	host string
	pid  int
}

// placement reads every live cluster host's status (failing the test if
// one does not answer) and returns the running cluster workers.
func (c *cluster) placement() placement {
	c.t.Helper()
	p, err := c.tryPlacement()
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cluster) tryPlacement() (placement, error) {
	p := placement{}
	for _, h := range c.live() {
		if h.plain {
			continue
		}
		ws, err := h.clusterWorkers()
		if err != nil {
			return nil, err
		}
		for n, pid := range ws {
			p[n] = append(p[n], where{h.name, pid})
		}
	}
	return p, nil
}

// perHost counts the workers of p per host.
func (p placement) perHost() map[string]int {
	out := map[string]int{}
	for _, ws := range p {
		for _, w := range ws {
			out[w.host]++
		}
	}
	return out
}

// on returns the names p has running on host h, sorted.
func (p placement) on(h string) []string {
	var out []string
	for n, ws := range p {
		for _, w := range ws {
			if w.host == h {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// waitRunning waits until every worker of names runs on some live host (by
// the hosts' status), failing the test after d; it returns when.
func (c *cluster) waitRunning(t testing.TB, d time.Duration, what string, names []string) time.Time {
	t.Helper()
	return waitFor(t, d, what, func() (bool, string) {
		q, err := c.tryPlacement()
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, n := range names {
			if len(q[n]) == 0 {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not running: %v", missing)
	})
}

// waitFor polls cond every 100 ms until it holds or the deadline passes,
// then fails the test with msg and the last state cond described.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return time.Now()
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits until the cluster view of the first live cluster host
// shows every live cluster host alive and a leader.
func (c *cluster) waitReady() {
	c.t.Helper()
	waitFor(c.t, waitTimeout, "every host alive in the cluster view, with a leader", func() (bool, string) {
		var want []string
		var from *host
		for _, h := range c.live() {
			if !h.plain {
				want = append(want, h.name)
				if from == nil {
					from = h
				}
			}
		}
		if from == nil {
			return false, "no cluster host"
		}
		v, err := from.view()
		if err != nil {
			return false, err.Error()
		}
		alive := map[string]bool{}
		for _, hh := range v.Hosts {
			if hh.Alive {
				alive[hh.Name] = true
			}
		}
		for _, n := range want {
			if !alive[n] {
				return false, fmt.Sprintf("%s not alive in %+v", n, v.Hosts)
			}
		}
		return v.Leader != "", fmt.Sprintf("leader %q", v.Leader)
	})
	// Every live host takes its share of .any.
	waitFor(c.t, waitTimeout, "every live host consuming "+control.AnyQueue(c.sys), func() (bool, string) {
		q, err := c.admin.InspectQueue(control.AnyQueue(c.sys))
		if err != nil {
			return false, err.Error()
		}
		return q.Consumers == len(c.live()), fmt.Sprintf("%d consumers, %d hosts", q.Consumers, len(c.live()))
	})
}

// reply is a control reply.
type reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *control.Error  `json:"error"`
	at     time.Time
}

func (r reply) String() string {
	if r.OK {
		return string(r.Result)
	}
	return fmt.Sprintf("error %v", r.Error)
}

// start decodes a start's result.
func (r reply) start() api.StartResult {
	var s api.StartResult
	_ = json.Unmarshal(r.Result, &s)
	return s
}

func (c *cluster) dispatch(d <-chan amqp.Delivery) {
	for m := range d {
		var r reply
		if err := json.Unmarshal(m.Body, &r); err != nil {
			continue
		}
		r.at = time.Now()
		c.repMu.Lock()
		ch := c.waiting[m.CorrelationId]
		c.repMu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default:
			}
		}
	}
}

// send publishes req (a control payload) with the routing key and returns
// a channel that gets its reply.
func (c *cluster) send(key string, req map[string]any) <-chan reply {
	c.t.Helper()
	id := fmt.Sprintf("%s-%d", c.sys, c.corr.Add(1))
	ch := make(chan reply, 4)
	c.repMu.Lock()
	c.waiting[id] = ch
	c.repMu.Unlock()
	body, err := json.Marshal(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.admin.Publish(control.ControlExchange, key, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent,
		ReplyTo: c.replyQueue, CorrelationId: id, Body: body,
	})
	return ch
}

// await returns the reply from ch, failing the test after d.
func (c *cluster) await(ch <-chan reply, d time.Duration, what string) reply {
	c.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		c.t.Fatalf("no reply to %s within %s", what, d)
	}
	return reply{}
}

// request sends req to key and waits for its reply.
func (c *cluster) request(key string, req map[string]any) reply {
	c.t.Helper()
	return c.await(c.send(key, req), waitTimeout, fmt.Sprintf("%v to %s", req["operation"], key))
}

// anyKey is the system's ".any" routing key; hostKey a host's own.
func (c *cluster) anyKey() string          { return control.AnyKey(c.sys) }
func (c *cluster) hostKey(h string) string { return control.HostKey(c.sys, h) }

// startReq is a start of a hello worker.
func startReq(name string) map[string]any {
	return map[string]any{
		"operation":     control.OpStartWorker,
		"worker_name":   name,
		"worker_class":  "hello",
		"worker_config": map[string]any{"interval": "1h", "name": name},
	}
}

// PublishStart publishes a start of the hello worker name to ".any".
func (c *cluster) PublishStart(name string) <-chan reply {
	c.t.Helper()
	return c.send(c.anyKey(), startReq(name))
}

// startAll starts the names through ".any", one publish each, and fails
// the test unless each is answered started and running.
func (c *cluster) startAll(names []string) {
	c.t.Helper()
	chs := make([]<-chan reply, len(names))
	for i, n := range names {
		chs[i] = c.PublishStart(n)
	}
	for i, n := range names {
		r := c.await(chs[i], waitTimeout, "start of "+n)
		s := r.start()
		if !r.OK || s.Action != "started" || s.State != "running" || s.Host == "" {
			c.t.Fatalf("start of %s through .any: %s, want started, running, with its host", n, r)
		}
	}
}

// names returns n worker names with prefix.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// revision is etcd's current revision.
func (c *cluster) revision() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.etcdc.Get(ctx, "revision-probe")
	if err != nil {
		c.t.Fatalf("reading etcd's revision: %v", err)
	}
	return r.Header.Revision
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// procChildren returns the live child processes of pid.
func procChildren(pid int) map[int]bool {
	kids, _ := monitor.Children(pid)
	out := map[int]bool{}
	for _, k := range kids {
		out[k.Pid] = true
	}
	return out
}
