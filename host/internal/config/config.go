package config

import (
	"time"

	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Defaults applied when the configuration does not set a value.
const (
	DefaultSystemID          = "global"
	DefaultPluginDir         = "./bin/plugins"
	DefaultStateDir          = "./var"
	DefaultHTTPAddr          = "127.0.0.1:7780"
	DefaultLogLevel          = "info"
	DefaultStartConcurrency  = 4
	DefaultWarmSpares        = 1
	DefaultMetricsInterval   = 5 * time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultStrategy          = StrategyOneForOne
	DefaultIntensity         = 5
	DefaultPeriod            = 30 * time.Second
	DefaultRestart           = RestartPermanent
	DefaultStartTimeout      = 30 * time.Second
	DefaultShutdownTimeout   = 5 * time.Second
	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
	DefaultBackoffInitial    = 10 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffReset      = 10 * time.Second
)

// RootName is the name, and the path, of the host's root supervisor.
const RootName = "root"

// Supervisor strategies (Erlang/OTP semantics).
const (
	StrategyOneForOne  = "one_for_one"
	StrategyOneForAll  = "one_for_all"
	StrategyRestForOne = "rest_for_one"
)

// Worker restart policies.
const (
	RestartPermanent = "permanent"
	RestartTransient = "transient"
	RestartTemporary = "temporary"
)

// Strategies lists the valid supervisor strategies.
var Strategies = []string{StrategyOneForOne, StrategyOneForAll, StrategyRestForOne}

// Restarts lists the valid worker restart policies.
var Restarts = []string{RestartPermanent, RestartTransient, RestartTemporary}

// LogLevels lists the valid host log levels.
var LogLevels = []string{"trace", "debug", "info", "warn", "error"}

// ClassResolver maps a class name or alias to its canonical name and schema.
// The host's plugin catalog implements it.
type ClassResolver interface {
	// ResolveClass returns the canonical name and config schema of the class
	// called name (a canonical name or an alias). Its error's message is
	// shown in the diagnostic, e.g. `unknown class "x"` or a conflict naming
	// two binaries.
	ResolveClass(name string) (canonical string, schema sdk.Schema, err error)
}

// ClassLister is optionally implemented by a ClassResolver. When it is, an
// unknown class gets a "Did you mean" suggestion from the listed names.
type ClassLister interface {
	// ClassNames returns every canonical class name and alias.
	ClassNames() []string
}

// Config is a fully decoded host configuration.
type Config struct {
	SystemID string
	Host     HostConfig
	AMQP     *AMQPConfig    // nil when the configuration has no amqp block
	Control  *ControlConfig // nil when the configuration has no control block
	Cluster  *ClusterConfig // nil when the configuration has no cluster block: the host is alone
	Root     *Supervisor
	Files    []string // the files read, in merge order
	// Limits are the input_limits block's settings, defaults applied.
	Limits InputLimits
}

// HostConfig is the host block, with defaults applied. PluginDir and
// StateDir are joined with the directory of the file that sets them (or of
// the configuration when they are defaulted), so they are valid from the
// process's working directory.
type HostConfig struct {
	Name      string
	PluginDir string
	StateDir  string
	// ExecDir is the directory of the host's verified copies of plugin
	// binaries (host.exec_dir; see pluginproc.ExecStore): the copies
	// workers run from. Default <StateDir>/exec; it must allow executing
	// files (not on a filesystem mounted noexec). Emptied at host start.
	ExecDir  string
	HTTPAddr string
	LogLevel string
	// HTTPToken is the bearer token the HTTP API then requires on every
	// route but /healthz. Required when HTTPAddr is not a loopback address.
	// Sensitive: never printed.
	HTTPToken string
	// HTTP holds the HTTP API's other settings (config/http.go).
	HTTP HTTPSettings
	// WarmSpares is how many warm spare plugin processes the host keeps
	// per plugin binary once a worker of it failed or was started by a
	// control message (more, up to pluginproc.MaxSpareDepth, while its
	// starts find none ready); 0 keeps none.
	WarmSpares int
	// StartConcurrency is how many worker starts may be in flight at once
	// when the host starts (workers are still started in declared order);
	// 1 starts each worker only once the previous one runs.
	StartConcurrency int
	// MetricsInterval is how often the host samples its processes and
	// publishes Vumi metrics; HeartbeatInterval how often it publishes a
	// Vumi heartbeat for each healthy worker.
	MetricsInterval   time.Duration
	HeartbeatInterval time.Duration
	// PluginLog bounds how much of each plugin's log the host re-logs.
	PluginLog PluginLogConfig
	// LogLines is how many lines of each worker's log the host keeps
	// (host.log_lines; see package worklog).
	LogLines int
	// LogFiles, if set (the host block's log_files block), also writes
	// each worker's log to a file of its own, rotated by size.
	LogFiles *LogFilesConfig
	// StateKeyFile, if set, is the file holding the key the state file is
	// encrypted with (host.state_key_file).
	StateKeyFile string
	// PluginLock is the lock file (host.plugin_lock; "dynworkers plugins
	// lock" writes it): when set, the host describes and runs only the
	// binaries whose sha256 it approves. "" runs any trusted binary.
	PluginLock string
	// PluginEnv are the variables passed to every plugin process
	// (host.plugin_env), on top of the few of the host's own environment
	// that plugins get. May hold secrets: never printed.
	PluginEnv map[string]string
	// WorkerLimits are the default resource limits of every worker (the
	// host block's limits block); a worker's own limits block overrides
	// them attribute by attribute.
	WorkerLimits contain.Limits
	// Bus bounds the embedded bus's queues (the host block's bus block;
	// see bus.go). Zero fields mean the bus's defaults.
	Bus BusConfig
}

// Supervisor is one supervisor of the tree.
type Supervisor struct {
	Name      string
	Path      string // parent path + "/" + Name; the root's path is "root"
	Strategy  string // one of Strategies
	Intensity int    // more than Intensity restarts ...
	Period    time.Duration
	Children  []Node    // in declared order
	Range     hcl.Range // the supervisor block's definition (header); a file's start for an implicit root
}

// Node is one child of a supervisor: exactly one of Worker and Supervisor is
// set.
type Node struct {
	Worker     *Worker
	Supervisor *Supervisor
}

// Name returns the child's name.
func (n Node) Name() string {
	if n.Worker != nil {
		return n.Worker.Name
	}
	return n.Supervisor.Name
}

// Worker is one configured worker.
type Worker struct {
	Name string
	Path string // the supervisor path + "/" + Name, e.g. "root/campaign-a/a1"
	// Class is the canonical class name; an alias in the file is resolved.
	Class           string
	Restart         string // one of Restarts
	StartTimeout    time.Duration
	ShutdownTimeout time.Duration
	HealthInterval  time.Duration
	HealthTimeout   time.Duration
	Backoff         Backoff
	// Limits are the resource limits of the worker's processes: its
	// limits block over the host block's (see limits_worker.go).
	Limits contain.Limits
	// Config is the decoded config object: one attribute per schema
	// attribute, defaults applied, null for unset optional attributes
	// without a default. It holds sensitive values in clear.
	Config cty.Value
	Schema sdk.Schema
	Range  hcl.Range // the worker block's definition (header)
	// OwnerSecrets, for a child a hybrid worker started, scrubs the
	// owner's sensitive values (which the owner may have passed to its
	// child): Scrubber includes them. Not part of the spec.
	OwnerSecrets *scrub.Scrubber
}

// Backoff is the restart backoff of a worker: the first delay is Initial,
// doubling up to Max; after ResetAfter of running, the delay starts again at
// Initial.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	ResetAfter time.Duration
}

// Walk calls fn for every worker of the tree under s, depth first in
// declared order.
func (s *Supervisor) Walk(fn func(*Worker)) {
	for _, c := range s.Children {
		if c.Worker != nil {
			fn(c.Worker)
		} else {
			c.Supervisor.Walk(fn)
		}
	}
}

// Load parses and decodes the configuration at path (a file or a directory
// of *.hcl files). It returns every diagnostic of both steps; the Config is
// nil when there is any error.
func Load(path string, classes ClassResolver) (*Config, hcl.Diagnostics) {
	f, diags := Parse(path)
	if f == nil {
		return nil, diags
	}
	cfg, more := f.Decode(classes)
	diags = append(diags, more...)
	sortDiagnostics(diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}
