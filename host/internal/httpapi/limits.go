package httpapi

import (
	"net/http"
	"time"
)

// withLimits bounds every request, before anything else looks at it
// (authentication and the cross-origin checks included): the body must
// arrive within Timeouts.Body of the headers and may not exceed
// Options.MaxBody, whether a handler reads it or the server discards it after
// an early answer (a 401 or 403). Without this a client that sends headers
// and then a few bytes of a body holds its connection, and a file
// descriptor, for as long as it likes.
func (s *Server) withLimits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Unsupported only under httptest.ResponseRecorder; the server's
		// ReadTimeout is the backstop there would be.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.timeouts.Body))
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		next.ServeHTTP(w, r)
	})
}

// withWriteDeadline gives a handler that answers at once (the dashboard's
// files, /metrics) Timeouts.Write to write its answer. The control routes
// set theirs when the answer is ready (writeReplyStatus), since the
// operation may take longer.
func (s *Server) withWriteDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.timeouts.Write))
		h.ServeHTTP(w, r)
	})
}
