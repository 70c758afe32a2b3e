package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"

	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// Authenticator is optionally implemented by a Doer that checks a control
// policy (control.Dispatcher does, once given one with SetPolicy).
type Authenticator interface {
	// Policy returns the control policy, nil when there is none.
	Policy() *auth.Policy
	// Authenticate identifies a request's sender from its credentials and
	// body and returns ctx carrying the principal (see control.Dispatcher).
	Authenticate(ctx context.Context, c auth.Credentials, body []byte) (context.Context, *control.Error)
}

var _ Authenticator = (*control.Dispatcher)(nil)

// signed authenticates a request that carries signature headers
// (auth.HeaderKeyID and the others) over its method, its request target as
// sent and its body, and hands on its context with the principal; the
// Doer then authorises what the request asks. A GET without signature is
// marked as a read the bearer token vouches for (auth.WithLocalRead):
// status and list_classes answer it, as the dashboard needs, while every
// other request without a signature is refused by the Doer when the
// policy requires one. Without a policy, requests pass untouched.
func (s *Server) signed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.opts.Doer.(Authenticator)
		if !ok || a.Policy() == nil || r.URL.Path == healthzPath {
			next.ServeHTTP(w, r)
			return
		}
		sig := auth.Signature{
			KeyID:     r.Header.Get(auth.HeaderKeyID),
			Timestamp: r.Header.Get(auth.HeaderTimestamp),
			Nonce:     r.Header.Get(auth.HeaderNonce),
			Value:     r.Header.Get(auth.HeaderSignature),
		}
		if sig == (auth.Signature{}) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				r = r.WithContext(auth.WithLocalRead(r.Context()))
			}
			next.ServeHTTP(w, r)
			return
		}
		body, status, cerr := s.readBody(w, r)
		if cerr != nil {
			s.writeReplyStatus(w, fail(cerr), status)
			return
		}
		ctx, cerr := a.Authenticate(r.Context(), auth.Credentials{
			Transport: "http",
			Signature: sig,
			Scope:     auth.HTTPScope(r.Method, r.RequestURI),
		}, body)
		if cerr != nil {
			s.writeReply(w, fail(cerr))
			return
		}
		r = r.WithContext(ctx)
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
