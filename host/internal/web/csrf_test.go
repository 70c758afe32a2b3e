package web_test

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// attackPage is a page of another origin that, once loaded, sends the API
// at api everything a page can send without the API's consent: forms
// (text/plain, crafted so that the body is valid JSON, and urlencoded)
// into hidden frames, fetches in no-cors mode, and a CORS fetch with the
// API's custom header (which needs a preflight).
func attackPage(api string) string {
	textForm := func(id, path, jsonPrefix string) string {
		// A text/plain form body is name=value: the name holds the JSON up
		// to a string that the "=" and the value close.
		return fmt.Sprintf(`<form id=%q method=POST enctype="text/plain" target="f-%s" action="%s%s"><input name="%s" value='"}'></form><iframe name="f-%s"></iframe>`,
			id, id, api, path, html.EscapeString(jsonPrefix), id)
	}
	return `<!doctype html><html><body>` +
		textForm("text-start", "/v1/workers", `{"name":"csrf-text","class":"chaos","request_id":"`) +
		textForm("text-control", "/v1/control", `{"operation":"vumi_worker","worker_name":"csrf-control","worker_class":"chaos","request_id":"`) +
		fmt.Sprintf(`<form id="url-start" method=POST target="f-url-start" action="%s/v1/workers"><input name=name value=csrf-form><input name=class value=chaos></form><iframe name="f-url-start"></iframe>`, api) +
		fmt.Sprintf(`<form id="url-restart" method=POST target="f-url-restart" action="%s/v1/workers/greeter/restart"></form><iframe name="f-url-restart"></iframe>`, api) +
		`<script>
const api = ` + fmt.Sprintf("%q", api) + `;
window.results = {};
window.answered = 0; // form answers loaded in their frames
for (const id of ["text-start", "text-control", "url-start", "url-restart"]) {
	document.querySelector('iframe[name="f-' + id + '"]').onload = () => { window.answered++; };
	document.getElementById(id).submit();
}
fetch(api + "/v1/workers", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
	body: JSON.stringify({name: "csrf-fetch", class: "chaos"})})
	.then(() => { window.results.noCors = "sent"; }, (e) => { window.results.noCors = "error " + e; });
fetch(api + "/v1/workers/greeter/restart", {method: "POST", mode: "no-cors"})
	.then(() => { window.results.noCorsRestart = "sent"; }, (e) => { window.results.noCorsRestart = "error " + e; });
fetch(api + "/v1/workers", {method: "POST", headers: {"Content-Type": "application/json", "X-Dynworkers-Request": "1"},
	body: JSON.stringify({name: "csrf-cors", class: "chaos"})})
	.then((r) => { window.results.cors = "answered " + r.status; }, (e) => { window.results.cors = "error " + e; });
</script></body></html>`
}

// TestCrossOriginFormsDoNothing runs a real host without a token (the
// loopback default) and, in headless Chromium, a page of another origin
// that posts forms and fetches to its API: nothing is started, restarted or
// persisted, and the host answered and logged each POST 403. Then a page
// reached through a name rebound to 127.0.0.1 (DNS rebinding, simulated
// with Chromium's host resolver rules) is same-origin with the API in the
// browser's eyes, and is refused by the Host check.
func TestCrossOriginFormsDoNothing(t *testing.T) {
	exe := chromium(t)
	h := startHost(t, "", `
worker "greeter" {
  class = "chaos"
}
`)
	pids := h.waitStarted("greeter")
	addr := h.d.HTTPAddr()
	api := "http://" + addr
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, attackPage(api))
	}))
	t.Cleanup(evil.Close)

	b := newBrowser(t, exe, chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1"))
	b.do("opening the attacker's page", chromedp.Navigate(evil.URL))
	results := waitFor[map[string]string](b, "the host answered the forms and the page's fetches settled",
		`() => { const r = window.results; return window.answered >= 4 && r && r.noCors && r.noCorsRestart && r.cors ? r : null; }`)
	t.Logf("the page's fetches: %v", results)
	if !strings.HasPrefix(results["cors"], "error") {
		t.Errorf("the CORS fetch with the custom header was let through: %s", results["cors"])
	}

	// Six POSTs reached the host (four forms, two no-cors fetches; the
	// CORS fetch stopped at its preflight), and were answered: each was
	// refused 403, and logged with the reason.
	refusals := 0
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, "http request refused") && strings.Contains(l, "method=POST") {
			refusals++
			if !strings.Contains(l, "status=403") {
				t.Errorf("a POST was not refused 403: %s", l)
			}
		}
	}
	if refusals != 6 {
		t.Errorf("%d POSTs refused, want 6", refusals)
	}
	ws := h.d.Workers()
	if len(ws) != 1 || ws[0].Name != "greeter" {
		t.Errorf("the host's workers: %+v, want greeter alone", ws)
	}
	if got := h.pid("greeter"); got != pids["greeter"] {
		t.Errorf("greeter was restarted: pid %d, was %d", got, pids["greeter"])
	}
	stateFile := filepath.Join(h.dir, "var", "workers.json")
	if b, err := os.ReadFile(stateFile); err == nil && strings.Contains(string(b), "csrf") {
		t.Errorf("the state file holds a worker of the attack:\n%s", b)
	}

	// DNS rebinding: rebind.test resolves to 127.0.0.1, so a page of
	// rebind.test at the API's port is the API's own origin; the Host
	// header still says rebind.test.
	_, port, _ := net.SplitHostPort(addr)
	b.do("opening the API under a rebound name", chromedp.Navigate("http://rebind.test:"+port+"/"))
	if text := b.pageText(); !strings.Contains(text, "forbidden") || !strings.Contains(text, "DNS rebinding") {
		t.Errorf("the dashboard under a rebound name shows:\n%s", text)
	}
	b.do("posting from the rebound origin", chromedp.Evaluate[chromedp.Void](`fetch("/v1/workers", {method: "POST",
		headers: {"Content-Type": "application/json", "X-Dynworkers-Request": "1"},
		body: JSON.stringify({name: "csrf-rebind", class: "chaos"})}).then((r) => { window.rebind = r.status; }, (e) => { window.rebind = String(e); })`))
	if got := waitFor[any](b, "the rebound POST was answered", `() => window.rebind`); fmt.Sprint(got) != "403" {
		t.Errorf("the POST from the rebound origin was answered %v, want 403", got)
	}
	if _, ok := h.d.Worker("csrf-rebind"); ok {
		t.Error("the rebound page started a worker")
	}
	// The dashboard itself, at the host's own address, still works.
	b.do("opening the dashboard", chromedp.Navigate(api+"/"))
	waitFor[bool](b, "the dashboard lists greeter", jsRowsRunning, []string{"greeter"})
}
