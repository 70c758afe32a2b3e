package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/web"
)

// guarded runs one request through a Server's handler with exactly the
// headers given (no defaults, unlike serve) and Host host.
func guarded(s *Server, method, host, path, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

const startJSON = `{"name":"w","class":"c"}`

// TestGuard: what a browser page of another origin, or of a DNS-rebound
// name, can send is refused before the Doer is called; what the CLI and the
// dashboard send passes.
func TestGuard(t *testing.T) {
	const token = "guard-test-token-0123456789"
	prog := []string{RequestHeader, "1", "Content-Type", "application/json"}
	with := func(extra ...string) []string { return append(append([]string{}, prog...), extra...) }
	tests := []struct {
		name         string
		opts         Options
		method, host string
		path, body   string
		header       []string
		status       int    // 0: passes the guard (the Doer answers 200)
		inMessage    string // part of the refusal's message
	}{
		// What programs and the dashboard send.
		{"program start", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON, prog, 0, ""},
		{"json with charset", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			[]string{RequestHeader, "1", "Content-Type", "application/json; charset=utf-8"}, 0, ""},
		{"dashboard start", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			with("Origin", "http://127.0.0.1:7780", "Sec-Fetch-Site", "same-origin"), 0, ""},
		{"dashboard restart, no body", Options{}, "POST", "localhost:7780", "/v1/workers/w/restart", "",
			[]string{RequestHeader, "1", "Origin", "http://localhost:7780", "Sec-Fetch-Site", "same-origin"}, 0, ""},
		{"dashboard origin hidden", Options{}, "DELETE", "127.0.0.1:7780", "/v1/workers/w", "",
			[]string{RequestHeader, "1", "Origin", "null", "Sec-Fetch-Site", "same-origin"}, 0, ""},
		{"token instead of the header", Options{Token: token}, "DELETE", "127.0.0.1:7780", "/v1/workers/w", "",
			[]string{"Authorization", "Bearer " + token}, 0, ""},
		{"signature instead of the header", Options{}, "DELETE", "127.0.0.1:7780", "/v1/workers/w", "",
			[]string{"Dynworkers-Signature", "c2ln"}, 0, ""},
		{"read without the header", Options{}, "GET", "127.0.0.1:7780", "/v1/status", "", nil, 0, ""},
		{"cluster read without the header", Options{}, "GET", "127.0.0.1:7780", "/v1/cluster", "", nil, 0, ""},
		{"dashboard drain", Options{}, "POST", "127.0.0.1:7780", "/v1/cluster/hosts/h/drain", "",
			[]string{RequestHeader, "1", "Origin", "http://127.0.0.1:7780", "Sec-Fetch-Site", "same-origin"}, 0, ""},
		{"navigation from another site", Options{}, "GET", "127.0.0.1:7780", "/v1/status", "",
			[]string{"Sec-Fetch-Site", "cross-site"}, 0, ""},

		// Cross-origin forms and fetches.
		{"text/plain form", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			[]string{"Content-Type", "text/plain", "Origin", "http://127.0.0.1:8000", "Sec-Fetch-Site", "same-site"}, 403, "Origin"},
		{"form without Origin", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			[]string{"Content-Type", "text/plain"}, 403, RequestHeader},
		{"urlencoded form", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", "name=w&class=c",
			[]string{"Content-Type", "application/x-www-form-urlencoded"}, 403, RequestHeader},
		{"no-cors fetch, Sec-Fetch-Site only", Options{}, "POST", "127.0.0.1:7780", "/v1/control", `{"operation":"status"}`,
			[]string{"Content-Type", "text/plain", "Sec-Fetch-Site", "cross-site"}, 403, "Sec-Fetch-Site"},
		{"delete without the header", Options{}, "DELETE", "127.0.0.1:7780", "/v1/workers/w", "", nil, 403, RequestHeader},
		{"restart without the header", Options{}, "POST", "127.0.0.1:7780", "/v1/workers/w/restart", "", nil, 403, RequestHeader},
		{"drain without the header", Options{}, "POST", "127.0.0.1:7780", "/v1/cluster/hosts/h/drain", "", nil, 403, RequestHeader},
		{"undrain from another site", Options{}, "POST", "127.0.0.1:7780", "/v1/cluster/hosts/h/undrain", "",
			[]string{RequestHeader, "1", "Sec-Fetch-Site", "cross-site"}, 403, "Sec-Fetch-Site"},
		{"cross-origin cluster read", Options{}, "GET", "127.0.0.1:7780", "/v1/cluster", "",
			[]string{"Origin", "http://evil.example"}, 403, "Origin"},
		{"rebound cluster read", Options{Addr: "127.0.0.1:7780"}, "GET", "evil.example:7780", "/v1/cluster", "", nil, 403, "Host"},
		{"other scheme", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			with("Origin", "https://127.0.0.1:7780"), 403, "Origin"},
		{"other port", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			with("Origin", "http://127.0.0.1:7781"), 403, "Origin"},
		{"origin null", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			with("Origin", "null"), 403, "Origin"},
		{"cross-origin read", Options{}, "GET", "127.0.0.1:7780", "/v1/status", "",
			[]string{"Origin", "http://evil.example"}, 403, "Origin"},
		{"same-site header", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			with("Sec-Fetch-Site", "same-site"), 403, "Sec-Fetch-Site"},
		{"header with a token of another scheme", Options{Token: token}, "POST", "127.0.0.1:7780", "/v1/workers/w/restart", "",
			[]string{"Authorization", "Basic " + token}, 403, RequestHeader},

		// Content types.
		{"text/plain body", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			[]string{RequestHeader, "1", "Content-Type", "text/plain"}, 415, `text/plain`},
		{"no content type", Options{}, "POST", "127.0.0.1:7780", "/v1/control", `{"operation":"status"}`,
			[]string{RequestHeader, "1"}, 415, `none`},
		{"multipart body", Options{}, "POST", "127.0.0.1:7780", "/v1/supervisors", `{"supervisor_name":"s"}`,
			[]string{RequestHeader, "1", "Content-Type", "multipart/form-data; boundary=x"}, 415, "application/json"},
		{"json-like type", Options{}, "POST", "127.0.0.1:7780", "/v1/workers", startJSON,
			[]string{RequestHeader, "1", "Content-Type", "application/jsonx"}, 415, "application/json"},

		// Host names (DNS rebinding): on a loopback listener, only IP
		// addresses, loopback names, the listen host and allowed names.
		{"rebound name", Options{Addr: "127.0.0.1:7780"}, "POST", "evil.example:7780", "/v1/workers", startJSON,
			with("Origin", "http://evil.example:7780", "Sec-Fetch-Site", "same-origin"), 403, "DNS rebinding"},
		{"rebound name reads", Options{Addr: "127.0.0.1:7780"}, "GET", "evil.example:7780", "/v1/status", "", nil, 403, "http_allowed_hosts"},
		{"rebound name, upper case", Options{Addr: "127.0.0.1:7780"}, "GET", "EVIL.example", "/v1/status", "", nil, 403, "Host"},
		{"localhost", Options{Addr: "127.0.0.1:7780"}, "GET", "localhost:7780", "/v1/status", "", nil, 0, ""},
		{"localhost with a dot", Options{Addr: "127.0.0.1:7780"}, "GET", "localhost.:7780", "/v1/status", "", nil, 0, ""},
		{"a .localhost name", Options{Addr: "127.0.0.1:7780"}, "GET", "dash.localhost:7780", "/v1/status", "", nil, 0, ""},
		{"IPv6 loopback", Options{Addr: "[::1]:7780"}, "GET", "[::1]:7780", "/v1/status", "", nil, 0, ""},
		{"an IP address", Options{Addr: "127.0.0.1:7780"}, "GET", "10.1.2.3:7780", "/v1/status", "", nil, 0, ""},
		{"allowed name", Options{Addr: "127.0.0.1:7780", AllowedHosts: []string{"dyn.example.com"}}, "GET", "DYN.example.com", "/v1/status", "", nil, 0, ""},
		{"allowed wildcard", Options{Addr: "127.0.0.1:7780", AllowedHosts: []string{"*.corp.example"}}, "GET", "a.b.corp.example:7780", "/v1/status", "", nil, 0, ""},
		{"wildcard is not the apex", Options{Addr: "127.0.0.1:7780", AllowedHosts: []string{"*.corp.example"}}, "GET", "corp.example", "/v1/status", "", nil, 403, "Host"},
		{"not a suffix match", Options{Addr: "127.0.0.1:7780", AllowedHosts: []string{"dyn.example.com"}}, "GET", "xdyn.example.com", "/v1/status", "", nil, 403, "Host"},
		{"open listener, any name", Options{Addr: "0.0.0.0:7780", Token: token}, "GET", "dyn.example.com", "/v1/status", "",
			[]string{"Authorization", "Bearer " + token}, 0, ""},
		{"open listener with a list", Options{Addr: "0.0.0.0:7780", Token: token, AllowedHosts: []string{"dyn.example.com"}}, "GET", "other.example.com", "/v1/status", "",
			[]string{"Authorization", "Bearer " + token}, 403, "Host"},
		{"rebinding the listen name", Options{Addr: "myhost.internal:7780"}, "GET", "myhost.internal:7780", "/v1/status", "", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDoer{}
			tt.opts.Doer = d
			w := guarded(New(tt.opts), tt.method, tt.host, tt.path, tt.body, tt.header...)
			if tt.status == 0 {
				if w.Code != 200 || len(d.requests()) != 1 {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				return
			}
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.inMessage) ||
				w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("got %d %s\nwant %d with %q", w.Code, w.Body, tt.status, tt.inMessage)
			}
			wantCode := `"code":"forbidden"`
			if tt.status == 415 {
				wantCode = `"code":"malformed"`
			}
			if !strings.Contains(w.Body.String(), wantCode) {
				t.Errorf("the refusal lacks %s: %s", wantCode, w.Body)
			}
			if n := len(d.requests()); n != 0 {
				t.Errorf("the Doer was called %d times", n)
			}
		})
	}
}

// The dashboard's page is behind the Host check too (a rebound page could
// otherwise be served the dashboard and drive it), and no answer grants a
// CORS preflight.
func TestGuardUIAndPreflight(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:7780", Doer: &fakeDoer{}, UI: web.Handler()})
	if w := guarded(s, "GET", "127.0.0.1:7780", "/", ""); w.Code != 200 {
		t.Errorf("GET / on the loopback name: %d", w.Code)
	}
	if w := guarded(s, "GET", "rebind.example:7780", "/", ""); w.Code != 403 || !strings.Contains(w.Body.String(), "forbidden") {
		t.Errorf("GET / on a rebound name: %d %s", w.Code, w.Body)
	}
	for _, p := range []string{"/v1/workers", "/v1/control", "/v1/workers/w", "/"} {
		w := guarded(s, "OPTIONS", "127.0.0.1:7780", p, "", "Origin", "http://127.0.0.1:8000",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "x-dynworkers-request")
		for k := range w.Header() {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("OPTIONS %s answered %s", p, k)
			}
		}
		if w.Code == 200 || w.Code == 204 {
			t.Errorf("OPTIONS %s: %d", p, w.Code)
		}
	}
}

// A refusal is logged at warn level with its reason.
func TestGuardLogsRefusals(t *testing.T) {
	var logs syncBuffer
	s := New(Options{Addr: "127.0.0.1:7780", Doer: &fakeDoer{}, Logger: newTestLogger(&logs)})
	guarded(s, "POST", "127.0.0.1:7780", "/v1/workers", startJSON, "Content-Type", "text/plain")
	out := logs.String()
	for _, want := range []string{"[WARN]", "http request refused", "method=POST", "path=/v1/workers", "status=403", RequestHeader} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
