package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/daemon"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/host/internal/web"
)

// waitTimeout bounds every wait, generous for a loaded CI machine running
// -race.
const waitTimeout = 60 * time.Second

// screenshotEnv, set to 1, makes TestDashboardInChromium write its
// screenshot to docs/dashboard.png.
const screenshotEnv = "DYNWORKERS_UPDATE_SCREENSHOT"

func TestMain(m *testing.M) {
	code := m.Run()
	testplugins.Cleanup()
	os.Exit(code)
}

// chromium returns the path of the Chromium binary (CHROMIUM, else chromium
// or chromium-browser on PATH, else /usr/bin/chromium). Without one the test
// is skipped, or fails when CI is set: scripts/ensure-chromium.sh installs
// it there.
func chromium(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "no Chromium found (set CHROMIUM, or run scripts/ensure-chromium.sh: apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// testHost is a real host, with real plugin processes, run in this process.
type testHost struct {
	t    *testing.T
	d    *daemon.Daemon
	logs *syncBuffer
	dir  string // the host's config, plugin and state directory

	mu      sync.Mutex
	started map[string]int // last pid of each worker's started events
	changed chan struct{}  // closed and replaced when started changes
}

// startHost writes a config with body under a host block (with token as
// http_token when set) into a temporary directory, loads it and runs it.
// The chaos and smpp test plugins are in its plugin directory.
func startHost(t *testing.T, token, body string) *testHost {
	t.Helper()
	built := testplugins.Build(t, "chaos", "smpp")
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"chaos", "smpp"} {
		testplugins.Copy(t, filepath.Join(built, name), filepath.Join(plugins, name))
	}
	tok := ""
	if token != "" {
		tok = fmt.Sprintf("  http_token = %q\n", token)
	}
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = \"web-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n%s}\n%s\n", tok, body)
	cfgPath := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &testHost{t: t, logs: &syncBuffer{}, dir: dir, started: map[string]int{}, changed: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", h.logs.String())
		}
	})
	d, err := daemon.Load(context.Background(), daemon.Options{
		ConfigPath: cfgPath,
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: h.logs}),
		EventHook: func(ev supervise.Event) {
			e, ok := ev.(supervise.ChildStarted)
			if !ok {
				return
			}
			if p := daemon.ProcessOf(e.Instance); p != nil {
				h.mu.Lock()
				h.started[e.Child] = p.Pid()
				close(h.changed)
				h.changed = make(chan struct{})
				h.mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of cancel", waitTimeout)
		}
	})
	return h
}

// waitStarted waits until each worker has started and returns their pids.
// A started event comes after Run started the HTTP API, so HTTPAddr may be
// read once it returns.
func (h *testHost) waitStarted(workers ...string) map[string]int {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		pids, changed := map[string]int{}, h.changed
		for _, w := range workers {
			if pid, ok := h.started[w]; ok {
				pids[w] = pid
			}
		}
		h.mu.Unlock()
		if len(pids) == len(workers) {
			return pids
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("workers did not all start within %s: started %v of %q; status: %+v", waitTimeout, pids, workers, h.d.Workers())
		}
	}
}

func (h *testHost) pid(worker string) int {
	h.t.Helper()
	ws, ok := h.d.Worker(worker)
	if !ok {
		h.t.Fatalf("no worker %q", worker)
	}
	return ws.Pid
}

// dashboardURL returns where the browser finds the dashboard. When the
// host's own HTTP server serves it at / (once the daemon passes web.Handler
// as httpapi.Options.UI), that is the host's address, and the test covers
// the real wiring. Until then it is an httptest server that serves
// web.Handler() for / and /ui/ and proxies /v1/ to the host's API, which is
// what httpapi does with Options.UI; so the test runs either way.
func (h *testHost) dashboardURL() string {
	h.t.Helper()
	addr := h.d.HTTPAddr()
	if addr == "" {
		h.t.Fatal("the host's HTTP API does not listen")
	}
	api := &url.URL{Scheme: "http", Host: addr}
	resp, err := http.Get(api.String() + "/")
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		h.t.Logf("the host serves the dashboard itself at %s", api)
		return api.String() + "/"
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/v1/", httputil.NewSingleHostReverseProxy(api))
	srv := httptest.NewServer(mux)
	h.t.Cleanup(srv.Close)
	h.t.Logf("the host does not serve the dashboard (yet): web.Handler() at %s in front of the API at %s", srv.URL, api)
	return srv.URL + "/"
}

// browser is a headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // exceptions and CSP violations of the page
}

// newBrowser starts headless Chromium, with the flags this machine's closed
// network needs and a fresh profile directory (chromedp makes one and
// removes it), and opens a tab. Chromium gets a $TMPDIR of its own, removed
// once it is gone: killed, it leaves its own temporary directories
// (org.chromium.Chromium.*) behind.
func newBrowser(t *testing.T, exe string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	tmp, err := os.MkdirTemp("", "chromium-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the browser is closed below.
	t.Cleanup(func() { removeAllRetry(t, tmp) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Env("TMPDIR="+tmp),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1360, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	// The first Run starts the browser; it must not have a deadline.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium %s: %v", exe, err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("the page reported: %s", p)
		}
	})
	return b
}

// removeAllRetry removes dir, trying again for a few seconds while the
// last of a killed Chromium's processes may still write in it (chromedp's
// cancel waits for the browser and kills its leftovers, but a file may
// still appear while RemoveAll walks the directory).
func removeAllRetry(t *testing.T, dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("removing Chromium's temporary directory: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do runs actions within waitTimeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.pageText())
	}
}

// eval evaluates the JavaScript function fn with args (JSON-encoded) and
// decodes its result into T.
func eval[T any](b *browser, fn string, args ...any) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](call(fn, args...)))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", fn, err)
	}
	return v
}

// waitFor waits until the JavaScript function fn, called with args, returns
// a truthy value, and returns that value.
func waitFor[T any](b *browser, what, fn string, args ...any) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](call(fn, args...),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		b.t.Fatalf("waiting until %s: %v\npage text:\n%s", what, err, b.pageText())
	}
	return v
}

func call(fn string, args ...any) string {
	enc, err := json.Marshal(args)
	if err != nil {
		panic(err)
	}
	if args == nil {
		enc = []byte("[]")
	}
	return fmt.Sprintf("(%s)(...%s)", fn, enc)
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// JavaScript run in the page. rowOf finds a worker's row by its exact name,
// whatever characters the name holds.
const (
	rowOf = `(name) => [...document.querySelectorAll("tr.worker")].find((r) => r.dataset.worker === name)`

	jsRowsRunning = `(names) => {
		const rowOf = ` + rowOf + `;
		return names.every((n) => {
			const r = rowOf(n);
			return r && r.querySelector(".w-name").textContent === n &&
				r.querySelector(".badge").textContent === "running" && /^[0-9]+$/.test(r.querySelector("td.pid").textContent);
		});
	}`
	jsPid    = `(name) => { const r = (` + rowOf + `)(name); return r ? r.querySelector("td.pid").textContent : ""; }`
	jsState  = `(name) => { const r = (` + rowOf + `)(name); return r ? r.querySelector(".badge").textContent : ""; }`
	jsNewPid = `(name, old) => {
		const r = (` + rowOf + `)(name);
		const pid = r ? r.querySelector("td.pid").textContent : "";
		return /^[0-9]+$/.test(pid) && pid !== old && r.querySelector(".badge").textContent === "running" ? pid : "";
	}`
	// jsEvents lists the events shown as "event worker details".
	jsEvents = `() => [...document.querySelectorAll("#events tr.event")].map((r) =>
		[r.dataset.event, r.querySelector(".ev-worker").textContent, r.querySelector(".ev-details").textContent].join(" "))`
	jsHasEvent = `(prefix) => [...document.querySelectorAll("#events tr.event")].some((r) =>
		[r.dataset.event, r.querySelector(".ev-worker").textContent, r.querySelector(".ev-details").textContent].join(" ").startsWith(prefix))`
	jsSparkPoints = `(name) => {
		const r = (` + rowOf + `)(name);
		const pts = r ? r.querySelector(".rss polyline").getAttribute("points") : "";
		return pts ? pts.split(" ").length : 0;
	}`
)

// The workers of TestDashboardInChromium's host: what the screenshot in
// docs/ shows.
const dashboardConfig = `
supervisor "root" {
  intensity = 50
  period    = "1m"

  worker "greeter" {
    class = "chaos"
  }
  worker "SMPP Transport for account1" {
    class = "vumi.workers.smpp.transport.SMPPTransport"
    config {
      host     = "smsc.example.net"
      port     = 2773
      username = "account1"
      password = "hunter2-must-not-show"
    }
  }
  worker "nightly-report" {
    class   = "chaos"
    restart = "temporary"
    config {
      mode  = "exit_clean"
      delay = "500ms"
    }
  }
  worker "flaky" {
    class = "chaos"
    backoff {
      initial = "2s"
      max     = "30s"
    }
    config {
      mode  = "exit"
      code  = 3
      delay = "2s"
    }
  }
  worker "billing-sync" {
    class = "chaos"
    config {
      mode      = "start_error"
      permanent = true
      message   = "the billing database is not configured"
    }
  }

  supervisor "campaign-a" {
    strategy  = "one_for_all"
    intensity = 3
    period    = "30s"

    worker "a1" {
      class = "chaos"
    }
    worker "a2" {
      class = "chaos"
    }
  }
}
`

// TestDashboardInChromium runs a real host with real plugin processes and
// drives the dashboard in headless Chromium: it lists the running workers,
// a click on restart changes the pid shown to the new process's, the events
// show the restart, the start form starts a worker whose name would be HTML
// and shows an API error, stop removes it, and no secret is in the page.
func TestDashboardInChromium(t *testing.T) {
	exe := chromium(t)
	h := startHost(t, "", dashboardConfig)
	running := []string{"greeter", "SMPP Transport for account1", "a1", "a2"}
	pids := h.waitStarted(running...)
	dash := h.dashboardURL()
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(dash))

	// The page lists the running workers, with their pids.
	waitFor[bool](b, "the page lists the running workers", jsRowsRunning, running)
	for _, w := range running {
		if got, want := eval[string](b, jsPid, w), fmt.Sprint(pids[w]); got != want {
			t.Errorf("pid shown for %q: %s, want %s", w, got, want)
		}
	}
	waitFor[bool](b, "billing-sync shows failed", `(n) => (`+jsState+`)(n) === "failed"`, "billing-sync")
	waitFor[bool](b, "nightly-report shows exited", `(n) => (`+jsState+`)(n) === "exited"`, "nightly-report")
	if title := eval[string](b, `() => document.title`); title != "dynworkers · web-host" {
		t.Errorf("title %q", title)
	}

	// A click on restart: the pid shown changes to the new process's.
	oldPid := eval[string](b, jsPid, "greeter")
	b.do("clicking restart", chromedp.Click(chromedp.CSS(`tr.worker[data-worker="greeter"] button.restart`)))
	newPid := waitFor[string](b, "the pid of greeter changes", jsNewPid, "greeter", oldPid)
	if want := fmt.Sprint(h.pid("greeter")); newPid != want {
		t.Errorf("after restart the page shows pid %s, the host says %s", newPid, want)
	}
	if newPid == fmt.Sprint(pids["greeter"]) {
		t.Errorf("the pid did not change: %s", newPid)
	}
	// The events list shows the restart: the stop of the old process and
	// the start of the new one, newest first.
	waitFor[bool](b, "the events show greeter started with its new pid", jsHasEvent, "worker_started greeter pid "+newPid)
	events := eval[[]string](b, jsEvents)
	stopped, started := -1, -1
	for i, e := range events {
		switch {
		case started < 0 && strings.HasPrefix(e, "worker_started greeter pid "+newPid):
			started = i
		case stopped < 0 && (strings.HasPrefix(e, "worker_stopped greeter") || strings.HasPrefix(e, "worker_restarting greeter")):
			stopped = i
		}
	}
	if started < 0 || stopped < 0 || started > stopped {
		t.Errorf("the events do not show the restart of greeter, newest first:\n%s", strings.Join(events, "\n"))
	}

	// An automatic restart shows too: flaky exits with status 3 after 2 s.
	waitFor[bool](b, "the events show flaky restarting", jsHasEvent, "worker_restarting flaky")
	waitFor[bool](b, "flaky shows its last exit", `(n) => { const r = (`+rowOf+`)(n); return r && /exit status 3/.test(r.querySelector("td.last-exit").textContent); }`, "flaky")

	// The warm spares the restarts refilled are shown among the host's
	// facts, by binary, and none of their pids is a worker's.
	spares := waitFor[string](b, "the page shows the warm spares", `() => {
		const f = [...document.querySelectorAll("#facts .fact")].find((f) => f.querySelector("dt").textContent === "warm spares");
		const v = f && f.querySelector("dd").textContent;
		return v && /^(?:(?:chaos|smpp) [0-9]+ \(pid [0-9, ]+\)(?:; |$))+$/.test(v) ? v : "";
	}`)
	workerPids := map[string]bool{}
	for _, w := range eval[[]string](b, `() => [...document.querySelectorAll("tr.worker td.pid")].map((e) => e.textContent)`) {
		workerPids[w] = true
	}
	for _, m := range regexp.MustCompile(`[0-9]+`).FindAllString(spares[strings.Index(spares, "(pid"):], -1) {
		if workerPids[m] {
			t.Errorf("the warm spares shown (%s) include pid %s, which the page shows as a worker's", spares, m)
		}
	}

	// No secret in the page: the config shows the password redacted.
	b.do("opening the SMPP config",
		chromedp.Evaluate[chromedp.Void](`(`+rowOf+`)("SMPP Transport for account1").querySelector("details").open = true`))
	html := eval[string](b, `() => document.documentElement.outerHTML`)
	if strings.Contains(html, "hunter2-must-not-show") {
		t.Error("the page holds the password")
	}
	if !strings.Contains(html, `"password": "(sensitive)"`) || !strings.Contains(html, `"host": "smsc.example.net"`) {
		t.Error("the page does not show the SMPP worker's redacted config")
	}

	// The screenshot, with some samples in the sparklines (more for the one
	// in docs/).
	samples := 2
	if os.Getenv(screenshotEnv) == "1" {
		samples = 30
	}
	waitFor[bool](b, fmt.Sprintf("the sparklines have %d samples", samples), `(n, k) => (`+jsSparkPoints+`)(n) >= k`, "greeter", samples)
	b.do("hiding the notice", chromedp.Evaluate[chromedp.Void](`document.getElementById("notice").hidden = true`))
	shot := screenshot(b)
	if os.Getenv(screenshotEnv) == "1" {
		path := filepath.Join("..", "..", "..", "docs", "dashboard.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(shot))
	}

	// The start form: an API error is shown, then a worker whose name would
	// be markup starts and is listed by its name, as text.
	const odd = `a3 <img src=x onerror="document.title='pwned'"> & "quoted"`
	b.do("filling the start form with an unknown class",
		chromedp.SendKeys(chromedp.ID("start-name"), odd),
		chromedp.SendKeys(chromedp.ID("start-class"), "no-such-class"),
		chromedp.Click(chromedp.ID("start-submit")))
	msg := waitFor[string](b, "the start error is shown", `() => { const e = document.getElementById("start-error"); return !e.hidden && e.textContent; }`)
	if !strings.Contains(msg, "unknown_class") || !strings.Contains(msg, "no-such-class") {
		t.Errorf("start error shown: %q", msg)
	}
	b.do("starting a worker from the form",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("start-class").value = ""; document.getElementById("start-config").value = ""`),
		chromedp.SendKeys(chromedp.ID("start-class"), "chaos"),
		chromedp.SendKeys(chromedp.ID("start-config"), `{"mode": "run", "message": "hello"}`),
		chromedp.Click(chromedp.ID("start-submit")))
	waitFor[bool](b, "the odd worker is listed by its name", jsRowsRunning, []string{odd})
	if n := eval[int](b, `() => document.querySelectorAll("img").length`); n != 0 {
		t.Errorf("a worker's name became %d img elements", n)
	}
	if title := eval[string](b, `() => document.title`); title == "pwned" {
		t.Error("a worker's name ran as script")
	}
	if got, want := eval[string](b, jsPid, odd), fmt.Sprint(h.pid(odd)); got != want {
		t.Errorf("pid shown for the started worker: %s, want %s", got, want)
	}

	// Stop: the dynamic worker is forgotten and leaves the page.
	b.do("clicking stop",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Evaluate[chromedp.Void](`(`+rowOf+`)(`+string(mustJSON(odd))+`).querySelector("button.stop").click()`))
	waitFor[bool](b, "the stopped worker leaves the page", `(n) => !(`+rowOf+`)(n)`, odd)
	if _, ok := h.d.Worker(odd); ok {
		t.Errorf("the host still has %q after stop", odd)
	}
}

// workerDetails is a worker's details line as the page shows it.
type workerDetails struct {
	Shown  bool     `json:"shown"`  // the line is displayed
	Text   string   `json:"text"`   // its text as rendered (innerText, trimmed)
	Pairs  []string `json:"pairs"`  // each key=value
	Titles []string `json:"titles"` // each pair's title (a cut value whole)
	Error  string   `json:"error"`  // the details_error line, when shown
}

// jsDetails reads a worker's details line.
const jsDetails = `(name) => {
	const r = [...document.querySelectorAll("tr.worker-details")].find((r) => r.dataset.detailsOf === name);
	if (!r) return { shown: false, text: "", pairs: [], titles: [], error: "" };
	const err = r.querySelector(".details-error");
	const kv = [...r.querySelectorAll(".kv")];
	return {
		shown: !r.hidden && r.getClientRects().length > 0,
		text: r.innerText.trim(),
		pairs: kv.map((e) => e.textContent),
		titles: kv.map((e) => e.title),
		error: err && !err.hidden ? err.textContent : "",
	};
}`

// TestDashboardShowsWorkerDetails runs a real host whose workers report
// details (chaos: its mode and pid; smpp: its config, with markup in it)
// or hang in Status, and checks that the page shows each worker's details
// under its row, as text, follows a restart's new pid, shows why details
// are missing, and holds no secret.
func TestDashboardShowsWorkerDetails(t *testing.T) {
	exe := chromium(t)
	const secret = "details-secret-must-not-show"
	const markupHost = `<img src=x onerror="document.title='pwned'">`
	const markupUser = `<b>bold</b> & co`
	h := startHost(t, "", `
worker "plain" {
  class = "chaos"
}
worker "mute" {
  class = "chaos"
  config {
    hang_status = true
  }
}
worker "markup" {
  class = "smpp"
  config {
    host     = "<img src=x onerror=\"document.title='pwned'\">"
    username = "<b>bold</b> & co"
    password = "`+secret+`"
  }
}
`)
	pids := h.waitStarted("plain", "mute", "markup")
	dash := h.dashboardURL()
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(dash))
	waitFor[bool](b, "the page lists the workers", jsRowsRunning, []string{"plain", "mute", "markup"})

	// chaos reports its mode and pid (and a count of health checks, which
	// moves): shown on the line under its row, sorted by key.
	want := []string{"mode=run", fmt.Sprintf("pid=%d", pids["plain"])}
	waitFor[bool](b, "plain shows its details", `(n, want) => { const d = (`+jsDetails+`)(n); return d.shown && d.pairs.filter(p => !p.startsWith("health_checks=")).join(" ") === want.join(" "); }`, "plain", want)
	if d := eval[workerDetails](b, jsDetails, "plain"); !regexp.MustCompile(`^health_checks=\d+ `+strings.Join(want, " ")+`$`).MatchString(d.Text) || d.Error != "" {
		t.Errorf("plain's details line reads %q (error %q), want health_checks=N %q", d.Text, d.Error, strings.Join(want, " "))
	}

	// A worker whose Status hangs: why there are no details, and none. (The
	// reason is the host's: usually that the worker did not answer in
	// time, sometimes the cancelled call's own error.)
	waitFor[bool](b, "mute shows why it has no details", `(n) => { const d = (`+jsDetails+`)(n); return d.shown && d.error !== ""; }`, "mute")
	if d := eval[workerDetails](b, jsDetails, "mute"); len(d.Pairs) != 0 || !strings.HasPrefix(d.Error, "details: ") || len(d.Error) <= len("details: ") {
		t.Errorf("mute: pairs %q, error %q", d.Pairs, d.Error)
	}

	// Markup in a worker's details is text; the password is scrubbed.
	waitFor[bool](b, "markup shows its details", `(n) => (`+jsDetails+`)(n).pairs.length > 0`, "markup")
	d := eval[workerDetails](b, jsDetails, "markup")
	shown := map[string]string{}
	for i, p := range d.Pairs {
		k, v, _ := strings.Cut(p, "=")
		if d.Titles[i] != "" {
			v = d.Titles[i] // cut short on the line; whole in the title
		}
		shown[k] = v
	}
	if shown["host"] != markupHost || shown["username"] != markupUser || shown["pid"] != fmt.Sprint(pids["markup"]) ||
		shown["bind"] != "smpp://"+markupUser+":(sensitive)@"+markupHost {
		t.Errorf("markup's details as shown: %q", shown)
	}
	if n := eval[int](b, `() => document.querySelectorAll("img, tr.worker-details b").length`); n != 0 {
		t.Errorf("a worker's details became %d elements", n)
	}
	if title := eval[string](b, `() => document.title`); title == "pwned" {
		t.Error("a worker's details ran as script")
	}
	if html := eval[string](b, `() => document.documentElement.outerHTML`); strings.Contains(html, secret) {
		t.Error("the page holds the password")
	}

	// A restart: the details follow the new process.
	b.do("clicking restart", chromedp.Click(chromedp.CSS(`tr.worker[data-worker="plain"] button.restart`)))
	newPid := waitFor[string](b, "the pid of plain changes", jsNewPid, "plain", fmt.Sprint(pids["plain"]))
	waitFor[bool](b, "plain's details show the new pid", `(n, pid) => (`+jsDetails+`)(n).pairs.includes("pid=" + pid)`, "plain", newPid)
}

// TestDashboardAsksForTheToken runs a host with an http_token: the page
// shows the token form and nothing else, a wrong token is refused, and
// after the right one it lists the workers; the token stays out of the
// page.
func TestDashboardAsksForTheToken(t *testing.T) {
	exe := chromium(t)
	const token = "dashboard-test-token-0123456789"
	h := startHost(t, token, `
worker "greeter" {
  class = "chaos"
}
`)
	pids := h.waitStarted("greeter")
	dash := h.dashboardURL()
	b := newBrowser(t, exe)
	b.do("opening the dashboard", chromedp.Navigate(dash))

	waitFor[bool](b, "the token form is shown", `() => !document.getElementById("login").hidden && document.getElementById("dash").hidden`)
	if n := eval[int](b, `() => document.querySelectorAll("tr.worker").length`); n != 0 {
		t.Errorf("%d workers shown without the token", n)
	}

	b.do("entering a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token-at-all-0000"),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)))
	msg := waitFor[string](b, "the wrong token is refused", `() => { const e = document.getElementById("login-error"); return !e.hidden && e.textContent; }`)
	if !strings.Contains(msg, "wrong bearer token") {
		t.Errorf("error shown for a wrong token: %q", msg)
	}

	b.do("entering the token",
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)))
	waitFor[bool](b, "the page lists the workers", jsRowsRunning, []string{"greeter"})
	if got, want := eval[string](b, jsPid, "greeter"), fmt.Sprint(pids["greeter"]); got != want {
		t.Errorf("pid shown: %s, want %s", got, want)
	}
	if kept := eval[string](b, `() => sessionStorage.getItem("dynworkers.token") || ""`); kept != token {
		t.Errorf("sessionStorage holds %q", kept)
	}
	if html := eval[string](b, `() => document.documentElement.outerHTML + document.getElementById("token").value`); strings.Contains(html, token) {
		t.Error("the page holds the token")
	}
	// Actions send the token too.
	b.do("clicking restart", chromedp.Click(chromedp.CSS(`tr.worker[data-worker="greeter"] button.restart`)))
	newPid := waitFor[string](b, "the pid of greeter changes", jsNewPid, "greeter", fmt.Sprint(pids["greeter"]))
	if want := fmt.Sprint(h.pid("greeter")); newPid != want {
		t.Errorf("after restart the page shows pid %s, the host says %s", newPid, want)
	}
}

func screenshot(b *browser) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")) {
		b.t.Fatalf("the screenshot is not a PNG (%d bytes)", len(shot))
	}
	return shot
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// syncBuffer keeps the host's log; it is printed when the test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
