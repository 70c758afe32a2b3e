package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// healthzPath is the one API route open without the token (the dashboard's
// static files are open too: see withUI).
const healthzPath = "/healthz"

// routes builds the handler: logging around authentication around the
// routes. Every route has a method-less twin that answers 405 in JSON, so
// that no answer of the API is ServeMux's plain text.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		mux.HandleFunc(path, s.methodNotAllowed(method))
	}
	route(http.MethodPost, "/v1/control", s.handleControl)
	route(http.MethodGet, "/v1/status", s.handleOp(control.OpStatus))
	route(http.MethodGet, "/v1/classes", s.handleOp(control.OpListClasses))
	route(http.MethodPost, "/v1/workers", s.handleStart)
	route(http.MethodDelete, "/v1/workers/{name}", s.handleWorkerOp(control.OpStopWorker))
	route(http.MethodPost, "/v1/workers/{name}/kill", s.handleWorkerOp(control.OpKillWorker))
	route(http.MethodPost, "/v1/workers/{name}/restart", s.handleWorkerOp(control.OpRestartWorker))
	route(http.MethodGet, "/v1/workers/{name}/logs", s.handleLogs)
	route(http.MethodPost, "/v1/supervisors", s.handleStartSupervisor)
	route(http.MethodDelete, "/v1/supervisors/{path...}", s.handleStopSupervisor)
	route(http.MethodGet, "/v1/cluster", s.handleOp(control.OpClusterStatus))
	route(http.MethodPost, "/v1/cluster/hosts/{host}/drain", s.handleDrain(control.OpDrain))
	route(http.MethodPost, "/v1/cluster/hosts/{host}/undrain", s.handleDrain(control.OpUndrain))
	if s.opts.Events != nil {
		route(http.MethodGet, "/v1/events", func(w http.ResponseWriter, r *http.Request) {
			events := s.opts.Events()
			if events == nil {
				events = []api.Event{} // [] in the JSON, not null
			}
			s.writeReply(w, control.Reply{OK: true, Result: map[string]any{"events": events}})
		})
	}
	if s.opts.Metrics != nil {
		route(http.MethodGet, "/metrics", s.withWriteDeadline(s.opts.Metrics).ServeHTTP)
	}
	route(http.MethodGet, healthzPath, func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, control.Reply{OK: true})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, fail(control.Errorf(control.CodeNotFound, "no route %s %s: see the routes under /v1/", r.Method, r.URL.Path)))
	})
	return s.logRequests(s.withLimits(s.guard(s.withUI(s.authenticate(s.signed(mux))))))
}

// uiPrefix is the path of the dashboard's static files.
const uiPrefix = "/ui/"

// isUIPath reports whether a path is the dashboard's: the page at / and its
// files under /ui/.
func isUIPath(p string) bool { return p == "/" || strings.HasPrefix(p, uiPrefix) }

// withUI sends the dashboard's paths to Options.UI, in front of
// authentication, and everything else to api. A browser cannot send the
// bearer token when it navigates to a page, so the page and its files are
// served without it; they are static and hold no data, and the page then
// asks for the token and sends it on every /v1 call. The open paths go
// straight to the UI handler and never reach the API's routes, so no path
// under / or /ui/ (such as /ui/../v1/status) can get to data without the
// token. Without a UI, / and /ui/ are unknown paths of the API, behind the
// token like the rest.
func (s *Server) withUI(api http.Handler) http.Handler {
	if s.opts.UI == nil {
		return api
	}
	ui := s.withWriteDeadline(s.opts.UI)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isUIPath(r.URL.Path) {
			api.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.methodNotAllowed(http.MethodGet)(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	})
}

// handleControl answers POST /v1/control: a control message body, decoded
// exactly as the AMQP transport decodes it.
func (s *Server) handleControl(w http.ResponseWriter, r *http.Request) {
	body, status, cerr := s.readBody(w, r)
	if cerr != nil {
		s.writeReplyStatus(w, fail(cerr), status)
		return
	}
	if h, ok := s.opts.Doer.(BodyHandler); ok {
		s.writeReply(w, h.Handle(context.WithoutCancel(r.Context()), body))
		return
	}
	req, cerr := control.Decode(body)
	if cerr != nil {
		s.writeReply(w, fail(cerr))
		return
	}
	s.writeReply(w, s.do(r, req))
}

// BodyHandler is optionally implemented by a Doer that decodes message
// bodies itself, as control.Dispatcher does (Handle: control.Decode, then
// Do, echoing the request_id and counting malformed bodies in its stats).
// POST /v1/control then hands it the body, exactly as the AMQP transport
// does; otherwise it decodes with control.Decode and calls Do.
type BodyHandler interface {
	Handle(ctx context.Context, body []byte) control.Reply
}

var _ BodyHandler = (*control.Dispatcher)(nil)

// handleOp answers a route that is one operation without arguments.
func (s *Server) handleOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, s.do(r, &control.Request{Operation: op}))
	}
}

// handleWorkerOp answers a route that is one operation on the worker named
// in the path.
func (s *Server) handleWorkerOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, s.do(r, &control.Request{Operation: op, WorkerName: r.PathValue("name")}))
	}
}

// handleDrain answers POST /v1/cluster/hosts/{host}/drain and .../undrain:
// the operation drain or undrain on the host named in the path. The body,
// if any, is ignored, as for restart.
func (s *Server) handleDrain(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, s.do(r, &control.Request{Operation: op, Host: r.PathValue("host")}))
	}
}

// startBody is the body of POST /v1/workers.
type startBody struct {
	Name       string          `json:"name"`
	Class      string          `json:"class"`
	Config     json.RawMessage `json:"config"`
	Supervisor string          `json:"supervisor"`
	Replace    bool            `json:"replace"`
	RequestID  string          `json:"request_id"`
	// Cluster and Constraints make it a cluster start (control.Request).
	Cluster     bool              `json:"cluster"`
	Constraints map[string]string `json:"constraints"`
}

// startFields lists startBody's members for error messages.
const startFields = `"name", "class", "config", "supervisor", "replace", "request_id", "cluster" and "constraints"`

// handleStart answers POST /v1/workers.
func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	body, status, cerr := s.readBody(w, r)
	if cerr != nil {
		s.writeReplyStatus(w, fail(cerr), status)
		return
	}
	var sb startBody
	if cerr := decodeStrict(body, &sb, "a start", startFields); cerr != nil {
		s.writeReply(w, fail(cerr))
		return
	}
	s.writeReply(w, s.do(r, &control.Request{
		Operation:    control.OpStartWorker,
		WorkerName:   sb.Name,
		WorkerClass:  sb.Class,
		WorkerConfig: sb.Config,
		Supervisor:   sb.Supervisor,
		Replace:      sb.Replace,
		RequestID:    sb.RequestID,
		Cluster:      sb.Cluster,
		Constraints:  sb.Constraints,
	}))
}

// supervisorBody is the body of POST /v1/supervisors: the members of a
// start_supervisor payload but the operation.
type supervisorBody struct {
	SupervisorName string          `json:"supervisor_name"`
	Supervisor     string          `json:"supervisor"`
	Strategy       string          `json:"strategy"`
	Intensity      json.RawMessage `json:"intensity"`
	Period         json.RawMessage `json:"period"`
	RequestID      string          `json:"request_id"`
}

// supervisorFields lists supervisorBody's members for error messages.
const supervisorFields = `"supervisor_name", "supervisor", "strategy", "intensity", "period" and "request_id"`

// handleStartSupervisor answers POST /v1/supervisors. The intensity and
// period are handed on as JSON: the Dispatcher checks their types and
// values, as for a control message.
func (s *Server) handleStartSupervisor(w http.ResponseWriter, r *http.Request) {
	body, status, cerr := s.readBody(w, r)
	if cerr != nil {
		s.writeReplyStatus(w, fail(cerr), status)
		return
	}
	var sb supervisorBody
	if cerr := decodeStrict(body, &sb, "start_supervisor", supervisorFields); cerr != nil {
		s.writeReply(w, fail(cerr))
		return
	}
	s.writeReply(w, s.do(r, &control.Request{
		Operation:      control.OpStartSupervisor,
		SupervisorName: sb.SupervisorName,
		Supervisor:     sb.Supervisor,
		Strategy:       sb.Strategy,
		Intensity:      nonNull(sb.Intensity),
		Period:         nonNull(sb.Period),
		RequestID:      sb.RequestID,
	}))
}

// handleStopSupervisor answers DELETE /v1/supervisors/{path...}: the rest
// of the path, slashes included, is the supervisor's path or name.
func (s *Server) handleStopSupervisor(w http.ResponseWriter, r *http.Request) {
	s.writeReply(w, s.do(r, &control.Request{Operation: control.OpStopSupervisor, Supervisor: r.PathValue("path")}))
}

// nonNull returns raw, or nil for a JSON null: absent and null mean the
// same.
func nonNull(raw json.RawMessage) json.RawMessage {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return nil
	}
	return raw
}

// decodeStrict decodes a JSON object body into dst, a pointer to a struct,
// rejecting unknown members; what names the request in messages ("a
// start") and fields lists dst's members. Messages never quote a value: a
// config may hold secrets.
func decodeStrict(body []byte, dst any, what, fields string) *control.Error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return malformed("", "the body is empty: send a JSON object with "+fields)
	}
	if trimmed[0] != '{' {
		return malformed("", "the body must be a JSON object with "+fields)
	}
	if !json.Valid(trimmed) {
		msg := "the body is not valid JSON"
		var v any
		var se *json.SyntaxError
		if err := json.Unmarshal(trimmed, &v); errors.As(err, &se) {
			// A SyntaxError quotes at most one character of the body.
			msg = fmt.Sprintf("%s: %v (at byte %d)", msg, se, se.Offset)
		}
		return malformed("", msg)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return malformed(te.Field, fmt.Sprintf("%q must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			msg := fmt.Sprintf("unknown member %q: %s takes %s", field, what, fields)
			if strings.HasPrefix(field, "worker_") || field == "operation" {
				msg += " (a control message goes to POST /v1/control)"
			}
			return malformed(field, msg)
		}
		return malformed("", "the body is not a valid JSON object")
	}
	return nil
}

// jsonKind names the JSON type a Go kind decodes from.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	}
	return "a JSON object"
}

// do runs req on the Doer. The client going away does not cancel it: a
// request that reached the host is carried out, as a received AMQP message
// is.
func (s *Server) do(r *http.Request, req *control.Request) control.Reply {
	return s.opts.Doer.Do(context.WithoutCancel(r.Context()), req)
}

// readBody reads a request body of at most Options.MaxBody; withLimits set
// its deadline. On failure it returns the HTTP status and error to answer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, *control.Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, http.StatusRequestEntityTooLarge,
				malformed("", fmt.Sprintf("the body is larger than %d bytes, the API's limit on a request body (the larger of 1 MiB and input_limits.control_message_size)", s.maxBody))
		case errors.As(err, &ne) && ne.Timeout():
			return nil, http.StatusRequestTimeout,
				malformed("", fmt.Sprintf("the body did not arrive within %s of the headers (host.http_timeouts.body)", s.timeouts.Body))
		}
		return nil, http.StatusBadRequest, malformed("", "the body could not be read: "+err.Error())
	}
	return body, 0, nil
}

// authenticate requires the bearer token on every route but /healthz when
// a token is set.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.opts.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == healthzPath {
			next.ServeHTTP(w, r)
			return
		}
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.writeReply(w, fail(control.Errorf(control.CodeUnauthorized,
				"missing bearer token: send the header \"Authorization: Bearer <host.http_token>\"")))
			return
		}
		// Hashing first makes the comparison constant-time in the
		// token's length too.
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			s.writeReply(w, fail(control.Errorf(control.CodeUnauthorized, "wrong bearer token")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// statusRecorder remembers the status a handler wrote, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (sr *statusRecorder) WriteHeader(code int) {
	if sr.status == 0 {
		sr.status = code
	}
	sr.ResponseWriter.WriteHeader(code)
}

func (sr *statusRecorder) Write(b []byte) (int, error) {
	if sr.status == 0 {
		sr.status = http.StatusOK
	}
	return sr.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (sr *statusRecorder) Unwrap() http.ResponseWriter { return sr.ResponseWriter }

// logRequests logs each request at debug level: never a body or a header,
// which may hold secrets.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sr := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sr, r)
		s.logger.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", sr.status,
			"duration", time.Since(start), "remote", r.RemoteAddr)
	})
}

// methodNotAllowed answers a known path asked with the wrong method.
func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.writeReplyStatus(w, fail(control.Errorf(control.CodeMalformed,
			"method %s is not allowed on %s: use %s", r.Method, r.URL.Path, allow)), http.StatusMethodNotAllowed)
	}
}

func fail(err *control.Error) control.Reply { return control.Reply{OK: false, Error: err} }

func malformed(field, msg string) *control.Error {
	e := &control.Error{Code: control.CodeMalformed, Message: msg}
	if field != "" {
		e.Details = []control.Detail{{Attribute: field, Summary: msg}}
	}
	return e
}

// writeReply writes rep with the HTTP status of its error code.
func (s *Server) writeReply(w http.ResponseWriter, rep control.Reply) {
	s.writeReplyStatus(w, rep, 0)
}

// writeReplyStatus writes rep as JSON with status, or with the status of
// its error code when status is 0.
func (s *Server) writeReplyStatus(w http.ResponseWriter, rep control.Reply, status int) {
	if !rep.OK && rep.Error == nil {
		rep.Error = control.Errorf(control.CodeInternal, "the request failed without an error (see the host's log)")
	}
	body, err := json.Marshal(rep)
	if err != nil {
		s.logger.Error("encoding a control reply", "error", err)
		rep = fail(control.Errorf(control.CodeInternal, "the result could not be encoded as JSON (see the host's log)"))
		body, _ = json.Marshal(rep)
		status = 0
	}
	if status == 0 {
		status = http.StatusOK
		if !rep.OK {
			status = rep.Error.Code.HTTPStatus()
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="dynworkers"`)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.timeouts.Write))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
