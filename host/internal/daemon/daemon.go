// Package daemon assembles a running host: it loads the HCL configuration,
// scans the plugin catalog, builds the supervision tree and runs the
// configured workers, each in a plugin process of its own, until it is told
// to stop.
//
// Lifecycle: Load (config, catalog, tree; nothing runs yet) → Run (start
// the workers in declared order, supervise them) → cancel Run's context
// (stop every worker in reverse order within its shutdown timeout).
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

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
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
	// 0 means DefaultPluginWatchInterval, a negative value turns the watch
	// off.
	PluginWatchInterval time.Duration
	// EventHook, if set, is called for every supervision event after the
	// daemon has logged and recorded it.
	EventHook func(supervise.Event)
}

// Daemon is one host process's worth of supervised workers.
type Daemon struct {
	opts   Options
	logger hclog.Logger
	cfg    *config.Config
	// catalog is the plugin catalog; a reload replaces it (read it with
	// Catalog).
	catalog atomic.Pointer[catalog.Catalog]

	// sups holds every supervisor, depth first in declared order, then
	// those started by control messages; sups[0] is the root. Guarded by
	// supMu (start_supervisor and stop_supervisor change it).
	supMu sync.RWMutex
	sups  []*supNode

	events *eventLog
	// spares holds warm spare plugin processes; Run's shutdown closes it.
	spares *pluginproc.Spares
	reg    registry
	tr     transports
	// pluginSig is plugin_dir's listing when the catalog was scanned.
	pluginSig string
	// started is when Run began.
	started time.Time

	// Monitoring (monitor.go, vumimetrics.go): mon is made once, by
	// monitor(); workerMetrics holds the workers' own metrics.
	monOnce sync.Once
	mon     *monitor.Monitor
	// bus carries the workers' messages (bus.go); set by Run.
	busMu         sync.Mutex
	bus           broker.Bus
	workerMetrics *monitor.Registry

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
	// scan is noticed by the watch (watchPlugins) and scanned again.
	pluginSig := listingSignature(file.Host.PluginDir)
	cat, err := ScanCatalog(ctx, file.Host, logger)
	if err != nil {
		return nil, err
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return nil, &ConfigError{Diags: diags}
	}
	d := &Daemon{opts: opts, logger: logger, cfg: cfg, events: newEventLog(100), pluginSig: pluginSig,
		workerMetrics: monitor.NewRegistry(0)}
	if n := cfg.Host.WarmSpares; n > 0 {
		// Warm spares of a binary, once a worker of it failed or was
		// started by a control message (see pluginproc.Spares); nil
		// keeps none.
		d.spares = pluginproc.NewSpares(n, logger.Named("spares"))
	}
	d.catalog.Store(cat)
	if cfg.AMQP != nil {
		// Created before any supervisor can emit an event; the publisher
		// starts with the AMQP transport and drains what queued meanwhile.
		d.tr.events = make(chan supervise.Event, eventQueue)
		d.tr.connSet = make(chan struct{})
	}
	if err := d.build(cfg.Root, nil); err != nil {
		return nil, err
	}
	if err := d.openState(); err != nil {
		d.stopSupervisors()
		return nil, err
	}
	return d, nil
}

// ScanCatalog scans the plugin directory of a host block, with the describe
// cache in its state directory.
func ScanCatalog(ctx context.Context, h config.HostConfig, logger hclog.Logger) (*catalog.Catalog, error) {
	cacheFile := ""
	if h.StateDir != "" {
		if err := os.MkdirAll(h.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating state_dir: %w", err)
		}
		cacheFile = filepath.Join(h.StateDir, "catalog-cache.json")
	}
	cat, err := catalog.Scan(ctx, catalog.Options{
		Dir:       h.PluginDir,
		CacheFile: cacheFile,
		Logger:    logger.Named("catalog"),
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

// Events returns the most recent supervision events, oldest first.
func (d *Daemon) Events() []supervise.Event { return d.events.list() }

// Run starts the configured workers in declared order (up to
// host.start_concurrency starts in flight at once) and supervises them
// until ctx is done; then it stops them all in reverse order, each within
// its shutdown timeout, and returns. Start failures do not end Run: the
// supervisor retries or marks the worker failed.
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
		return errors.Join(fmt.Errorf("connecting to the broker: %w", err), d.shutdown())
	}
	d.openBus()
	if err := d.startHTTP(ctx); err != nil {
		if ctx.Err() != nil {
			return d.shutdown() // told to stop while starting: a clean stop
		}
		return errors.Join(err, d.shutdown())
	}
	n := d.startAll(ctx)
	n += d.restoreDynamic(ctx)
	// Control messages are taken once the persisted workers are back, so
	// that a message about one of them finds it.
	if err := d.startAMQP(); err != nil {
		return errors.Join(fmt.Errorf("starting the control channel: %w", err), d.shutdown())
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
				every = DefaultPluginWatchInterval
			}
			d.watchPlugins(ctx, every)
		}
	}()
	<-ctx.Done()
	<-watchDone
	<-monDone
	return d.shutdown()
}

// startAll adds every configured worker to its supervisor in declared
// order, depth first, and returns once each first start attempt has ended.
// Starts overlap up to host.start_concurrency: starting a plugin process is
// mostly waiting (exec, handshake) and checksumming, so overlapping them
// brings a host with many workers up several times faster than one by one.
func (d *Daemon) startAll(ctx context.Context) int {
	sem := make(chan struct{}, max(d.cfg.Host.StartConcurrency, 1))
	var wg sync.WaitGroup
	n := 0
	for _, sn := range d.supNodes() {
		for _, c := range sn.cfg.Children {
			if c.Supervisor != nil {
				// Its children are added when the loop reaches it; it
				// runs already, so its start here returns at once.
				if sub, ok := d.supervisorByPath(c.Supervisor.Path); ok {
					if err := sn.sup.Add(ctx, supChildSpec(sub)); err != nil && ctx.Err() == nil {
						d.logger.Error("adding supervisor", "supervisor", sub.cfg.Path, "error", err)
					}
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			result, err := sn.sup.AddAsync(ctx, d.childSpec(c.Worker))
			if err != nil {
				<-sem
				d.logger.Error("adding worker", "worker", c.Worker.Name, "error", err)
				continue
			}
			n++
			wg.Go(func() {
				// A failed first start is logged by the event hook; the
				// supervisor retries or marks the worker failed.
				<-result
				<-sem
			})
		}
	}
	wg.Wait()
	return n
}

func (d *Daemon) brokerDescription() string {
	if d.cfg.AMQP == nil {
		return "embedded (no amqp block)"
	}
	return "amqp " + d.cfg.AMQP.Redacted()
}

// shutdown stops the root supervisor, which stops its children in reverse
// declared order, each within its own shutdown timeout; a sub-supervisor
// stops its own children likewise before its parent goes on. Then the
// goroutines of the (stopped) sub-supervisors end.
func (d *Daemon) shutdown() error {
	d.logger.Info("host stopping")
	d.stopTransports()
	var errs []error
	for _, sn := range d.supNodes() {
		// Stop bounds each worker by its own shutdown timeout, so the
		// context here only guards against a bug.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := sn.sup.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping supervisor %q: %w", sn.cfg.Path, err))
		}
		cancel()
	}
	// The workers are down: their consumers' unacked messages go back to
	// their queues.
	d.closeBus()
	d.closeBroker()
	// Kill and reap the warm spares; none is launched after this.
	d.spares.Close()
	d.logger.Info("host stopped")
	return errors.Join(errs...)
}

// openState opens the state directory and loads the dynamic workers
// persisted by earlier control messages. A corrupt state file has been
// kept aside by the store; the host starts without it and says so loudly.
func (d *Daemon) openState() error {
	store, err := state.Open(d.cfg.Host.StateDir, d.logger.Named("state"))
	if err != nil {
		return fmt.Errorf("opening state_dir: %w", err)
	}
	st, err := store.Load()
	if err != nil {
		if !errors.Is(err, state.ErrCorrupt) {
			return fmt.Errorf("loading persisted workers: %w", err)
		}
		d.logger.Error("persisted dynamic workers could not be read; starting without them", "error", err)
	}
	d.reg.store = store
	if st != nil {
		d.reg.dynamic = st.Workers
		d.reg.dynSups = st.Supervisors
	}
	return nil
}

// stopSupervisors ends the supervisors' goroutines of a daemon that will
// not run.
func (d *Daemon) stopSupervisors() {
	for _, sn := range d.supNodes() {
		_ = sn.sup.Stop(context.Background())
	}
}

// Workers returns the status of every worker, in tree order.
func (d *Daemon) Workers() []WorkerStatus {
	var out []WorkerStatus
	for _, sn := range d.supNodes() {
		for _, cs := range sn.sup.Status() {
			if !isSupervisorChild(cs) {
				out = append(out, workerStatus(sn.cfg.Path, cs))
			}
		}
	}
	return out
}

// Worker returns the status of the named worker.
func (d *Daemon) Worker(name string) (WorkerStatus, bool) {
	for _, sn := range d.supNodes() {
		if cs, ok := sn.sup.Child(name); ok && !isSupervisorChild(cs) {
			return workerStatus(sn.cfg.Path, cs), true
		}
	}
	return WorkerStatus{}, false
}
