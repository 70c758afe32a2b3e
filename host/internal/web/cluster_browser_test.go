package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/web"
)

// clusterHost is a control.Host that implements control.ClusterHost, as
// the daemon does: with view nil it answers as a host without a cluster
// block (conflict). It counts the calls of each operation.
type clusterHost struct {
	control.Host // the operations the dashboard does not use: nil, never called
	view         *api.ClusterView

	mu     sync.Mutex
	calls  map[string]int
	drains []string
	starts []control.WorkerSpec
}

func (h *clusterHost) count(op string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls == nil {
		h.calls = map[string]int{}
	}
	h.calls[op]++
}

func (h *clusterHost) called(op string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

func (h *clusterHost) Status(context.Context) (api.Status, error) {
	h.count(control.OpStatus)
	return api.Status{SystemID: "prod", Host: "host-a", Started: time.Now().Add(-time.Hour),
		Supervisors: []api.Supervisor{}, Workers: []api.Worker{}}, nil
}

func (h *clusterHost) Classes(context.Context) (api.ClassList, error) {
	h.count(control.OpListClasses)
	return api.ClassList{}, nil
}

func (h *clusterHost) ClusterStatus(context.Context) (api.ClusterView, error) {
	h.count(control.OpClusterStatus)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.view == nil {
		return api.ClusterView{}, control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")
	}
	return *h.view, nil
}

// Drain marks the host draining in the view (or not), as a cluster does.
func (h *clusterHost) Drain(_ context.Context, host string, on bool) (api.DrainResult, error) {
	h.count(control.OpDrain)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.view == nil {
		return api.DrainResult{}, control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")
	}
	v := *h.view
	v.Hosts = append([]api.ClusterHost(nil), v.Hosts...)
	for i := range v.Hosts {
		if v.Hosts[i].Name == host {
			action := "undrained"
			if on {
				action = "draining"
			}
			v.Hosts[i].Draining = on
			h.view = &v
			h.drains = append(h.drains, action+" "+host)
			return api.DrainResult{Host: host, Action: action, Workers: []string{}}, nil
		}
	}
	return api.DrainResult{}, control.Errorf(control.CodeNotFound, "no host %q in the cluster", host)
}

// StartWorker records the spec and answers as a cluster start placed on
// host-b.
func (h *clusterHost) StartWorker(_ context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	h.count(control.OpStartWorker)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, spec)
	return api.StartResult{Worker: spec.Name, Action: "started", State: "running", Pid: 88, Host: "host-b"}, nil
}

// serveDashboard serves the real HTTP API, with the dashboard, in front of
// a real control.Dispatcher driving h.
func serveDashboard(t *testing.T, h control.Host) string {
	t.Helper()
	s := httpapi.New(httpapi.Options{Doer: control.NewDispatcher(h, nil), UI: web.Handler()})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// jsClusterRows reads the cluster tables as text, one line per row, the
// cells joined by " | ".
const jsClusterRows = `(which) => [...document.querySelectorAll("#cluster-" + which + " tr")].map((r) =>
	[...r.querySelectorAll("td")].map((td) => td.textContent).join(" | "))`

func TestDashboardClusterPage(t *testing.T) {
	exe := chromium(t)
	now := time.Now().UTC()
	view := &api.ClusterView{
		SystemID: "prod", Prefix: "/dynworkers/prod/", Leader: "host-a", From: "host-a", Revision: 17, ReadAt: now,
		Hosts: []api.ClusterHost{
			{Name: "host-a", Alive: true, Leader: true, Capacity: 10, Assigned: 2, Load: 2, Labels: map[string]string{"zone": "a", "disk": "ssd"}},
			{Name: "host-b", Alive: false, Draining: true, Capacity: 0, Assigned: 1, Load: 0},
		},
		Workers: []api.ClusterWorker{
			{Name: "sms-in", Class: "smpp", Host: "host-a", RunningOn: "host-a", State: "running", Pid: 4242,
				Since: now.Add(-3*time.Minute - 5*time.Second), Moves: 2},
			{Name: `<img src=x onerror="alert(1)">`, Class: "chaos", Host: "host-a", RunningOn: "host-b", State: "moving", Moves: 0},
			{Name: "zone-c", Class: "chaos", State: "pending", Pending: "no live host has the label zone=c"},
		},
	}
	h := &clusterHost{view: view}
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(serveDashboard(t, h)))

	waitFor[bool](b, "the cluster tables are shown", `() => document.querySelectorAll("#cluster-hosts tr").length === 2 &&
		document.querySelectorAll("#cluster-workers tr").length === 3 && !document.getElementById("cluster").hidden`)
	hosts := eval[[]string](b, jsClusterRows, "hosts")
	wantHosts := []string{
		"host-a | alive | no | yes | 10 | 2 | 2 | disk=ssd, zone=a | drain",
		"host-b | dead | draining | no | no limit | 1 | 0 | — | undrain",
	}
	if strings.Join(hosts, "\n") != strings.Join(wantHosts, "\n") {
		t.Errorf("hosts shown:\n%s\nwant:\n%s", strings.Join(hosts, "\n"), strings.Join(wantHosts, "\n"))
	}
	workers := eval[[]string](b, jsClusterRows, "workers")
	wantWorkers := []string{
		"sms-in | smpp | host-a | running | 4242 | 3m 05s | 2 | ",
		`<img src=x onerror="alert(1)"> | chaos | host-b → host-a | moving | — | — | 0 | `,
		"zone-c | chaos | — | pending | — | — | 0 | no live host has the label zone=c",
	}
	// "since" may have ticked a second or two under load.
	if len(workers) != 3 || !strings.HasPrefix(workers[0], "sms-in | smpp | host-a | running | 4242 | 3m 0") ||
		strings.Join(workers[1:], "\n") != strings.Join(wantWorkers[1:], "\n") {
		t.Errorf("workers shown:\n%s\nwant:\n%s", strings.Join(workers, "\n"), strings.Join(wantWorkers, "\n"))
	}
	summary := eval[string](b, `() => document.getElementById("cluster-summary").textContent`)
	if summary != "(prod · leader host-a · 1/2 hosts alive · 3 workers · read by host-a)" {
		t.Errorf("summary %q", summary)
	}
	if n := eval[int](b, `() => document.querySelectorAll("#cluster img").length`); n != 0 {
		t.Errorf("a worker's name became %d elements", n)
	}
	if !eval[bool](b, `() => document.getElementById("cluster-none").hidden`) {
		t.Error("the not-a-cluster line is shown too")
	}

	// The page follows the view: a worker that moved.
	h.mu.Lock()
	moved := *view
	moved.Workers = append([]api.ClusterWorker(nil), view.Workers...)
	moved.Workers[2] = api.ClusterWorker{Name: "zone-c", Class: "chaos", Host: "host-a", RunningOn: "host-a", State: "running", Pid: 77, Moves: 1,
		Since: time.Now().UTC()}
	h.view = &moved
	h.mu.Unlock()
	waitFor[bool](b, "zone-c runs on host-a", `() => { const r = document.querySelector('#cluster-workers tr[data-worker="zone-c"]');
		return r && r.querySelector(".c-where").textContent === "host-a" && r.querySelector(".c-state").textContent === "running" &&
			r.querySelector(".c-moves").textContent === "1" && r.querySelector(".c-pending").textContent === ""; }`)

	// Drain and undrain from the host rows.
	const jsHostRow = `(n) => { const r = document.querySelector('#cluster-hosts tr[data-host="' + n + '"]');
		return r ? r.querySelector(".c-draining").textContent + " " + r.querySelector("button.drain").textContent : ""; }`
	b.do("clicking drain on host-a",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`#cluster-hosts tr[data-host="host-a"] button.drain`)))
	waitFor[bool](b, "host-a shows draining", `() => (`+jsHostRow+`)("host-a") === "draining undrain"`)
	b.do("clicking undrain on host-b", chromedp.Click(chromedp.CSS(`#cluster-hosts tr[data-host="host-b"] button.drain`)))
	waitFor[bool](b, "host-b no longer drains", `() => (`+jsHostRow+`)("host-b") === "no drain"`)
	note := waitFor[string](b, "the notice", `() => { const n = document.getElementById("notice"); return !n.hidden && n.textContent; }`)
	h.mu.Lock()
	drains := strings.Join(h.drains, ", ")
	h.mu.Unlock()
	if drains != "draining host-a, undrained host-b" || !strings.Contains(note, "Undrained host-b") {
		t.Errorf("drains %q, notice %q", drains, note)
	}

	// A cluster start from the form, with constraints.
	if eval[bool](b, `() => document.getElementById("start-cluster-fields").hidden`) {
		t.Fatal("the form has no cluster fields on a host of a cluster")
	}
	b.do("starting a cluster worker from the form",
		chromedp.SendKeys(chromedp.ID("start-name"), "w-cluster"),
		chromedp.SendKeys(chromedp.ID("start-class"), "chaos"),
		chromedp.Click(chromedp.ID("start-cluster")),
		chromedp.SendKeys(chromedp.ID("start-constraints"), "zone=a, disk = ssd"),
		chromedp.Click(chromedp.ID("start-submit")))
	note = waitFor[string](b, "the start is reported", `() => { const n = document.getElementById("notice-text"); return n.textContent.startsWith("w-cluster") && n.textContent; }`)
	if note != "w-cluster: started on host-b, pid 88." {
		t.Errorf("notice %q", note)
	}
	h.mu.Lock()
	starts := append([]control.WorkerSpec(nil), h.starts...)
	h.mu.Unlock()
	if len(starts) != 1 || !starts[0].Cluster || starts[0].Name != "w-cluster" ||
		len(starts[0].Constraints) != 2 || starts[0].Constraints["zone"] != "a" || starts[0].Constraints["disk"] != "ssd" {
		t.Errorf("starts %+v", starts)
	}
}

func TestDashboardWithoutCluster(t *testing.T) {
	exe := chromium(t)
	h := &clusterHost{}
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(serveDashboard(t, h)))
	msg := waitFor[string](b, "the page says the host is not part of a cluster", `() => {
		const p = document.getElementById("cluster-none");
		return !document.getElementById("cluster").hidden && !p.hidden && p.textContent; }`)
	if msg != "This host is not part of a cluster." {
		t.Errorf("message %q", msg)
	}
	if !eval[bool](b, `() => document.getElementById("cluster-body").hidden`) {
		t.Error("the cluster tables are shown")
	}
	if !eval[bool](b, `() => document.getElementById("start-cluster-fields").hidden`) {
		t.Error("the start form offers a cluster start")
	}
	// The rest of the page works, and polls on without asking the host
	// about its cluster again at every poll (each refusal is a log line).
	before := h.called(control.OpStatus)
	deadline := time.Now().Add(waitTimeout)
	for h.called(control.OpStatus) < before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the page polled status %d times", h.called(control.OpStatus))
		}
		waitFor[bool](b, "a poll", `() => new Promise((ok) => setTimeout(() => ok(true), 200))`)
	}
	if n := h.called(control.OpClusterStatus); n != 1 {
		t.Errorf("cluster_status asked %d times over %d polls, want once", n, h.called(control.OpStatus))
	}
}

// TestDashboardClusterOnARealHost: a real host of a cluster on a real
// etcd; a cluster start from the page's form runs on it and the Cluster
// panel shows the host and the worker as etcd has them. NEEDS the cluster
// Store and Agent and the daemon's ClusterHost.
func TestDashboardClusterOnARealHost(t *testing.T) {
	exe := chromium(t)
	e := etcdtest.Start(t)
	h := startHost(t, "", fmt.Sprintf(`
cluster {
  endpoints   = [%q]
  max_workers = 5
  labels      = { zone = "a" }
}
`, e.Endpoint()))
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(h.dashboardURL()))
	waitFor[bool](b, "the host row", `() => { const r = document.querySelector('#cluster-hosts tr[data-host="web-host"]');
		return r && r.querySelector(".c-alive").textContent === "alive" && r.querySelector(".c-leader").textContent === "yes" &&
			r.querySelector(".c-capacity").textContent === "5" && r.querySelector(".c-labels").textContent === "zone=a"; }`)
	waitFor[bool](b, "the form offers a cluster start", `() => !document.getElementById("start-cluster-fields").hidden`)
	b.do("starting a cluster worker from the form",
		chromedp.SendKeys(chromedp.ID("start-name"), "cw"),
		chromedp.SendKeys(chromedp.ID("start-class"), "chaos"),
		chromedp.Click(chromedp.ID("start-cluster")),
		chromedp.SendKeys(chromedp.ID("start-constraints"), "zone=a"),
		chromedp.Click(chromedp.ID("start-submit")))
	pids := h.waitStarted("cw")
	row := waitFor[string](b, "the cluster worker's row", `(pid) => { const r = document.querySelector('#cluster-workers tr[data-worker="cw"]');
		const text = r ? [...r.querySelectorAll("td")].map((td) => td.textContent).join(" | ") : "";
		return r && r.querySelector(".c-state").textContent === "running" && r.querySelector(".c-pid").textContent === pid && text; }`,
		fmt.Sprint(pids["cw"]))
	if !strings.HasPrefix(row, "cw | chaos | web-host | running | "+fmt.Sprint(pids["cw"])+" | ") || !strings.HasSuffix(row, " | 0 | ") {
		t.Errorf("the worker's row: %q", row)
	}
	note := eval[string](b, `() => document.getElementById("notice-text").textContent`)
	if !strings.HasPrefix(note, "cw: started on web-host, pid ") {
		t.Errorf("notice %q", note)
	}
	// The worker is in the tree too, as a worker of this host.
	waitFor[bool](b, "cw in the tree", jsRowsRunning, []string{"cw"})
}
