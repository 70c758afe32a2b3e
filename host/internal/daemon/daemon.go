// Package daemon assembles a running host: it loads the HCL configuration,
// scans the plugin catalog, builds the supervision tree and runs the
// configured workers, each in a plugin process of its own, until it is told
// to stop.
//
// Lifecycle: Load (config, catalog, tree; nothing runs yet) → Run (connect
// to the broker and start the event publisher, open the bus, serve the HTTP
// API, start the workers in declared order and restore the dynamic ones,
// then take AMQP control messages; supervise) → cancel Run's context
// (shut down, below).
//
// Shutdown order, each step finished before the next begins:
//
//  1. Stop taking control requests: the AMQP control consumers end (an
//     AMQP message cut short is left for redelivery) and every request
//     that would change the host is refused with a conflict saying the
//     host is shutting down. Status, list_classes, /metrics and /v1/events
//     keep answering over HTTP, so an operator can watch the workers stop.
//  2. With a cluster block: leave the cluster (Agent.Leave, at most
//     15 s): the host's cluster workers stop, their running keys go and
//     its lease is revoked, so that the other hosts start them at once;
//     then the etcd client closes.
//  3. Stop the supervisors: every worker stops in reverse declared order
//     within its shutdown_timeout (killed after it), sub-supervisors
//     before their parents go on.
//  4. Publish the lifecycle events still queued, the worker_stopping and
//     worker_stopped of step 3 among them, in order and confirmed by the
//     broker, for at most 5 s; what is left then is logged as not
//     published.
//  5. Close the workers' bus, the broker connection, the HTTP server,
//     the warm spares and the workers' log files.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/events"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/status"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// Options configure a Daemon.
type Options struct {
	// ConfigPath is an HCL file or a directory of them.
	ConfigPath string
	// Logger receives the host's own logs and the re-logged plugin logs.
	Logger hclog.Logger
	// KeepLogLevel keeps the Logger's level instead of applying the
	// config's log_level (set when the level came from the command line).
	KeepLogLevel bool
	// PluginWatchInterval is how often plugin_dir is checked for changes;
	// 0 means catalog.DefaultWatchInterval, a negative value turns the
	// watch off.
	PluginWatchInterval time.Duration
	// EventHook, if set, is called for every supervision event after the
	// daemon has logged and recorded it.
	EventHook func(supervise.Event)
	// Version is the host's version, as the cluster's host records show
	// it; "" is fine.
	Version string
}

// Daemon is one host process's worth of supervised workers.
type Daemon struct {
	opts   Options
	logger hclog.Logger
	cfg    *config.Config
	// catalog is the plugin catalog; a reload replaces it (read it with
	// Catalog).
	catalog atomic.Pointer[catalog.Catalog]
	// policy authenticates and authorises control requests; nil without
	// a control block (see auth.go).
	policy *auth.Policy

	// tree owns every supervisor and worker, and what control messages
	// persisted.
	tree *tree.Tree

	// eventLog keeps the most recent events for GET /v1/events;
	// eventMapper gives them their wire form (events.go).
	eventLog    *events.Ring
	eventMapper events.Mapper
	// spares holds warm spare plugin processes; Run's shutdown closes it.
	spares *pluginproc.Spares
	// exec holds the verified copies of plugin binaries that workers and
	// spares run from (host.exec_dir); made by Load once the state
	// directory is locked, removed by Run's shutdown.
	exec *pluginproc.ExecStore
	// logs keeps each worker's recent log (logs.go); made by Load, its
	// files closed by Run's shutdown once the workers are stopped.
	logs *worklog.Store
	// store is the state directory, locked while the host runs; Run's
	// shutdown releases it.
	store *state.Store
	tr    transports
	// pluginSig is plugin_dir's listing when the catalog was scanned.
	pluginSig string
	// started is when Run began.
	started time.Time

	// Monitoring (monitor.go, vumimetrics.go): mon is made once, by
	// monitor(); workerMetrics holds the workers' own metrics.
	monOnce sync.Once
	mon     *monitor.Monitor
	// details keeps the workers' Status() answers between status
	// reports (see status.Details).
	details status.Details
	// bus carries the workers' messages (bus.go); set by Run.
	busMu         sync.Mutex
	bus           broker.Bus
	bridges       *broker.Bridges // the worker processes' bridges on bus
	workerMetrics *monitor.Registry

	// cl is the host's side of its cluster (cluster.go); nil without a
	// cluster block.
	cl *clusterSide

	mu      sync.Mutex
	running bool
}

// ConfigError is returned by Load when the configuration has errors; it
// carries every diagnostic.
type ConfigError struct {
	Diags hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	errs := e.Diags.Errs()
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("configuration has %d error(s): %s", len(errs), strings.Join(msgs, "; "))
}

// Load reads the configuration and scans the plugin catalog. Nothing is
// started. A configuration with errors returns a *ConfigError.
func Load(ctx context.Context, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	// Parse keeps going after errors and Decode checks what it can, so a
	// bad configuration reports every diagnostic at once.
	file, diags := config.Parse(opts.ConfigPath)
	if file == nil {
		return nil, &ConfigError{Diags: diags}
	}
	logger := opts.Logger
	if lvl := hclog.LevelFromString(file.Host.LogLevel); lvl != hclog.NoLevel && !opts.KeepLogLevel {
		logger.SetLevel(lvl)
	}
	if n := pluginproc.CleanStaleSocketDirs(); n > 0 {
		logger.Info("removed plugin socket directories left by hosts that died", "count", n)
	}
	// The listing is read before the scan, so that a change during the
	// scan is noticed by the watch (catalog.Watch) and scanned again.
	pluginSig := catalog.ListingSignature(file.Host.PluginDir, watchedFiles(file.Host)...)
	// The exec store is not there yet (it needs the state directory's
	// lock): the binaries this scan describes are hashed as they are
	// launched, and copied at their first start.
	cat, err := ScanCatalog(ctx, file.Host, logger, nil)
	if err != nil {
		return nil, err
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return nil, &ConfigError{Diags: diags}
	}
	logContainment(logger, cfg)
	d := &Daemon{opts: opts, logger: logger, cfg: cfg, pluginSig: pluginSig,
		eventLog: events.NewRing(eventLogSize), eventMapper: newEventMapper(cfg),
		workerMetrics: monitor.NewRegistry(0)}
	if n := cfg.Host.WarmSpares; n > 0 {
		// Warm spares of a binary, once a worker of it failed or was
		// started by a control message (see pluginproc.Spares); nil
		// keeps none.
		d.spares = pluginproc.NewSpares(n, logger.Named("spares"))
	}
	d.catalog.Store(cat)
	if d.policy, err = newPolicy(cfg); err != nil {
		return nil, err
	}
	if cfg.AMQP != nil {
		d.tr.connSet = make(chan struct{})
	}
	if cfg.Cluster != nil {
		if d.cl, err = newClusterSide(cfg); err != nil {
			return nil, err
		}
	}
	if err := d.openWorkerLogs(); err != nil {
		return nil, err
	}
	store, st, err := openState(cfg.Host, logger)
	if err != nil {
		return nil, err
	}
	d.store = store
	if d.exec, err = openExecStore(cfg.Host, logger); err != nil {
		store.Close()
		return nil, err
	}
	d.spares.UseExecStore(d.exec)
	d.tree, err = tree.New(tree.Options{
		Logger:           logger,
		Store:            store,
		State:            st,
		Launch:           d.launch,
		Resolve:          d.resolve,
		EventHook:        d.onEvent,
		Forget:           d.forget,
		ControlStarted:   d.warmSpare,
		StartConcurrency: cfg.Host.StartConcurrency,
		Limits:           cfg.Limits,
	}, cfg.Root)
	if err != nil {
		_ = d.exec.Close()
		store.Close()
		return nil, err
	}
	return d, nil
}

// logContainment says how this machine contains workers (contain.Detect,
// which also kills what the workers of hosts that died left in their
// cgroups) and warns about the configured limits it cannot enforce.
func logContainment(logger hclog.Logger, cfg *config.Config) {
	sup := contain.Detect().Support()
	by := func(s string) string {
		if s == contain.NotEnforced {
			return "not enforced"
		}
		return s
	}
	logger.Info("worker containment", "kill", sup.Kill, "memory", by(sup.Memory), "pids", by(sup.Pids),
		"cpu", by(sup.CPU), "open_files", by(sup.OpenFiles), "cgroup2", sup.Cgroup2, "notes", sup.Notes)
	for _, d := range config.LimitWarnings(cfg, sup) {
		logger.Warn(d.Summary, "detail", d.Detail)
	}
}

// ScanCatalog scans the plugin directory of a host block, with the describe
// cache in its state directory. The binaries it describes are run from
// exec's verified copies, made as they are launched; nil hashes them at
// their launch instead (the CLI's scans, which describe each binary once).
func ScanCatalog(ctx context.Context, h config.HostConfig, logger hclog.Logger, exec *pluginproc.ExecStore) (*catalog.Catalog, error) {
	cacheFile := ""
	if h.StateDir != "" {
		// It holds secrets (the state file): private from the start.
		if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating state_dir: %w", err)
		}
		cacheFile = filepath.Join(h.StateDir, "catalog-cache.json")
	}
	cat, err := catalog.Scan(ctx, catalog.Options{
		Dir:       h.PluginDir,
		CacheFile: cacheFile,
		Logger:    logger.Named("catalog"),
		Lock:      h.PluginLock,
		Env:       h.PluginEnvList(),
		Exec:      exec,
	})
	if err != nil {
		return nil, fmt.Errorf("scanning plugin_dir: %w", err)
	}
	return cat, nil
}

// Config returns the loaded configuration.
func (d *Daemon) Config() *config.Config { return d.cfg }

// Catalog returns the plugin catalog.
func (d *Daemon) Catalog() *catalog.Catalog { return d.catalog.Load() }

// Run starts the configured workers in declared order (up to
// host.start_concurrency starts in flight at once) and supervises them
// until ctx is done; then it stops them all in reverse order, each within
// its shutdown timeout, and returns. Start failures do not end Run: the
// supervisor retries or marks the worker failed. When the host itself
// cannot start (the broker, the HTTP API, the control channel) Run stops
// what it started and returns a *StartupError.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("daemon is already running")
	}
	d.running = true
	d.mu.Unlock()

	d.logger.Info("host starting", "system_id", d.cfg.SystemID, "host", d.cfg.Host.Name,
		"plugin_dir", d.cfg.Host.PluginDir, "classes", len(d.Catalog().Classes()), "broker", d.brokerDescription())
	for _, p := range d.Catalog().Problems() {
		d.logger.Error("plugin file is unusable", "path", p.Path, "error", p.Err)
	}
	started := time.Now()
	d.started = started
	// The broker connection (if any) and the bus come before anything that
	// can start a worker (the HTTP API included): workers use the bus from
	// their Start on.
	d.initTransports()
	if err := d.dialBroker(); err != nil {
		return &StartupError{Err: errors.Join(fmt.Errorf("connecting to the broker: %w", err), d.shutdown())}
	}
	d.openBus()
	if err := d.startHTTP(ctx); err != nil {
		if ctx.Err() != nil {
			return d.shutdown() // told to stop while starting: a clean stop
		}
		return &StartupError{Err: errors.Join(err, d.shutdown())}
	}
	n := d.tree.Start(ctx)
	// The host joins its cluster (if it has a cluster block) once its own
	// workers run; it goes on without etcd until it reaches it.
	d.startCluster()
	// Control messages are taken once the persisted workers are back, so
	// that a message about one of them finds it.
	if err := d.startAMQP(); err != nil {
		return &StartupError{Err: errors.Join(fmt.Errorf("starting the control channel: %w", err), d.shutdown())}
	}
	d.logger.Info("host running", "workers", n, "startup", time.Since(started).Round(time.Millisecond).String())
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		d.runMonitor(ctx)
	}()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if every := d.opts.PluginWatchInterval; every >= 0 {
			if every == 0 {
				every = catalog.DefaultWatchInterval
			}
			catalog.Watch(ctx, d.cfg.Host.PluginDir, every, d.pluginSig, d.rescan, watchedFiles(d.cfg.Host)...)
		}
	}()
	<-ctx.Done()
	<-watchDone
	<-monDone
	return d.shutdown()
}

// StartupError is Run's error when the host could not start (the broker,
// the HTTP API or the control channel failed); what it had started was
// stopped again, and Err includes any error of that stop.
type StartupError struct{ Err error }

func (e *StartupError) Error() string { return e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

func (d *Daemon) brokerDescription() string {
	if d.cfg.AMQP == nil {
		return "embedded (no amqp block)"
	}
	return "amqp " + d.cfg.AMQP.Redacted()
}

// shutdown stops the host in an order that loses nothing it can keep (see
// the package documentation):
//
//  1. stop taking control requests (stopControl): a request cannot start
//     a worker behind the shutdown's back, and no request waits on a host
//     that is going away;
//  2. leave the cluster, if the host is in one (leaveCluster): its cluster
//     workers stop and its lease is revoked, so that the other hosts take
//     them over at once, not after the lease's TTL;
//  3. stop the supervisors, root first: each stops its children in reverse
//     declared order, each within its own shutdown timeout, a
//     sub-supervisor its own children likewise before its parent goes on;
//  4. publish the events still queued, the workers' stop events among
//     them, within eventDrainTimeout (drainEvents): they need the broker
//     connection, so it is still open;
//  5. close the workers' bus, the broker connection, the warm spares and
//     the workers' log files.
func (d *Daemon) shutdown() error {
	d.logger.Info("host stopping")
	d.stopControl()
	d.leaveCluster()
	// Stop bounds each worker by its own shutdown timeout, so the context
	// here only guards against a bug.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	err := d.tree.Stop(ctx)
	cancel()
	// No supervisor emits events anymore: what is queued is all there is.
	d.drainEvents()
	// The workers are down: their consumers' unacked messages go back to
	// their queues.
	d.closeBus()
	d.closeBroker()
	d.closeHTTP()
	d.closePolicy()
	// Kill and reap the warm spares; none is launched after this.
	d.spares.Close()
	// Nothing is launched any more: remove the verified copies (a plugin
	// process still running one keeps it until it exits).
	if cerr := d.exec.Close(); cerr != nil {
		d.logger.Warn("removing the verified copies of plugin binaries", "error", cerr)
	}
	// No worker runs: close the workers' log files.
	d.closeWorkerLogs()
	// Another host may use the state directory from now on.
	if cerr := d.store.Close(); cerr != nil {
		d.logger.Warn("releasing the state directory's lock", "error", cerr)
	}
	d.logger.Info("host stopped")
	return err
}

// openExecStore makes the store of verified executables in host.exec_dir
// (default <state_dir>/exec), emptied: the state directory's lock, held
// by now, makes it this host's alone.
func openExecStore(h config.HostConfig, logger hclog.Logger) (*pluginproc.ExecStore, error) {
	dir := h.ExecDir
	if dir == "" {
		dir = filepath.Join(h.StateDir, pluginproc.ExecDirName)
	}
	s, err := pluginproc.NewExecStore(dir, logger.Named("exec"))
	if err != nil {
		return nil, fmt.Errorf("host.exec_dir: %w", err)
	}
	return s, nil
}

// setCatalog installs a rescanned catalog and removes the verified copies
// of the binaries it no longer has.
func (d *Daemon) setCatalog(cat *catalog.Catalog) {
	d.catalog.Store(cat)
	keep := map[string][]byte{}
	for _, b := range cat.Binaries() {
		keep[b.Path] = b.SHA256
	}
	d.exec.Retain(keep)
}

// openState opens the state directory, locked against other hosts, and
// loads the dynamic workers persisted by earlier control messages, with the
// names they hold checked as control messages' are. A corrupt state file
// has been kept aside by the store; the host starts without it and says so
// loudly. A state file it cannot decrypt, or a state_dir another host
// holds, stops the host from starting.
func openState(h config.HostConfig, logger hclog.Logger) (*state.Store, *state.State, error) {
	var key []byte
	if h.StateKeyFile != "" {
		k, err := state.LoadKey(h.StateKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("host.%w", err)
		}
		key = k
	}
	store, err := state.OpenWith(h.StateDir, state.Options{Logger: logger.Named("state"), Holder: h.Name,
		Key: key, ValidName: config.ValidateName})
	if err != nil {
		return nil, nil, fmt.Errorf("opening state_dir: %w", err)
	}
	st, err := store.Load()
	if err != nil {
		if !errors.Is(err, state.ErrCorrupt) {
			store.Close()
			return nil, nil, fmt.Errorf("loading persisted workers: %w", err)
		}
		logger.Error("persisted dynamic workers could not be read; starting without them", "error", err)
	}
	return store, st, nil
}

// forget drops what the host keeps about a worker that is gone: its metric
// series, and its log (worklog.Store.Remove keeps it readable among the
// most recently removed ones). It is the tree's Options.Forget. The Monitor's pruning after each
// flush is the other half: it removes series a worker's process recorded
// after this (a late Env.Metric while it stopped), which nothing else
// would, at the cost of the stopped worker's last partial interval, which
// this drops.
func (d *Daemon) forget(name string) {
	d.workerMetrics.Remove(monitor.WorkerPrefix(d.cfg.SystemID, d.cfg.Host.Name, name))
	// Its log stays readable for a while, among the last removed ones.
	if d.logs != nil {
		d.logs.Remove(name)
	}
}

// Workers returns the status of every worker, in tree order.
func (d *Daemon) Workers() []api.Worker {
	infos := d.tree.Workers()
	out := make([]api.Worker, len(infos))
	for i, wi := range infos {
		out[i] = wi.WithConfig()
	}
	return out
}

// Worker returns the status of the named worker.
func (d *Daemon) Worker(name string) (api.Worker, bool) {
	wi, ok := d.tree.Worker(name)
	if !ok {
		return api.Worker{}, false
	}
	return wi.WithConfig(), true
}

// Supervisors returns the status of every supervisor, in tree order.
func (d *Daemon) Supervisors() []api.Supervisor { return d.tree.Supervisors() }

// Tree returns the host's supervision tree.
func (d *Daemon) Tree() *tree.Tree { return d.tree }

// ProcessOf returns the plugin process of a worker instance, as found in
// supervise events and status, or nil if inst is none (e.g. a supervisor).
func ProcessOf(inst supervise.Instance) *pluginproc.Process { return tree.ProcessOf(inst) }

// Sizes reports how many entries the host's maps and rings hold: the
// tree's (names, name locks, persisted records), the worker metric
// registry's series, the processes the monitor tracks, the event ring, and
// the logs of the workers (not those of removed workers, which are kept
// up to worklog.MaxRemoved).
// What a worker adds is removed with it, so after workers come and go the
// sizes return to what they were: tests assert that.
func (d *Daemon) Sizes() map[string]int {
	out := d.tree.Sizes()
	out["metric_series"] = d.workerMetrics.Len()
	out["monitored_processes"] = d.monitor().Tracked()
	out["event_ring"] = d.eventLog.Len()
	if d.logs != nil {
		// The logs of the host's workers; those of removed workers are
		// kept up to worklog.MaxRemoved.
		out["worker_logs"], _ = d.logs.Len()
	}
	return out
}
