package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// Serve serves the given classes as a plugin binary. Call it from main; it
// does not return. A binary may offer several classes; each worker runs in a
// process of its own, so one process serves one worker.
//
// Run by hand (not by a host), the binary prints a short explanation and
// exits 1. Invalid class definitions (bad names, duplicate names or aliases,
// unsupported config field types) are reported on stderr and exit 1.
func Serve(classes ...Class) {
	if err := validateClasses(classes); err != nil {
		fmt.Fprintf(os.Stderr, "dynworkers plugin: invalid classes: %v\n", err)
		os.Exit(1)
	}
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "This is a dynworkers worker plugin offering %d class(es); it is started by `dynworkers serve`, not by hand.\nPut it in the host's plugin_dir and run `dynworkers classes` to see what it offers.\n", len(classes))
		os.Exit(1)
	}
	level := parseLevel(os.Getenv(wire.EnvLogLevel))
	// JSON lines, parsed by the host, which keeps the levels.
	logger := newLogger(os.Stderr, level)
	startWatchdog(logger)
	srv := newServer(classes, logger)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			1: {wire.PluginName: &wire.GRPCWorkerPlugin{Impl: srv}},
		},
		GRPCServer: grpcServer,
		// go-plugin's own lines, in the same form.
		Logger: hclog.New(&hclog.LoggerOptions{
			Output:     os.Stderr,
			Level:      hclog.LevelFromString(levelName(level)),
			JSONFormat: true,
		}).Named("go-plugin"),
	})
}

// grpcServer is go-plugin's server with a static flow-control window: the
// host's calls are small, and gRPC's bandwidth estimate would answer each
// with a ping the host has to read and acknowledge, at every health check.
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return plugin.DefaultGRPCServer(append(opts, grpc.StaticStreamWindowSize(64<<10)))
}

func validateClasses(classes []Class) error {
	var errs []error
	if len(classes) == 0 {
		errs = append(errs, errors.New("no classes given to Serve"))
	}
	owner := map[string]string{}
	for _, c := range classes {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, n := range append([]string{c.Name}, c.Aliases...) {
			if prev, ok := owner[n]; ok {
				errs = append(errs, fmt.Errorf("name %q is claimed by classes %q and %q", n, prev, c.Name))
				continue
			}
			owner[n] = c.Name
		}
	}
	return errors.Join(errs...)
}

// startWatchdog exits the plugin when the host that started it is gone. On
// Linux the host also sets Pdeathsig; the watchdog covers the rest (another
// OS, or the rare case of the launching thread exiting first). Where the
// kernel has pidfds (Linux 5.3 and later) it waits for the host's exit
// without waking up at all (waitParentExit): an idle plugin costs the
// machine nothing, which matters with a thousand of them on one host.
// Elsewhere it polls the parent pid twice a second.
func startWatchdog(logger *slog.Logger) {
	want, err := strconv.Atoi(os.Getenv(wire.EnvParentPID))
	if err != nil {
		want = os.Getppid()
	}
	check := func() {
		if os.Getppid() != want {
			logger.Error("host process is gone; exiting", "host_pid", want)
			os.Exit(2)
		}
	}
	check()
	if !waitParentExit(want, check) {
		go pollParent(check)
	}
}

// pollParent calls check twice a second, for ever.
func pollParent(check func()) {
	for range time.Tick(500 * time.Millisecond) {
		check()
	}
}

// server implements proto.WorkerServer for the classes of one binary. One
// plugin process runs at most one worker.
type server struct {
	proto.UnimplementedWorkerServer

	classes []Class
	byName  map[string]Class
	logger  *slog.Logger
	// exit ends the process (os.Exit; tests replace it).
	exit       func(code int)
	exitOnce   sync.Once
	finishOnce sync.Once

	mu     sync.Mutex
	broker *plugin.GRPCBroker // go-plugin's, for the host's Host service
	host   *hostConn          // the worker's connection to it; nil if none
	env    *processEnv
	worker Worker
	// state: "", "starting", "running", then "failed" (Start failed),
	// "stopping" (the host's Stop), "exiting" (Env.Exit), "stopped"
	state string
	// started is closed once Start has returned (whatever its result),
	// exitStopped once an exit's Worker.Stop has.
	started, exitStopped chan struct{}
}

// SetBroker implements wire.BrokerUser.
func (s *server) SetBroker(b *plugin.GRPCBroker) {
	s.mu.Lock()
	s.broker = b
	s.mu.Unlock()
}

func newServer(classes []Class, logger *slog.Logger) *server {
	s := &server{classes: classes, byName: map[string]Class{}, logger: logger, exit: os.Exit,
		started: make(chan struct{}), exitStopped: make(chan struct{})}
	for _, c := range classes {
		s.byName[c.Name] = c
		for _, a := range c.Aliases {
			s.byName[a] = c
		}
	}
	return s
}

func (s *server) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	resp := &proto.DescribeResponse{SdkVersion: Version}
	for _, c := range s.classes {
		info, err := classInfo(c)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Classes = append(resp.Classes, info)
	}
	return resp, nil
}

func classInfo(c Class) (*proto.ClassInfo, error) {
	schema, err := c.Schema()
	if err != nil {
		return nil, err
	}
	info := &proto.ClassInfo{Name: c.Name, Aliases: c.Aliases, Description: c.Description, Version: c.Version}
	for _, a := range schema {
		pa := &proto.Attribute{Name: a.Name, Type: string(a.Type), Required: a.Required, Sensitive: a.Sensitive, Description: a.Description}
		if a.Default != nil {
			b, err := json.Marshal(a.Default)
			if err != nil {
				return nil, fmt.Errorf("class %q attribute %q: encoding default: %w", c.Name, a.Name, err)
			}
			pa.DefaultJson = string(b)
		}
		info.Schema = append(info.Schema, pa)
	}
	return info, nil
}

func (s *server) Start(ctx context.Context, req *proto.StartRequest) (*proto.StartResponse, error) {
	s.mu.Lock()
	if s.state != "" {
		s.mu.Unlock()
		return nil, status.Error(codes.FailedPrecondition, "this plugin process already runs a worker")
	}
	s.state = "starting"
	broker := s.broker
	s.mu.Unlock()
	defer close(s.started)

	c, ok := s.byName[req.GetClass()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "class %q is not offered by this plugin", req.GetClass())
	}
	w, err := c.newWorker(req.GetConfigJson())
	if err != nil {
		return nil, startError(err)
	}
	env := &processEnv{
		srv:      s,
		name:     req.GetWorkerName(),
		class:    c.Name,
		systemID: req.GetSystemId(),
		hostName: req.GetHostName(),
		logger:   s.logger.With("worker", req.GetWorkerName()),
		children: noChildren{},
	}
	var host *hostConn
	if id := req.GetHostBrokerId(); id != 0 {
		host = dialHost(broker, id, env.logger)
		env.children = hostChildren{h: host}
	}
	env.bus = newBus(host, env.logger)
	s.mu.Lock()
	s.host = host
	s.env = env
	s.worker = w
	s.mu.Unlock()
	if err := w.Start(ctx, &Env{b: env}); err != nil {
		s.mu.Lock()
		s.state = "failed"
		s.mu.Unlock()
		env.bus.stopAll(ctx)
		if host != nil {
			host.close()
		}
		return nil, startError(err)
	}
	s.mu.Lock()
	if s.state == "starting" {
		s.state = "running"
	}
	s.mu.Unlock()
	return &proto.StartResponse{}, nil
}

func startError(err error) error {
	if errors.Is(err, ErrInvalidConfig) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *server) running() Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != "running" {
		return nil
	}
	return s.worker
}

func (s *server) Stop(ctx context.Context, req *proto.StopRequest) (*proto.StopResponse, error) {
	s.mu.Lock()
	w := s.worker
	if s.state == "exiting" {
		// The worker is ending itself (Env.Exit): wait for its stop.
		s.mu.Unlock()
		select {
		case <-s.exitStopped:
		case <-ctx.Done():
		}
		return &proto.StopResponse{}, nil
	}
	if s.state != "running" {
		s.state = "stopped"
		s.mu.Unlock()
		return &proto.StopResponse{}, nil
	}
	s.state = "stopping"
	env := s.env
	s.mu.Unlock()
	if ms := req.GetTimeoutMs(); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	// Consumers stop first, so that no handler runs while the worker
	// stops; what they were delivered ahead is requeued.
	env.bus.stopAll(ctx)
	err := w.Stop(ctx)
	s.mu.Lock()
	s.state = "stopped"
	host := s.host
	s.mu.Unlock()
	if host != nil {
		host.close() // the worker may use it until its Stop returns
	}
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return &proto.StopResponse{}, nil
}

func (s *server) Health(ctx context.Context, _ *proto.HealthRequest) (*proto.HealthResponse, error) {
	w := s.running()
	if w == nil {
		return &proto.HealthResponse{Healthy: false, Message: "worker is not running"}, nil
	}
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	if err := env.bus.health(); err != nil {
		return &proto.HealthResponse{Healthy: false, Message: err.Error()}, nil
	}
	if hc, ok := w.(HealthChecker); ok {
		if err := hc.Health(ctx); err != nil {
			return &proto.HealthResponse{Healthy: false, Message: err.Error()}, nil
		}
	}
	return &proto.HealthResponse{Healthy: true}, nil
}

func (s *server) Status(ctx context.Context, _ *proto.StatusRequest) (*proto.StatusResponse, error) {
	w := s.running()
	sr, ok := w.(StatusReporter)
	if !ok {
		return &proto.StatusResponse{}, nil
	}
	details, err := sr.Status(ctx)
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	b, err := json.Marshal(details)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding status: %v", err)
	}
	return &proto.StatusResponse{DetailsJson: b}, nil
}

// processEnv is the backend of the Env of a worker in a plugin process.
type processEnv struct {
	srv                             *server
	name, class, systemID, hostName string
	logger                          *slog.Logger
	children                        Children
	bus                             *bus
}

func (e *processEnv) WorkerName() string   { return e.name }
func (e *processEnv) ClassName() string    { return e.class }
func (e *processEnv) SystemID() string     { return e.systemID }
func (e *processEnv) HostName() string     { return e.hostName }
func (e *processEnv) Logger() *slog.Logger { return e.logger }
func (e *processEnv) Children() Children   { return e.children }

func (e *processEnv) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	return e.bus.publish(ctx, routingKey, body, headers)
}

func (e *processEnv) Consume(cfg consumeConfig, handler Handler) error {
	return e.bus.consume(cfg, handler)
}

func (e *processEnv) Metric(name string, value float64, aggregators ...string) error {
	return e.bus.metric(name, value, aggregators)
}

// Exit starts the worker's exit (server.exitWorker) and ends the calling
// goroutine.
func (e *processEnv) Exit(err error) {
	e.srv.exitOnce.Do(func() { go e.srv.exitWorker(e, err) })
	runtime.Goexit()
}

// exitTimeout bounds an exit's stop of the consumers, flush and
// Worker.Stop; the process exits when it passes, done or not.
const exitTimeout = 10 * time.Second

// exitWorker ends the worker of env from the inside (Env.Exit, or Run's
// function returning): its consumers stop (handlers finish, deliveries
// ahead are requeued), the outbox is flushed, Worker.Stop is called, and
// the process exits: status 0 for a nil err, 1 otherwise, after the line
// the host's exit event shows ("worker exited" with the error). A worker
// that Exit finds starting is stopped once its Start has returned; one
// the host is stopping is left to that stop.
func (s *server) exitWorker(env *processEnv, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	backstop := time.AfterFunc(exitTimeout+2*time.Second, func() {
		s.finish(env.logger, err, errors.New("the exit's stop did not end in time"))
	})
	defer backstop.Stop()
	// The worker's Start may still run (Exit from a goroutine it
	// launched): wait for it, then stop what it started.
	select {
	case <-s.started:
	case <-ctx.Done():
	}
	s.mu.Lock()
	w, state := s.worker, s.state
	if state == "running" {
		s.state = "exiting"
	}
	host := s.host
	s.mu.Unlock()
	var stopErr error
	switch state {
	case "stopping", "stopped":
		// The host is stopping the worker: its Stop ends the process.
		backstop.Stop()
		return
	case "running":
		env.bus.stopAll(ctx) // consumers, then the outbox's flush
		stopErr = w.Stop(ctx)
		s.mu.Lock()
		s.state = "stopped"
		s.mu.Unlock()
		close(s.exitStopped)
		if host != nil {
			host.close()
		}
	default: // its Start failed, or Exit was called from Start
		env.bus.stopAll(ctx)
	}
	s.finish(env.logger, err, stopErr)
}

// finish logs how the worker exited and exits the process, once.
func (s *server) finish(logger *slog.Logger, err, stopErr error) {
	s.finishOnce.Do(func() {
		if stopErr != nil {
			logger.Warn("stopping the exiting worker failed", "error", stopErr)
		}
		if err != nil {
			logger.Error("worker exited", "error", err)
			s.exit(1)
			return
		}
		logger.Info("worker finished")
		s.exit(0)
	})
}
