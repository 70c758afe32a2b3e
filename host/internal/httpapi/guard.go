package httpapi

import (
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// RequestHeader is the header every mutating request (POST, PUT, PATCH,
// DELETE) must carry, with any value ("1"), unless it carries a bearer
// token. A page of another origin cannot set it: a cross-origin request
// with a custom header needs a CORS preflight, and the API never grants
// one (it sends no Access-Control-Allow-* header). The dashboard and the
// CLI send it; scripts add -H 'X-Dynworkers-Request: 1'.
const RequestHeader = "X-Dynworkers-Request"

// mutating reports whether a method may change something.
func mutating(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// guard refuses what a browser page of another origin, or of a DNS
// rebinding name, could send:
//
//   - any request whose Host header is not a name of this host, when the
//     host listens on the loopback interface or has host.http_allowed_hosts
//     (DNS rebinding: a page of evil.example whose name now resolves to
//     127.0.0.1 is same-origin with the API in the browser's eyes, but its
//     requests say Host: evil.example);
//   - any request with an Origin header that is not the API's own origin
//     (scheme, host and port as the request reached the API);
//   - a mutating request that a browser marks as coming from another
//     origin (Sec-Fetch-Site other than same-origin or none);
//   - a mutating request without RequestHeader, an Authorization header or
//     a control signature (auth.HeaderSignature): what a cross-origin form,
//     or a fetch in no-cors mode, sends;
//   - a mutating request with a body that is not sent as application/json
//     (415), so a text/plain or form body is never decoded as a command.
//
// Each refusal is a JSON error answered before authentication and before
// the body is read, and is logged at warn level with the reason.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, msg := s.checkRequest(r)
		if status == 0 {
			next.ServeHTTP(w, r)
			return
		}
		s.logger.Warn("http request refused", "method", r.Method, "path", r.URL.Path, "status", status,
			"reason", msg, "remote", r.RemoteAddr)
		code := control.CodeForbidden
		if status == http.StatusUnsupportedMediaType {
			code = control.CodeMalformed
		}
		s.writeReplyStatus(w, fail(&control.Error{Code: code, Message: msg}), status)
	})
}

// checkRequest returns the status and message to refuse r with, or 0.
func (s *Server) checkRequest(r *http.Request) (int, string) {
	if !s.hostAllowed(r.Host) {
		return http.StatusForbidden, fmt.Sprintf("the Host header %q is not a name of this host (a page using DNS rebinding sends that): "+
			"use 127.0.0.1 or localhost, or add the name to host.http_allowed_hosts", clip(r.Host))
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.sameOrigin(r, origin) {
		return http.StatusForbidden, fmt.Sprintf("cross-origin request refused: Origin %q is not this API's origin %s://%s",
			clip(origin), s.scheme(), clip(r.Host))
	}
	if !mutating(r.Method) {
		return 0, ""
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return http.StatusForbidden, fmt.Sprintf("cross-origin request refused: the browser marks this %s as coming from another origin (Sec-Fetch-Site: %s)",
			r.Method, clip(site))
	}
	// A signed request (package auth's headers) carries a header no page of
	// another origin can set without a preflight too.
	if _, hasToken := bearer(r.Header.Get("Authorization")); r.Header.Get(RequestHeader) == "" && !hasToken && r.Header.Get(auth.HeaderSignature) == "" {
		return http.StatusForbidden, fmt.Sprintf("a %s must carry the header %q (or \"Authorization: Bearer <token>\", or a control signature); "+
			"a cross-origin form or page cannot send it, which is how the API tells a program or the dashboard from one", r.Method, RequestHeader+": 1")
	}
	if r.ContentLength != 0 {
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			if ct == "" {
				ct = "none"
			}
			return http.StatusUnsupportedMediaType, fmt.Sprintf("the body of a %s must be JSON sent with \"Content-Type: application/json\", not %q",
				r.Method, clip(ct))
		}
	}
	return 0, ""
}

// clip shortens a header value quoted in a message.
func clip(s string) string {
	const max = 100
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// scheme is the API's URL scheme.
func (s *Server) scheme() string {
	if s.opts.TLS != nil {
		return "https"
	}
	return "http"
}

// sameOrigin reports whether an Origin header is the API's own origin as
// the request reached it: its scheme, and the Host header as host and port.
// "null" (a sandboxed frame, a page whose referrer policy hides its origin)
// is accepted only when the browser says the request is same-origin.
func (s *Server) sameOrigin(r *http.Request, origin string) bool {
	if origin == "null" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != s.scheme() || u.Host == "" {
		return false
	}
	return strings.EqualFold(withPort(u.Host, u.Scheme), withPort(r.Host, s.scheme()))
}

// withPort adds a scheme's default port to a host without one.
func withPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// hostAllowed reports whether a Host header names this host. The check is
// on when the API listens on the loopback interface (where a browser on the
// machine is the threat) or when Options.AllowedHosts is set; then a Host
// must be an IP address (a browser sends a name when it was rebound), a
// loopback name (localhost, *.localhost), the listen address's host, or
// match AllowedHosts. An empty Host (HTTP/1.0) is no browser's.
func (s *Server) hostAllowed(hostport string) bool {
	if !s.checkHost {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	switch {
	case host == "":
		return true
	case net.ParseIP(host) != nil:
		return true
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return true
	case host == s.listenHost:
		return true
	}
	for _, a := range s.opts.AllowedHosts {
		if matchHost(strings.ToLower(strings.TrimSuffix(a, ".")), host) {
			return true
		}
	}
	return false
}

// matchHost matches a host name against an allowed name: exact, or
// "*.example.com" for any name under example.com (not example.com itself).
func matchHost(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return pattern == host
}
