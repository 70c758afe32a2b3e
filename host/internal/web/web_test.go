package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAssetsAreServed(t *testing.T) {
	h := Handler()
	tests := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/ui/dashboard.js" defer></script>`},
		{"/ui/dashboard.js", "text/javascript; charset=utf-8", `"/v1/status"`},
		{"/ui/dashboard.css", "text/css; charset=utf-8", "--ok:"},
	}
	for _, tt := range tests {
		w := get(t, h, "GET", tt.path)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", tt.path, w.Code, w.Body)
		}
		hdr := w.Header()
		if got := hdr.Get("Content-Type"); got != tt.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.ctype)
		}
		if !strings.Contains(w.Body.String(), tt.contains) {
			t.Errorf("GET %s: the body lacks %q", tt.path, tt.contains)
		}
		if got := hdr.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tt.path, got)
		}
		for k, want := range map[string]string{"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
			"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := hdr.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", tt.path, k, got, want)
			}
		}
		etag := hdr.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", tt.path)
		}
		// A browser revalidating gets 304 without the body.
		w = get(t, h, "GET", tt.path, "If-None-Match", etag)
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("GET %s with If-None-Match: %d, %d bytes", tt.path, w.Code, w.Body.Len())
		}
		w = get(t, h, "HEAD", tt.path)
		if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Type") != tt.ctype {
			t.Errorf("HEAD %s: %d, %d bytes, %q", tt.path, w.Code, w.Body.Len(), w.Header().Get("Content-Type"))
		}
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/ui/", "/ui/index.html", "/ui/nope.js", "/ui/../static/index.html",
		"/ui/static/dashboard.js", "/index.html", "/v1/status", "/ui/dashboard.js/x"} {
		w := get(t, h, "GET", p)
		if w.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
		if w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", p)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		w := get(t, h, m, "/")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

// TestPageIsSelfContained checks what the CSP enforces in the browser and
// what working offline needs: no inline script or style, no URL to another
// host, no HTML built from strings.
func TestPageIsSelfContained(t *testing.T) {
	h := Handler()
	page := get(t, h, "GET", "/").Body.String()
	js := get(t, h, "GET", "/ui/dashboard.js").Body.String()
	css := get(t, h, "GET", "/ui/dashboard.css").Body.String()

	if n := strings.Count(page, "<script"); n != 1 || !strings.Contains(page, `<script src="/ui/dashboard.js"`) {
		t.Errorf("the page has %d script tags; want only the one of /ui/dashboard.js", n)
	}
	for _, bad := range []string{"<style", " style=", " onclick=", " onload=", "javascript:"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q, which the CSP forbids", bad)
		}
	}
	remote := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for name, body := range map[string]string{"index.html": page, "dashboard.js": js, "dashboard.css": css} {
		for _, m := range remote.FindAllString(body, -1) {
			if m != "http://www.w3.org" { // the SVG namespace, not a download
				t.Errorf("%s refers to another host: %q", name, m)
			}
		}
		if strings.Contains(body, "@import") || strings.Contains(body, "url(") {
			t.Errorf("%s loads another file", name)
		}
	}
	// Values are put in as text: the script never parses strings as HTML.
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("dashboard.js uses %s", bad)
		}
	}
	// The token lives in the tab's sessionStorage, never in localStorage
	// or a cookie that would outlive it.
	if strings.Contains(js, "localStorage") || strings.Contains(js, "document.cookie") {
		t.Error("dashboard.js keeps data beyond the tab")
	}
}
