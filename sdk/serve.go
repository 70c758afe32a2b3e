package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
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
	level := hclog.LevelFromString(os.Getenv(wire.EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Output:     os.Stderr,
		Level:      level,
		JSONFormat: true, // parsed by the host, which keeps the levels
	})
	startWatchdog(logger)
	srv := newServer(classes, logger)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			1: {wire.PluginName: &wire.GRPCWorkerPlugin{Impl: srv}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger.Named("go-plugin"),
	})
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
// OS, or the rare case of the launching thread exiting first).
func startWatchdog(logger hclog.Logger) {
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
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			check()
		}
	}()
}

// server implements proto.WorkerServer for the classes of one binary. One
// plugin process runs at most one worker.
type server struct {
	proto.UnimplementedWorkerServer

	classes []Class
	byName  map[string]Class
	logger  hclog.Logger

	mu     sync.Mutex
	broker *plugin.GRPCBroker // go-plugin's, for the host's Host service
	host   *hostConn          // the worker's connection to it; nil if none
	env    *processEnv
	worker Worker
	state  string // "", "starting", "running", "stopping", "stopped"
}

// SetBroker implements wire.BrokerUser.
func (s *server) SetBroker(b *plugin.GRPCBroker) {
	s.mu.Lock()
	s.broker = b
	s.mu.Unlock()
}

func newServer(classes []Class, logger hclog.Logger) *server {
	s := &server{classes: classes, byName: map[string]Class{}, logger: logger}
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

	c, ok := s.byName[req.GetClass()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "class %q is not offered by this plugin", req.GetClass())
	}
	w, err := c.NewWorker(req.GetConfigJson())
	if err != nil {
		return nil, startError(err)
	}
	env := &processEnv{
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
	if err := w.Start(ctx, env); err != nil {
		env.bus.stopAll(ctx)
		if host != nil {
			host.close()
		}
		return nil, startError(err)
	}
	s.mu.Lock()
	s.host = host
	s.env = env
	s.worker = w
	s.state = "running"
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

// processEnv is the Env of a worker in a plugin process.
type processEnv struct {
	name, class, systemID, hostName string
	logger                          hclog.Logger
	children                        Children
	bus                             *bus
}

func (e *processEnv) WorkerName() string   { return e.name }
func (e *processEnv) ClassName() string    { return e.class }
func (e *processEnv) SystemID() string     { return e.systemID }
func (e *processEnv) HostName() string     { return e.hostName }
func (e *processEnv) Logger() hclog.Logger { return e.logger }
func (e *processEnv) Children() Children   { return e.children }

func (e *processEnv) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	return e.bus.publish(ctx, routingKey, body, headers)
}

func (e *processEnv) Consume(queue string, handler Handler, opts ...ConsumeOption) error {
	return e.bus.consume(queue, handler, opts...)
}

func (e *processEnv) Metric(name string, value float64, aggregators ...string) error {
	return e.bus.metric(name, value, aggregators)
}

func (e *processEnv) Exit(err error) {
	if err != nil {
		e.logger.Error("worker exited", "error", err)
		os.Exit(1)
	}
	e.logger.Info("worker finished")
	os.Exit(0)
}
