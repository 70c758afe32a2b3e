package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/web"
)

// raw runs one request through a handler and returns the recorder, whatever
// its content type.
func raw(h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestUIIsServedWithoutTheToken(t *testing.T) {
	const token = "s3cret-token-0123456789"
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{OK: true, Result: map[string]string{"host": "h1"}}
	}}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
	s := New(Options{Doer: d, Token: token, UI: web.Handler(), Metrics: metrics,
		Events: func() []api.Event { return nil }})
	h := s.Handler()

	// The page and its files: no token needed, no Doer called.
	for path, ctype := range map[string]string{
		"/":                 "text/html; charset=utf-8",
		"/ui/dashboard.js":  "text/javascript; charset=utf-8",
		"/ui/dashboard.css": "text/css; charset=utf-8",
	} {
		for _, method := range []string{"GET", "HEAD"} {
			w := raw(h, method, path)
			if w.Code != 200 || w.Header().Get("Content-Type") != ctype {
				t.Errorf("%s %s without a token: %d %q", method, path, w.Code, w.Header().Get("Content-Type"))
			}
			if !strings.HasPrefix(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("%s %s: no Content-Security-Policy", method, path)
			}
		}
	}
	// A file the UI does not have is its 404, still without data.
	if w := raw(h, "GET", "/ui/nope.js"); w.Code != 404 {
		t.Errorf("GET /ui/nope.js: %d", w.Code)
	}
	if n := len(d.requests()); n != 0 {
		t.Fatalf("the UI paths called the Doer %d times", n)
	}

	// Everything else still needs the token, /v1 and /metrics first of all,
	// and neighbours of the open paths are not open.
	for _, path := range []string{"/v1/status", "/v1/events", "/v1/classes", "/metrics", "/ui", "/index.html",
		"/uix/dashboard.js", "/v1/nowhere"} {
		w, rep := serve(t, s, "GET", path, "")
		if w.Code != 401 || rep.Error == nil || rep.Error.Code != control.CodeUnauthorized {
			t.Errorf("GET %s without a token: %d %s", path, w.Code, w.Body)
		}
	}
	// A path that starts like the UI's but climbs out of it never reaches
	// the API's routes: it is the UI's 404, with no data, and the Doer is
	// not called.
	for _, path := range []string{"/ui/../v1/status", "/ui/%2e%2e/v1/status", "/ui/..%2fv1%2fstatus", "/ui/./../v1/status"} {
		w := raw(h, "GET", path)
		if w.Code != 404 || strings.Contains(w.Body.String(), "h1") {
			t.Errorf("GET %s without a token: %d %s", path, w.Code, w.Body)
		}
	}
	if n := len(d.requests()); n != 0 {
		t.Fatalf("unauthenticated requests reached the Doer %d times", n)
	}

	// Other methods on the UI's paths are the API's JSON 405.
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		w, rep := serve(t, s, m, "/", "")
		if w.Code != 405 || w.Header().Get("Allow") != "GET" || rep.Error == nil || rep.Error.Code != control.CodeMalformed {
			t.Errorf("%s /: %d %s", m, w.Code, w.Body)
		}
	}

	// With the token the API answers, and an unknown /v1 path keeps its
	// JSON 404.
	w, rep := serve(t, s, "GET", "/v1/status", "", "Authorization", "Bearer "+token)
	if w.Code != 200 || !rep.OK {
		t.Errorf("GET /v1/status with the token: %d %s", w.Code, w.Body)
	}
	w, rep = serve(t, s, "GET", "/v1/nowhere", "", "Authorization", "Bearer "+token)
	if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound {
		t.Errorf("GET /v1/nowhere with the token: %d %s", w.Code, w.Body)
	}
	if w := raw(h, "GET", "/metrics", "Authorization", "Bearer "+token); w.Code != 200 || w.Body.String() != "m 1\n" {
		t.Errorf("GET /metrics with the token: %d %s", w.Code, w.Body)
	}
}

func TestUIWithoutAToken(t *testing.T) {
	d := &fakeDoer{}
	s := New(Options{Doer: d, UI: web.Handler()})
	if w := raw(s.Handler(), "GET", "/"); w.Code != 200 || !strings.Contains(w.Body.String(), "/ui/dashboard.js") {
		t.Errorf("GET /: %d", w.Code)
	}
	for _, p := range []string{"/v2/status", "/v1/workers/w/stop", "/ui"} {
		w, rep := serve(t, s, "GET", p, "")
		if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound {
			t.Errorf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
}

func TestNoUIKeepsTheRootBehindTheToken(t *testing.T) {
	const token = "s3cret-token-0123456789"
	s := New(Options{Doer: &fakeDoer{}, Token: token})
	for _, p := range []string{"/", "/ui/dashboard.js"} {
		w, rep := serve(t, s, "GET", p, "")
		if w.Code != 401 || rep.Error == nil || rep.Error.Code != control.CodeUnauthorized {
			t.Errorf("GET %s without a UI: %d %s", p, w.Code, w.Body)
		}
		w, rep = serve(t, s, "GET", p, "", "Authorization", "Bearer "+token)
		if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound {
			t.Errorf("GET %s without a UI, with the token: %d %s", p, w.Code, w.Body)
		}
	}
}
