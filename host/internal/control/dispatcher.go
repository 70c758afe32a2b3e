package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/config"
)

// internalMessage is all a client learns about an error that is not an
// *Error: the cause may hold paths, config values or other details that
// belong in the host's log only.
const internalMessage = "internal error (see the host's log)"

// maxClassLen bounds worker_class, which is only looked up, never used as a
// path, but still ends up in logs and messages.
const maxClassLen = 200

// Dispatcher checks control requests and carries them out on a Host. Both
// transports use it: AMQP hands it message bodies (Handle), the HTTP API
// builds Requests itself (Do). It is safe for concurrent use; it serialises
// nothing, so the Host must cope with concurrent calls.
//
// It never logs or returns a worker_config, which may hold secrets: logs
// carry only the operation, worker name, class and request_id.
type Dispatcher struct {
	host   Host
	logger hclog.Logger

	mu    sync.Mutex
	stats Stats
	// refusal, once set by Refuse, answers every request that would
	// change the host.
	refusal atomic.Pointer[Error]
	// policy, when set (SetPolicy), authenticates and authorises
	// requests (see authorize.go).
	policy *auth.Policy
	// maxBody bounds the bodies Handle reads (0: DefaultMaxMessageBytes).
	maxBody atomic.Int64
}

// SetMaxMessageBytes sets the largest body Handle reads; a larger one is
// refused (malformed, naming the limit) before it is decoded. n <= 0 means
// DefaultMaxMessageBytes.
func (d *Dispatcher) SetMaxMessageBytes(n int) { d.maxBody.Store(int64(n)) }

// Stats counts the requests a Dispatcher answered since it was created.
type Stats struct {
	// Handled counts every request answered, failed ones included.
	Handled uint64
	// Failed counts the requests answered with an error.
	Failed uint64
	// Errors counts the failed requests by error code.
	Errors map[Code]uint64
}

// NewDispatcher returns a Dispatcher that drives host and logs to logger
// (nil means no logging).
func NewDispatcher(host Host, logger hclog.Logger) *Dispatcher {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Dispatcher{host: host, logger: logger}
}

// Refuse makes every later request that would change the host (all but
// status, list_classes and cluster_status) fail with err; a stopping host uses it so that
// nothing starts behind its shutdown's back while status still answers.
func (d *Dispatcher) Refuse(err *Error) { d.refusal.Store(err) }

// readOnly reports whether an operation only reads the host (or, for
// cluster_status, the system): it is answered while the host stops, and
// the HTTP API's local reads (auth.WithLocalRead) may do it without a
// principal.
//
// logs is one too: a worker's log is scrubbed of its sensitive config
// values before it is kept, as status shows configs redacted, so the
// dashboard (a GET with the bearer token, no signature) may read it like
// status; a signed request needs a principal allowed "logs" on that
// worker (see action).
func readOnly(op string) bool {
	return op == OpStatus || op == OpListClasses || op == OpClusterStatus || op == OpLogs
}

// Handle decodes a message body (see Decode) and carries it out (see Do).
// A body that cannot be decoded is answered with its error; the request_id
// is echoed whenever it could be read.
func (d *Dispatcher) Handle(ctx context.Context, body []byte) Reply {
	if err := checkMessageSize(len(body), int(d.maxBody.Load())); err != nil {
		return d.fail(&Request{}, err)
	}
	ctx, aerr := d.authenticate(ctx, body)
	if aerr != nil {
		req, _ := decode(body) // only to echo its request_id
		return d.fail(req, aerr)
	}
	req, err := decode(body)
	if err != nil {
		return d.fail(req, err)
	}
	return d.Do(ctx, req)
}

// Do checks req and carries it out on the Host, which makes the effect
// durable before it returns.
//
// Checks per operation, before the Host is called: a start needs a
// worker_name that config.ValidateName accepts and a worker_class
// (CodeInvalidConfig naming the field), a worker_config that is a JSON
// object, null or absent (CodeMalformed), and a supervisor path whose
// segments are valid names; stop and restart need a valid worker_name;
// start_supervisor needs a valid supervisor_name, and takes a parent
// supervisor path, a strategy of config.Strategies, an intensity (a whole
// number from 0 to 1000000) and a period (a duration string or a number of
// seconds, greater than zero), each optional (CodeInvalidConfig for a bad
// value, CodeMalformed for a wrong JSON type; an intensity of 0 reaches
// the Host as -1, no automatic restart, as a SupervisorSpec's 0 means the
// default); stop_supervisor needs a supervisor path, passed on as it is;
// status, list_classes and reload need nothing. logs needs a valid
// worker_name, lines from 0 (DefaultLogLines) to MaxLogLines and a since
// that is "", an RFC 3339 time or a duration back from now ("10m")
// (CodeInvalidConfig naming the field); after is passed on; it goes to the
// Host's LogsHost, and a Host without one answers CodeConflict. The
// alias "start_worker" is accepted; an unknown operation is
// CodeUnknownOperation.
//
// Cluster mode: a start is a cluster start (WorkerSpec.Cluster) when the
// request says "cluster": true or when it came through a system-wide
// routing key, one ending in ".any" or ".all" (RouteOf(ctx): the AMQP
// transport sets it); its constraints, if any, must be at most
// MaxConstraints labels whose keys and values are 1 to
// config.MaxLabelBytes bytes of text without control characters
// (CodeInvalidConfig naming "constraints"). drain and undrain need a host
// that config.ValidateHostName accepts (CodeInvalidConfig naming "host");
// cluster_status needs nothing. The three go to the Host's ClusterHost
// methods; a Host that does not implement ClusterHost answers them with
// CodeConflict.
//
// Host errors that are (or wrap) an *Error are returned as they are; any
// other error, or a panic, becomes CodeInternal with a generic message and
// is logged with the operation and worker name. The reply echoes
// req.RequestID.
func (d *Dispatcher) Do(ctx context.Context, req *Request) Reply {
	if req == nil {
		return d.fail(&Request{}, Errorf(CodeMalformed, "no request"))
	}
	r := *req
	if err := checkRequestID(r.RequestID); err != nil {
		r.RequestID = "" // never echoed back
		return d.fail(&r, err)
	}
	op, err := normalizeOperation(r.Operation)
	if err != nil {
		return d.fail(&r, err)
	}
	r.Operation = op
	if err := validate(&r); err != nil {
		return d.fail(&r, err)
	}
	if err := d.authorize(ctx, &r); err != nil {
		return d.fail(&r, err)
	}
	if refusal := d.refusal.Load(); refusal != nil && !readOnly(r.Operation) {
		return d.fail(&r, refusal)
	}
	result, herr := d.call(ctx, &r)
	if herr != nil {
		var ce *Error
		if errors.As(herr, &ce) && ce == nil {
			// Calling Error on it would panic, in the logger too.
			herr = fmt.Errorf("the host returned a nil %T as an error", ce)
		}
		if ce == nil {
			d.logger.Error("control request failed", append(logArgs(&r), "error", herr)...)
			d.count(Errorf(CodeInternal, internalMessage))
			return Reply{OK: false, Error: Errorf(CodeInternal, internalMessage), RequestID: r.RequestID}
		}
		return d.fail(&r, ce)
	}
	d.count(nil)
	level := hclog.Info
	if readOnly(r.Operation) {
		level = hclog.Debug // read-only and possibly frequent (monitoring)
	}
	d.logger.Log(level, "control request done", logArgs(&r)...)
	return Reply{OK: true, Result: result, RequestID: r.RequestID}
}

// Stats returns a copy of the counters.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Errors = make(map[Code]uint64, len(d.stats.Errors))
	for c, n := range d.stats.Errors {
		s.Errors[c] = n
	}
	return s
}

// call runs the Host method for r, turning a panic into an error so that a
// bug behind one request does not take down a transport.
func (d *Dispatcher) call(ctx context.Context, r *Request) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	switch r.Operation {
	case OpStartWorker:
		return d.host.StartWorker(ctx, WorkerSpec{
			Name:        r.WorkerName,
			Class:       r.WorkerClass,
			Config:      r.WorkerConfig,
			Supervisor:  r.Supervisor,
			Replace:     r.Replace,
			Cluster:     r.Cluster || systemWideRoute(RouteOf(ctx)),
			Constraints: maps.Clone(r.Constraints),
		})
	case OpDrain, OpUndrain, OpClusterStatus:
		ch, ok := d.host.(ClusterHost)
		if !ok {
			return nil, Errorf(CodeConflict, "this host is not part of a cluster (it has no cluster block)")
		}
		if r.Operation == OpClusterStatus {
			return ch.ClusterStatus(ctx)
		}
		return ch.Drain(ctx, r.Host, r.Operation == OpDrain)
	case OpStopWorker:
		if ws, ok := d.host.(WorkerStopper); ok {
			res, err := ws.StopWorkerResult(ctx, r.WorkerName)
			if err != nil {
				return nil, err
			}
			return res, nil
		}
		if err := d.host.StopWorker(ctx, r.WorkerName); err != nil {
			return nil, err
		}
		return api.WorkerResult{Worker: r.WorkerName, Action: "stopped"}, nil
	case OpRestartWorker:
		if err := d.host.RestartWorker(ctx, r.WorkerName); err != nil {
			return nil, err
		}
		return api.WorkerResult{Worker: r.WorkerName, Action: "restarted"}, nil
	case OpKillWorker:
		// validate checked worker_name. kill_worker changes the host (a
		// crash, then a restart): Do refuses it while the host stops.
		kh, ok := d.host.(KillHost)
		if !ok {
			return nil, Errorf(CodeConflict, "this host cannot kill a worker's process (kill_worker)")
		}
		return kh.KillWorker(ctx, r.WorkerName)
	case OpStatus:
		return d.host.Status(ctx)
	case OpListClasses:
		return d.host.Classes(ctx)
	case OpReload:
		return d.host.Reload(ctx)
	case OpStartSupervisor:
		spec, err := supervisorSpec(r)
		if err != nil {
			return nil, err // validate checked it already
		}
		return d.host.StartSupervisor(ctx, spec)
	case OpStopSupervisor:
		return d.host.StopSupervisor(ctx, r.Supervisor)
	case OpLogs:
		return d.logs(ctx, r)
	}
	// normalizeOperation let through an operation this switch lacks.
	return nil, fmt.Errorf("operation %q has no handler", r.Operation)
}

// fail counts and logs a request that failed with err, and returns its
// reply. Bad requests are logged at info level: they come from clients and
// change nothing; refusals of the control policy at warn level; internal
// errors at error level.
func (d *Dispatcher) fail(r *Request, err *Error) Reply {
	d.count(err)
	level := hclog.Info
	switch {
	case err.Code == CodeInternal:
		level = hclog.Error
	case refusedByPolicy(err.Code):
		level = hclog.Warn // someone tried what the control policy refuses
	}
	d.logger.Log(level, "control request failed", append(logArgs(r), "code", string(err.Code), "error", err.Message)...)
	return Reply{OK: false, Error: err, RequestID: r.RequestID}
}

func (d *Dispatcher) count(err *Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Handled++
	if err == nil {
		return
	}
	d.stats.Failed++
	if d.stats.Errors == nil {
		d.stats.Errors = map[Code]uint64{}
	}
	d.stats.Errors[err.Code]++
}

// logArgs lists what may be logged about a request: never its
// worker_config. Values come from the network, so they are cut short.
func logArgs(r *Request) []any {
	args := []any{"operation", short(r.Operation)}
	if r.WorkerName != "" {
		args = append(args, "worker", short(r.WorkerName))
	}
	if r.WorkerClass != "" {
		args = append(args, "class", short(r.WorkerClass))
	}
	if r.SupervisorName != "" {
		args = append(args, "supervisor_name", short(r.SupervisorName))
	}
	if r.Supervisor != "" {
		args = append(args, "supervisor", short(r.Supervisor))
	}
	if r.Host != "" {
		args = append(args, "host", short(r.Host))
	}
	if r.Cluster {
		args = append(args, "cluster", true)
	}
	if r.RequestID != "" {
		args = append(args, "request_id", short(r.RequestID))
	}
	return args
}

// short makes s fit for a log line: control characters escaped (as in Go
// string literals) and cut to a sane length.
func short(s string) string {
	c := cut(s, maxClassLen)
	truncated := len(c) < len(s)
	if strings.IndexFunc(c, unicode.IsControl) >= 0 || !utf8.ValidString(c) {
		q := strconv.Quote(c)
		c = q[1 : len(q)-1]
	}
	if truncated {
		c += "..."
	}
	return c
}

// validate checks the fields r.Operation needs.
func validate(r *Request) *Error {
	switch r.Operation {
	case OpStartWorker:
		if err := checkName("worker_name", r.WorkerName); err != nil {
			return err
		}
		if err := checkClass(r.WorkerClass); err != nil {
			return err
		}
		if err := checkConfig(r.WorkerConfig); err != nil {
			return err
		}
		if err := checkConfigSize(r.WorkerConfig); err != nil {
			return err
		}
		if err := checkConstraints(r.Constraints); err != nil {
			return err
		}
		return checkSupervisor(r.Supervisor)
	case OpDrain, OpUndrain:
		return checkHost(r.Host)
	case OpStopWorker, OpRestartWorker:
		return checkName("worker_name", r.WorkerName)
	case OpKillWorker:
		return checkName("worker_name", r.WorkerName)
	case OpStartSupervisor:
		_, err := supervisorSpec(r)
		return err
	case OpStopSupervisor:
		return checkStopSupervisor(r.Supervisor)
	case OpLogs:
		_, err := logsQuery(r, time.Now())
		return err
	}
	return nil
}

// MaxConstraints bounds the constraints of a start.
const MaxConstraints = config.MaxClusterLabels

// systemWideRoute reports whether an AMQP routing key addresses the whole
// system ("<system_id>.any" or "<system_id>.all") rather than one host.
func systemWideRoute(key string) bool {
	return strings.HasSuffix(key, ".any") || strings.HasSuffix(key, ".all")
}

// checkConstraints checks a start's constraints: at most MaxConstraints,
// keys and values 1 to config.MaxLabelBytes bytes of UTF-8 without
// control characters. Messages quote keys (cut short), never values.
func checkConstraints(c map[string]string) *Error {
	if len(c) > MaxConstraints {
		return invalid("constraints", "constraints has %d labels: at most %d are allowed", len(c), MaxConstraints)
	}
	for _, k := range slices.Sorted(maps.Keys(c)) {
		v := c[k]
		switch {
		case k == "":
			return invalid("constraints", "constraints has an empty label name")
		case len(k) > config.MaxLabelBytes:
			return invalid("constraints", "constraints label %s is longer than %d bytes", quoteShort(k), config.MaxLabelBytes)
		case !utf8.ValidString(k) || strings.IndexFunc(k, unicode.IsControl) >= 0:
			return invalid("constraints", "constraints label %s must be text without control characters", quoteShort(k))
		case v == "":
			return invalid("constraints", "constraints label %s has an empty value", quoteShort(k))
		case len(v) > config.MaxLabelBytes:
			return invalid("constraints", "the value of constraints label %s is longer than %d bytes", quoteShort(k), config.MaxLabelBytes)
		case !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0:
			return invalid("constraints", "the value of constraints label %s must be text without control characters", quoteShort(k))
		}
	}
	return nil
}

// checkHost checks the host of a drain or undrain: a host name as the
// host block's name accepts. Whether the host exists is the Host's to say.
func checkHost(host string) *Error {
	if host == "" {
		return invalid("host", "host is missing: name the host to drain or undrain")
	}
	if err := config.ValidateHostName(host); err != nil {
		return invalid("host", "host %s is not a valid host name: %v", quoteShort(host), err)
	}
	return nil
}

func invalid(field, format string, args ...any) *Error {
	e := Errorf(CodeInvalidConfig, format, args...)
	e.Details = []Detail{{Attribute: field, Summary: e.Message}}
	return e
}

// checkName checks a worker_name or a supervisor_name.
func checkName(field, name string) *Error {
	if name == "" {
		return invalid(field, "%s is missing: name the %s", field, strings.TrimSuffix(field, "_name"))
	}
	validate := config.ValidateName
	if field == "worker_name" {
		validate = config.ValidateWorkerName
	}
	if err := validate(name); err != nil {
		return invalid(field, "%s %s is not a valid name: %v", field, quoteShort(name), err)
	}
	return nil
}

func checkClass(class string) *Error {
	switch {
	case class == "":
		return invalid("worker_class", "worker_class is missing: name the worker's class, e.g. as listed by list_classes")
	case len(class) > maxClassLen || !utf8.ValidString(class) || strings.IndexFunc(class, unicode.IsControl) >= 0:
		return invalid("worker_class", "worker_class %s is not a class name", quoteShort(class))
	}
	return nil
}

// checkConfig accepts a JSON object, null or nothing. The schema check is
// the Host's: it knows the class.
func checkConfig(raw json.RawMessage) *Error {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil
	}
	if !json.Valid(t) {
		return malformed("worker_config", "worker_config is not valid JSON")
	}
	if k := kind(t); k != "an object" {
		return malformed("worker_config", "%q must be an object, not %s", "worker_config", k)
	}
	return nil
}

// checkSupervisor accepts "" (the root) or a path such as "root/campaign-a"
// (or "campaign-a", or with a leading or trailing "/") whose segments are
// valid names. Whether the supervisor exists is the Host's to say.
func checkSupervisor(path string) *Error {
	trimmed := strings.Trim(path, "/")
	if trimmed == "" {
		return nil
	}
	for seg := range strings.SplitSeq(trimmed, "/") {
		if err := config.ValidateName(seg); err != nil {
			return invalid("supervisor", "supervisor %s is not a supervisor path such as %q: %v", quoteShort(path), config.RootName+"/name", err)
		}
	}
	return checkDepth("supervisor", path)
}

// HTTPStatus returns the HTTP status code the HTTP API answers an error of
// code c with: 400 for malformed and unknown_operation, 422 for
// invalid_config and unknown_class, 409 for conflict, 404 for not_found,
// 401 for unauthorized and unauthenticated, 403 for forbidden and 500 for
// internal and unknown codes.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeMalformed, CodeUnknownOperation:
		return http.StatusBadRequest
	case CodeUnknownClass, CodeInvalidConfig:
		return http.StatusUnprocessableEntity
	case CodeConflict:
		return http.StatusConflict
	case CodeNotFound:
		return http.StatusNotFound
	case CodeUnauthorized, CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}
