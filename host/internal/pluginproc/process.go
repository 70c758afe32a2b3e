package pluginproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

// Defaults for the zero values of Options.
const (
	DefaultStartTimeout   = 30 * time.Second
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthFailures = 3
	// StatusTimeout bounds a Status call.
	StatusTimeout = 5 * time.Second
)

// Options says which worker to start in which binary. Zero durations and
// counts mean the defaults above.
type Options struct {
	// Path is the plugin binary.
	Path string
	// Checksum is the binary's sha256 as recorded by the catalog. Required:
	// a binary whose content changed since is not run (ErrBinaryChanged).
	Checksum []byte
	// Exec, if set, is the store of verified executables the process is
	// run from: the copy of the binary it verified against Checksum, run
	// without hashing it again (see ExecStore). Nil hashes the binary at
	// every launch.
	Exec *ExecStore

	WorkerName, Class string
	// ConfigJSON is the worker's config, validated and decoded by the host.
	ConfigJSON         []byte
	SystemID, HostName string

	// StartTimeout bounds launch, handshake and the Start RPC together.
	StartTimeout time.Duration
	// HealthInterval is the time between two health checks.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check.
	HealthTimeout time.Duration
	// HealthFailures failed checks in a row kill the process.
	HealthFailures int

	// Logger receives the plugin's stderr (hclog JSON, levels kept) under a
	// sub-logger named after the worker; its level is passed to the plugin
	// (wire.EnvLogLevel). Nil discards.
	Logger hclog.Logger
	// Scrubber replaces the worker's sensitive config values in all the
	// plugin says before the host logs, stores or shows it: its log lines
	// and stderr, the errors of its RPCs, its status details, the names of
	// its metrics, and what the host logs of its Host service calls. Nil
	// scrubs nothing.
	Scrubber *scrub.Scrubber
	// LogLimit bounds how much of the plugin's log the host re-logs.
	LogLimit LogLimit
	// Log, if set, is the worker's log (package worklog): every line the
	// worker's plugin process writes to stderr (what it logs through the
	// SDK, and plain lines such as a panic's stack) goes to it, scrubbed
	// by Scrubber and whatever LogLimit drops from the host's own log,
	// after a marker line where the process begins serving the worker
	// ("start" for the log's first instance, "restart" later) and before
	// one where it ends ("exit", saying how). A warm spare's lines from
	// before a Start took it go nowhere. Nil keeps no worker log.
	Log *worklog.Log

	// Env holds extra "KEY=value" entries for the plugin's environment (the
	// host's host.plugin_env), on top of the few variables of the host's own
	// environment that plugins get (see cleanEnv): nothing else of the
	// host's environment reaches a plugin.
	Env []string

	// ChildHost answers the worker's calls to start, stop and list child
	// workers (the Host service of a hybrid worker); nil refuses them. It
	// may be called before Start returns. See ChildHost.
	ChildHost ChildHost
	// BusHost carries the worker's messages (the Host service's Publish,
	// Consume, Ack and Nack); nil refuses them with FailedPrecondition. It
	// may be called before Start returns, and the consumers it made are
	// closed when the process is gone. See BusHost.
	BusHost BusHost
	// MetricSink receives the worker's own metrics (Env.Metric); nil
	// refuses them with FailedPrecondition. See MetricSink.
	MetricSink MetricSink
	// HostCallTimeout bounds each call of the worker to the Host service
	// (the setup of a Consume stream, not the stream itself); zero means
	// DefaultHostCallTimeout.
	HostCallTimeout time.Duration

	// Limits are the resource limits of the worker's processes (its
	// cgroup, or rlimits where the machine has none; see contain). Zero:
	// none, but the process still gets a cgroup of its own, so that all
	// of its processes are stopped with it.
	Limits contain.Limits

	// Spares, if set, is the pool of warm spares Start takes the process
	// from when it holds one for this Path, Checksum, Env and the Logger's
	// level (see Spares). Nil launches a process for every Start.
	Spares *Spares

	// pollHealth makes the host poll the worker's Health even when its
	// plugin sends health beats; only tests set it, to test the fallback
	// for plugins built with an older SDK.
	pollHealth bool
}

func (o Options) withDefaults() Options {
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	if o.HealthFailures <= 0 {
		o.HealthFailures = DefaultHealthFailures
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.HostCallTimeout <= 0 {
		o.HostCallTimeout = DefaultHostCallTimeout
	}
	return o
}

// Process is one running plugin process serving one worker. Its methods are
// safe for concurrent use.
type Process struct {
	path   string
	logger hclog.Logger // the worker's logger; set before Start returns
	// baseLogger is go-plugin's client logger (fixed at launch).
	baseLogger hclog.Logger
	sockDir    string             // the plugin's socket directory
	cancelExec context.CancelFunc // cancels exec.Cmd's context; may be nil
	client     *plugin.Client
	cmd        *exec.Cmd
	group      *contain.Group // the process's cgroups; nil methods do nothing
	pid        int
	watch      *exitWatch
	worker     proto.WorkerClient
	broker     *plugin.GRPCBroker // go-plugin's, for the Host service
	tail       *stderrTail
	sink       *stderrSink // where the plugin's stderr enters the host
	// scrubber is the worker's (nil for a spare not yet taken).
	scrubber atomic.Pointer[scrub.Scrubber]
	phase    atomic.Int32
	// unhealthy is set while the last health check failed.
	unhealthy atomic.Bool
	// beats counts the health beats received (see healthBeats).
	beats atomic.Int64

	healthInterval time.Duration
	healthTimeout  time.Duration
	healthFailures int
	// pollHealth makes the host poll Health even when the plugin sends
	// health beats (tests of the fallback).
	pollHealth bool

	done     chan struct{} // closed by watchExit once the process is reaped
	stopping chan struct{} // closed when Stop begins; ends the health loop
	killMu   sync.Mutex    // serialises client.Kill

	mu            sync.Mutex
	killReason    string       // why the host killed the process; first one wins
	stopStarted   bool         // Stop was called
	stopRequested bool         // Stop was called while the process ran
	stopKilled    bool         // a Stop deadline passed and killed the process
	stopRPCErr    error        // the Stop RPC's error
	final         *ExitError   // how it ended; set before done is closed
	hostSrv       *grpc.Server // serves the Host service; set by Start
	hostImpl      *hostServer  // its implementation; set with hostSrv
	hostStopped   bool         // the process is gone: no Host service any more
	// healthCancel ends the health beats' stream; nil until it is opened.
	healthCancel context.CancelFunc
}

// Start launches a fresh plugin process for the worker, or takes a warm
// spare from o.Spares, and returns once the worker's Start RPC has returned
// OK. It gives up when ctx is done or after o.StartTimeout, whichever comes
// first. On any error the process is killed and reaped before Start returns,
// and the error is a *StartError, permanent when the plugin rejected the
// config. A Process taken from a spare behaves in every way like one
// launched for this Start.
func Start(ctx context.Context, o Options) (*Process, error) {
	o = o.withDefaults()
	switch {
	case o.Path == "":
		return nil, &StartError{Permanent: true, Err: errors.New("no plugin binary given")}
	case len(o.Checksum) == 0:
		return nil, &StartError{Permanent: true, Err: fmt.Errorf("plugin %s: no checksum given (the catalog records one)", o.Path)}
	case o.Class == "":
		return nil, &StartError{Permanent: true, Err: errors.New("no class given")}
	}
	startCtx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	budget := o.StartTimeout
	if dl, ok := startCtx.Deadline(); ok {
		budget = time.Until(dl)
	}
	// The plugin's own log lines are scrubbed by its stderrSink; what the
	// host logs about the worker goes through logger, scrubbed too.
	plain := workerLogger(o.Logger, o.WorkerName)
	logger := scrub.Logger(plain, o.Scrubber)
	lc := launchConfig{
		path:     o.Path,
		checksum: o.Checksum,
		exec:     o.Exec,
		logger:   plain,
		timeout:  fmt.Sprintf("start_timeout (%s)", budget.Round(time.Millisecond)),
		scrubber: o.Scrubber,
		logLimit: o.LogLimit,
		name:     o.WorkerName,
		limits:   o.Limits,
	}
	spares := o.Spares
	key := newSpareKey(o.Path, o.Checksum, o.Logger.GetLevel(), o.Env, o.Limits)
	p, launching := spares.take(key, plain)
	if launching != nil {
		// A spare being launched is ready sooner than a process launched now.
		p = spares.await(startCtx, launching, plain)
		if p == nil && startCtx.Err() != nil {
			return nil, &StartError{Err: deadlineError(startCtx, lc, "waiting for a warm spare to be launched")}
		}
	}
	fromSpare := p != nil
	if fromSpare {
		// The start deadline applies to the spare from now on, as it does
		// to a process launched for this Start (exec.Cmd's Cancel).
		stop := context.AfterFunc(startCtx, p.cancelExec)
		defer stop()
	} else {
		lc.env = pluginEnv(o.Logger, o.Env)
		var err error
		if p, err = launch(startCtx, lc); err != nil {
			// An untrusted binary stays untrusted until an operator acts; a
			// binary that no longer matches its checksum fails the same way at
			// every retry until the catalog rescans it. Both are permanent, so
			// that they do not spend the supervisor's restart budget.
			return nil, &StartError{Err: err, Permanent: errors.Is(err, ErrUntrusted) || errors.Is(err, ErrBinaryChanged)}
		}
	}
	if fromSpare {
		p.scrubber.Store(o.Scrubber)
		p.sink.assign(o.Scrubber, o.LogLimit)
	}
	// From now on the process's lines are the worker's: a spare's lines
	// from before are not, a launched process's are.
	p.sink.begin(o.Log, p.pid, !fromSpare)
	p.logger = logger
	p.healthInterval = o.HealthInterval
	p.healthTimeout = o.HealthTimeout
	p.healthFailures = o.HealthFailures
	p.pollHealth = o.pollHealth

	// The Host service is served from now on, whether the process was
	// launched for this Start or taken from the spares (see serveHost).
	hostID, err := p.serveHost(startCtx, &hostServer{
		worker:   o.WorkerName,
		children: o.ChildHost,
		bus:      o.BusHost,
		metrics:  o.MetricSink,
		timeout:  o.HostCallTimeout,
		logger:   logger,
		scrubber: o.Scrubber,
	})
	if err != nil {
		p.signalKill()
		<-p.done
		spares.started(key, fromSpare, false)
		if startCtx.Err() != nil {
			return nil, &StartError{Err: deadlineError(startCtx, lc, "serving the Host service")}
		}
		return nil, &StartError{Err: hostError(o.Path, err)}
	}
	_, err = p.worker.Start(startCtx, &proto.StartRequest{
		WorkerName:   o.WorkerName,
		Class:        o.Class,
		ConfigJson:   o.ConfigJSON,
		SystemId:     o.SystemID,
		HostBrokerId: hostID,
		HostName:     o.HostName,
	})
	if err == nil && !p.markRunning() {
		err = startCtx.Err() // the deadline passed just as Start returned
	}
	if err != nil {
		p.signalKill()
		<-p.done
		spares.started(key, fromSpare, false)
		return nil, p.startError(startCtx, lc, err)
	}
	spares.started(key, fromSpare, true)
	if spares != nil {
		go spares.watchWorker(key, o.Checksum, p)
	}
	go p.healthLoop()
	return p, nil
}

// startError explains a failed Start RPC; the process is gone.
func (p *Process) startError(ctx context.Context, lc launchConfig, err error) error {
	if ctx.Err() != nil {
		return &StartError{Err: deadlineError(ctx, lc, "waiting for the worker's Start to return")}
	}
	msg := p.rpcMessage(err)
	switch status.Code(err) {
	case codes.InvalidArgument:
		return &StartError{Permanent: true, Err: fmt.Errorf("%w: %s", sdk.ErrInvalidConfig, trimPrefix(msg, sdk.ErrInvalidConfig.Error()+": "))}
	case codes.ResourceExhausted:
		// The request is over a gRPC message limit (the config is too
		// large for the plugin): every retry would fail the same way.
		return &StartError{Permanent: true, Err: fmt.Errorf("start: %w: %s", ErrTooLarge, msg)}
	case codes.Unavailable, codes.Canceled:
		p.mu.Lock()
		final := p.final
		p.mu.Unlock()
		if final != nil {
			return &StartError{Err: fmt.Errorf("plugin %s exited during Start: %w", p.path, final)}
		}
	}
	return &StartError{Err: fmt.Errorf("start: %s", msg)}
}

// workerLogger is the logger the plugin's stderr is re-logged under.
func workerLogger(l hclog.Logger, worker string) hclog.Logger {
	if worker == "" {
		return l
	}
	return l.Named(worker)
}

func trimPrefix(s, prefix string) string {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// Pid returns the plugin process's pid.
func (p *Process) Pid() int { return p.pid }

// Done returns a channel that is closed once the process has ended and been
// reaped, for whatever reason.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr tells why the process ended. It is nil while the process runs,
// when it exited with status 0, and after a Stop (Stop itself returns what
// went wrong while stopping). Otherwise it is an *ExitError.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopRequested || p.final == nil {
		return nil
	}
	return p.final
}

// Kill kills the process and its process group with SIGKILL and returns
// without waiting; Done is closed once the process is gone. The first
// reason given becomes ExitError.Reason.
func (p *Process) Kill(reason string) {
	if reason == "" {
		reason = "killed by the host"
	}
	p.mu.Lock()
	if p.killReason == "" {
		p.killReason = reason
	}
	p.mu.Unlock()
	p.signalKill()
}

// Stop stops the worker and returns once the process is gone. It calls the
// worker's Stop with ctx's remaining time as its timeout, then lets go-plugin
// shut the plugin down gracefully; if ctx is done first, the process group
// is killed with SIGKILL. Give ctx a deadline (the shutdown_timeout).
//
// Stop returns nil when the process ended normally, an *ExitError whose
// Reason says so when it had to be killed or when it exited abnormally, or
// the error of the worker's Stop. Stop may be called several times and
// concurrently; every call returns once the process is gone, and a caller
// whose ctx ends first kills it.
func (p *Process) Stop(ctx context.Context) error {
	dl, hasDeadline := ctx.Deadline()
	budget := time.Until(dl)
	p.mu.Lock()
	first := !p.stopStarted
	p.stopStarted = true
	running := !isClosed(p.done)
	if first {
		p.stopRequested = running
		close(p.stopping)
		if p.healthCancel != nil {
			p.healthCancel()
		}
	}
	p.mu.Unlock()
	if !running {
		return nil
	}
	if first {
		go p.shutdown(ctx, true)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		reason := "stop was cancelled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = "did not stop in time"
			if hasDeadline {
				reason = fmt.Sprintf("did not stop within shutdown_timeout (%s)", budget.Round(time.Millisecond))
			}
		}
		p.mu.Lock()
		p.stopKilled = true
		p.mu.Unlock()
		p.Kill(reason)
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.final != nil && p.stopKilled:
		return fmt.Errorf("%w: %w", ErrKilledAtStop, p.final)
	case p.final != nil:
		return p.final
	case p.stopRPCErr != nil:
		return fmt.Errorf("stop: %s", p.rpcMessage(p.stopRPCErr))
	}
	return nil
}

// shutdown asks the worker to stop (if rpc) and then lets go-plugin end the
// process: it closes the connection and asks the plugin's server to stop,
// after which sdk.Serve returns and the process exits (go-plugin kills it if
// that takes more than 2s). When ctx ends first, the caller kills it.
func (p *Process) shutdown(ctx context.Context, rpc bool) {
	if rpc {
		req := &proto.StopRequest{}
		if dl, ok := ctx.Deadline(); ok {
			req.TimeoutMs = max(time.Until(dl).Milliseconds(), 1)
		}
		_, err := p.worker.Stop(ctx, req)
		// A process that exits while stopping drops the connection; its
		// exit status says more than the RPC error. A ctx that ended is
		// the caller's to report.
		if c := status.Code(err); err != nil && !ctxEnded(ctx) && c != codes.Unavailable && c != codes.Canceled {
			p.mu.Lock()
			p.stopRPCErr = err
			p.mu.Unlock()
		}
	}
	// Past the deadline the caller kills the process. Shutting go-plugin
	// down now would let the plugin exit 0 first, a clean exit for a worker
	// whose Stop never returned.
	if ctxEnded(ctx) {
		return
	}
	p.killMu.Lock()
	p.client.Kill()
	p.killMu.Unlock()
}

// ctxEnded reports whether ctx is done or its deadline has passed. The two
// differ for a moment: the plugin's gRPC server ends a call at its deadline,
// so the Stop RPC can fail with DeadlineExceeded before ctx's own timer has
// fired, which on a busy machine may be late.
func ctxEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Health asks the worker whether it is healthy, within HealthTimeout (or
// ctx's deadline if sooner). An unhealthy answer or no answer is an error.
func (p *Process) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.healthTimeout)
	defer cancel()
	resp, err := p.worker.Health(ctx, &proto.HealthRequest{})
	if err != nil {
		if status.Code(err) == codes.DeadlineExceeded {
			return fmt.Errorf("no answer within health_timeout (%s)", p.healthTimeout)
		}
		return fmt.Errorf("health check: %s", p.rpcMessage(err))
	}
	if !resp.GetHealthy() {
		msg := resp.GetMessage()
		if msg == "" {
			msg = "no reason given"
		}
		return fmt.Errorf("unhealthy: %s", p.scrub(msg))
	}
	return nil
}

// Status returns the worker's status details, a JSON object ("{}" when the
// worker reports none), within StatusTimeout (or ctx's deadline if sooner).
func (p *Process) Status(ctx context.Context) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, StatusTimeout)
	defer cancel()
	resp, err := p.worker.Status(ctx, &proto.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("status: %s", p.rpcMessage(err))
	}
	b := resp.GetDetailsJson()
	if len(b) == 0 {
		return json.RawMessage("{}"), nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("status: the plugin sent invalid JSON")
	}
	if sc := p.scrubber.Load(); !sc.Empty() {
		out, ok := sc.JSON(b)
		if !ok {
			return nil, fmt.Errorf("status: the plugin sent invalid JSON")
		}
		b = out
	}
	return json.RawMessage(b), nil
}

// healthLoop watches the worker's health until the process ends or Stop
// begins, and kills it after healthFailures failed checks in a row: from the
// plugin's health beats (see healthBeats), or, for a plugin that sends none,
// by polling its Health (see pollHealthLoop).
func (p *Process) healthLoop() {
	if !p.pollHealth && !p.healthBeats() {
		return
	}
	p.pollHealthLoop()
}

// pollHealthLoop checks the worker's health every healthInterval until the
// process ends or Stop begins, and kills it after healthFailures failed
// checks in a row. A check begins healthInterval (at most) after the one
// before began, not after it ended, so that a hung worker, whose checks
// each take healthTimeout, is killed within healthInterval ×
// healthFailures + healthTimeout. The checks of all the host's workers
// fall on a common grid (see wire.NextHealthCheck), so that they come in
// batches rather than one every few milliseconds: an idle host then wakes
// once per batch instead of once per check.
func (p *Process) pollHealthLoop() {
	next := wire.NextHealthCheck(time.Now(), p.healthInterval)
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-p.done:
			return
		case <-p.stopping:
			return
		case <-t.C:
		}
		// The next check is due an interval after this one was due;
		// after a wake-up later than that (the host was stopped or
		// starved), an interval from now.
		if now := time.Now(); now.Sub(next) > p.healthInterval {
			next = now
		}
		next = wire.NextHealthCheck(next, p.healthInterval)
		err := p.Health(context.Background())
		select {
		case <-p.done:
			return
		case <-p.stopping:
			return // the answer of a stopping worker means nothing
		default:
		}
		p.unhealthy.Store(err != nil)
		if err == nil {
			failures = 0
		} else {
			failures++
			p.logger.Warn("health check failed", "failures", failures, "limit", p.healthFailures, "error", err)
			if failures >= p.healthFailures {
				p.logger.Error("killing unhealthy plugin process", "pid", p.pid)
				p.Kill(fmt.Sprintf("health check failed %d times in a row (last: %v)", failures, err))
				return
			}
		}
		// A check that took longer than the interval is followed at once.
		t.Reset(max(time.Until(next), 0))
	}
}

// Healthy reports whether the worker runs and its last health check (if
// any was made yet) passed. A worker whose Start returned counts as healthy
// until a health check says otherwise.
func (p *Process) Healthy() bool {
	return !isClosed(p.done) && !isClosed(p.stopping) && !p.unhealthy.Load()
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
