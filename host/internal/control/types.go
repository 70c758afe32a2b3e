package control

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// Operations a control message can ask for (payload.operation).
const (
	OpStartWorker   = "vumi_worker" // the Blinkenlights name; "start_worker" is an alias
	OpStartAlias    = "start_worker"
	OpStopWorker    = "stop_worker"
	OpRestartWorker = "restart_worker"
	OpStatus        = "status"
	OpListClasses   = "list_classes"
	OpReload        = "reload"
	// OpStartSupervisor starts a supervisor under a parent supervisor.
	OpStartSupervisor = "start_supervisor"
	// OpStopSupervisor stops a supervisor and its subtree.
	OpStopSupervisor = "stop_supervisor"
	// OpDrain and OpUndrain drain a host of a cluster (field host) of its
	// cluster workers, or end that; OpClusterStatus reports the whole
	// system (api.ClusterView). Hosts without a cluster block answer them
	// with a conflict.
	OpDrain         = "drain"
	OpUndrain       = "undrain"
	OpClusterStatus = "cluster_status"
	// OpLogs returns the last lines of a worker's log (worker_name, and
	// optionally lines, since, after); it only reads the host. Hosts
	// whose Host does not implement LogsHost answer it with a conflict.
	OpLogs = "logs"
	// OpKillWorker kills a worker's process with SIGKILL, as a crash
	// would, for chaos drills: its supervisor restarts it as after a
	// crash. Hosts whose Host does not implement KillHost answer it with
	// a conflict.
	OpKillWorker = "kill_worker"
)

// Code is the machine-readable kind of a control error (DESIGN §5).
type Code string

// The error codes of the control protocol.
const (
	CodeMalformed        Code = "malformed"         // not JSON, not an object, or a field of the wrong type
	CodeUnknownOperation Code = "unknown_operation" // operation missing or not one of the Op* names
	CodeUnknownClass     Code = "unknown_class"     // no plugin offers worker_class
	CodeInvalidConfig    Code = "invalid_config"    // worker_config, a name or another field fails validation
	CodeConflict         Code = "conflict"          // the name is taken by a different spec or by an HCL worker
	CodeNotFound         Code = "not_found"         // no such worker or supervisor
	CodeUnauthorized     Code = "unauthorized"      // missing or wrong bearer token (HTTP)
	CodeUnauthenticated  Code = "unauthenticated"   // the sender could not be authenticated by the control policy (see package auth)
	CodeForbidden        Code = "forbidden"         // the authenticated principal may not do this
	CodeInternal         Code = "internal"          // anything else; the host logs the cause
)

// Request is a decoded control payload. The same shape is accepted bare or
// as the payload of a Blinkenlights envelope.
type Request struct {
	Operation    string          `json:"operation"`
	WorkerName   string          `json:"worker_name,omitempty"`
	WorkerClass  string          `json:"worker_class,omitempty"`
	WorkerConfig json.RawMessage `json:"worker_config,omitempty"`
	// Supervisor is the path of the target supervisor: the one to start a
	// worker under (vumi_worker) or a supervisor under (start_supervisor),
	// where "" means the root; the one to stop (stop_supervisor), where it
	// is required.
	Supervisor string `json:"supervisor,omitempty"`
	// Replace lets a start replace a running worker of the same name whose
	// spec differs (otherwise that is a conflict).
	Replace bool `json:"replace,omitempty"`
	// SupervisorName names the supervisor start_supervisor starts.
	SupervisorName string `json:"supervisor_name,omitempty"`
	// Strategy is start_supervisor's restart strategy: one_for_one (the
	// default when ""), one_for_all or rest_for_one.
	Strategy string `json:"strategy,omitempty"`
	// Intensity is start_supervisor's restart intensity, a JSON integer
	// from 0 to 1000000 (0: no automatic restart); empty or null means the
	// default. It is kept as JSON so that Dispatcher.Do checks it whoever
	// built the Request.
	Intensity json.RawMessage `json:"intensity,omitempty"`
	// Period is start_supervisor's intensity period: a duration string
	// such as "30s" or a JSON number of seconds, greater than zero; empty
	// or null means the default.
	Period    json.RawMessage `json:"period,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	// Cluster makes a start a cluster start on a host with a cluster
	// block: the worker is written to the system's desired state and
	// placed on any host (a start that arrives through the .any or .all
	// routing key is one too). Ignored by hosts without a cluster block.
	Cluster bool `json:"cluster,omitempty"`
	// Constraints are labels a host must have to run a cluster worker,
	// e.g. {"zone": "a"}.
	Constraints map[string]string `json:"constraints,omitempty"`
	// Host names the host that drain and undrain act on.
	Host string `json:"host,omitempty"`
	// Lines is how many of the last lines of a worker's log logs returns
	// (0: DefaultLogLines; at most the lines kept).
	Lines int `json:"lines,omitempty"`
	// Since limits logs to the lines at or after a time: an RFC 3339 time
	// or a duration back from now ("10m").
	Since string `json:"since,omitempty"`
	// After limits logs to the lines whose seq is greater (a follower's
	// position, api.LogsResult.Next).
	After uint64 `json:"after,omitempty"`
}

// Reply is the answer to a request, as sent to reply_to or returned over
// HTTP: {"ok": true, "result": ...} or {"ok": false, "error": {...}}.
type Reply struct {
	OK        bool   `json:"ok"`
	Result    any    `json:"result,omitempty"`
	Error     *Error `json:"error,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Error is a control error. It never contains a sensitive config value.
type Error struct {
	Code    Code     `json:"code"`
	Message string   `json:"message"`
	Details []Detail `json:"details,omitempty"`
}

// Detail is one diagnostic behind an error, e.g. one bad config attribute.
type Detail struct {
	// Attribute names the config attribute or request field at fault, if any.
	Attribute string `json:"attribute,omitempty"`
	Summary   string `json:"summary"`
	Detail    string `json:"detail,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WorkerSpec is what a start request asks for, before validation.
type WorkerSpec struct {
	Name       string
	Class      string
	Config     json.RawMessage // a JSON object; nil or null means {}
	Supervisor string          // "" means the root
	Replace    bool
	// Cluster asks for a cluster start (see Request.Cluster); the
	// dispatcher also sets it for a start that came through a system-wide
	// routing key (.any, .all).
	Cluster     bool
	Constraints map[string]string
}

// ClusterHost is implemented by a Host that can be part of a cluster. A
// host without a cluster block answers each with a CodeConflict error
// saying so.
type ClusterHost interface {
	// Drain drains host (on) of its cluster workers, or ends that (off).
	Drain(ctx context.Context, host string, on bool) (api.DrainResult, error)
	// ClusterStatus is the whole system.
	ClusterStatus(ctx context.Context) (api.ClusterView, error)
}

// DefaultLogLines is how many lines logs returns when the request does
// not say.
const DefaultLogLines = 100

// LogsQuery is what a logs request asks for, checked by the dispatcher.
type LogsQuery struct {
	Name  string
	Lines int       // > 0
	Since time.Time // zero: no limit
	After uint64
}

// LogsHost is implemented by a Host that keeps its workers' logs (package
// worklog).
type LogsHost interface {
	// Logs returns the kept lines of worker q.Name's log that q asks for:
	// at most q.Lines of the last ones, those at or after q.Since and
	// after q.After. A name the host has no log of is CodeNotFound.
	Logs(ctx context.Context, q LogsQuery) (api.LogsResult, error)
	// WaitLogs blocks until worker name's log has lines after seq after,
	// or ctx is done, and returns those lines (Skipped counting those no
	// longer kept). It returns ctx's error when ctx is done first.
	WaitLogs(ctx context.Context, name string, after uint64) (api.LogsResult, error)
}

// KillHost is implemented by a Host that can kill a worker's process for
// chaos drills (kill_worker).
type KillHost interface {
	// KillWorker kills the running process of worker name with SIGKILL.
	// A worker that is not running (stopped, or between a crash and its
	// restart) is CodeConflict; an unknown name CodeNotFound.
	KillWorker(ctx context.Context, name string) (api.KillResult, error)
}

type routeKey struct{}

// WithRoute returns ctx carrying the AMQP routing key a request came
// with; the dispatcher reads it (RouteOf) to tell a system-wide start.
func WithRoute(ctx context.Context, routingKey string) context.Context {
	return context.WithValue(ctx, routeKey{}, routingKey)
}

// RouteOf returns the routing key of WithRoute, or "".
func RouteOf(ctx context.Context) string {
	s, _ := ctx.Value(routeKey{}).(string)
	return s
}

// Host is what the dispatcher drives; the daemon implements it. Every
// method returns only once its effect is durable (persisted), so that a
// transport may ack or answer right after. Errors that callers should see
// are *Error values with the right code; any other error is reported as
// CodeInternal with a generic message and logged.
type Host interface {
	StartWorker(ctx context.Context, spec WorkerSpec) (api.StartResult, error)
	StopWorker(ctx context.Context, name string) error
	RestartWorker(ctx context.Context, name string) error
	Status(ctx context.Context) (api.Status, error)
	Classes(ctx context.Context) (api.ClassList, error)
	Reload(ctx context.Context) (api.ReloadResult, error)
	StartSupervisor(ctx context.Context, spec SupervisorSpec) (api.SupervisorResult, error)
	StopSupervisor(ctx context.Context, path string) (api.SupervisorResult, error)
}

// WorkerStopper is implemented by a Host whose stops say whether the
// worker had to be killed at its shutdown_timeout; the dispatcher's
// stop_worker then answers with that result (api.WorkerResult.Killed)
// instead of a bare "stopped".
type WorkerStopper interface {
	StopWorkerResult(ctx context.Context, name string) (api.WorkerResult, error)
}

// SupervisorSpec is what a start_supervisor request asks for, before
// validation by the host.
type SupervisorSpec struct {
	Name      string        // the new supervisor's name, unique in the host
	Parent    string        // path of the parent supervisor; "" means the root
	Strategy  string        // "" means one_for_one
	Intensity int           // 0 means the default (5); negative allows no restart
	Period    time.Duration // 0 means the default (30s)
}
