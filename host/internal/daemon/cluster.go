package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/cluster"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
)

// The host side of cluster mode (a cluster block in the configuration):
// the etcd client, the watched cache of the system's state, the Store that
// control starts, stops and restarts of cluster workers go through, and
// the Agent that makes this host a member and runs the cluster workers the
// leader assigns to it, as tree nodes of source api.SourceCluster (the
// Runner below). Without a cluster block none of it exists and the host
// behaves as it always did.

const (
	// leaveTimeout bounds Agent.Leave at shutdown: the cluster workers'
	// stops (each within its shutdown_timeout) and the lease's revocation.
	leaveTimeout = 15 * time.Second
	// clusterStartMargin is added to a worker's start_timeout to bound a
	// cluster start: placement and the write and watch round trips.
	clusterStartMargin = 10 * time.Second
	// clusterStopTimeout bounds a cluster stop or restart that came without
	// a deadline: the running host's stop within the worker's
	// shutdown_timeout, and the round trips.
	clusterStopTimeout = 30 * time.Second
	// defaultLeaseTTL and defaultDialTimeout apply when the cluster block
	// sets none.
	defaultLeaseTTL    = 10 * time.Second
	defaultDialTimeout = 5 * time.Second
)

// errNotClustered is the answer to a cluster operation on a host without a
// cluster block.
func errNotClustered() error {
	return control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")
}

// clusterSide is the daemon's cluster state; nil without a cluster block.
type clusterSide struct {
	cfg    *config.ClusterConfig
	prefix string
	ttl    time.Duration
	sealer *cluster.Sealer // nil without secrets_key_file

	parts  atomic.Pointer[clusterParts] // set once etcd's client is made
	cancel context.CancelFunc           // ends the connect loop, the cache and the agent
	wg     sync.WaitGroup
}

// clusterParts are what exists once the etcd client does.
type clusterParts struct {
	client *clientv3.Client
	cache  *cluster.Cache
	store  *cluster.Store
	agent  *cluster.Agent
}

// newClusterSide checks what Load can of the cluster block: the secrets
// key is read now, so that a bad key file stops the host from starting.
func newClusterSide(cfg *config.Config) (*clusterSide, error) {
	cc := cfg.Cluster
	cs := &clusterSide{cfg: cc, prefix: cc.Prefix, ttl: cc.LeaseTTL}
	if cs.prefix == "" {
		cs.prefix = cluster.DefaultPrefix(cfg.SystemID)
	}
	if cs.ttl <= 0 {
		cs.ttl = defaultLeaseTTL
	}
	if cc.SecretsKeyFile != "" {
		key, err := state.LoadKey(cc.SecretsKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.secrets_key_file: %w", err)
		}
		if cs.sealer, err = cluster.NewSealer(key); err != nil {
			return nil, fmt.Errorf("cluster.secrets_key_file: %w", err)
		}
	}
	if _, err := etcdClientConfig(cc); err != nil {
		return nil, err
	}
	return cs, nil
}

// etcdClientConfig is the etcd client's configuration of a cluster block:
// endpoints, dial timeout, auth, and TLS from the tls block (the amqp
// block's attributes); https:// endpoints without a tls block are checked
// against the system's roots.
func etcdClientConfig(cc *config.ClusterConfig) (clientv3.Config, error) {
	c := clientv3.Config{
		Endpoints:   slices.Clone(cc.Endpoints),
		DialTimeout: cc.DialTimeout,
		Username:    cc.Username,
		Password:    cc.Password,
		// Keepalives notice a dead connection (a partition) quickly; the
		// agent's fencing does not depend on them.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		PermitWithoutStream:  true,
		// The client's own (zap) logs would repeat each failed attempt;
		// the daemon says what matters in its log (startCluster).
		Logger: zap.NewNop(),
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	t, err := cc.ClientTLS()
	if err != nil {
		return clientv3.Config{}, err
	}
	c.TLS = t
	// gRPC's default reconnect wait (1 s, growing) could outlast the
	// fence threshold after an etcd restart.
	c.DialOptions = cluster.DialOptions()
	return c, nil
}

// startCluster makes this host a member of its cluster, in the
// background: it connects to etcd (retrying, and saying so, while etcd
// cannot be reached: the host runs its HCL and local workers meanwhile),
// then runs the cache and the agent until shutdown. Called by Run once the
// tree's workers are started.
func (d *Daemon) startCluster() {
	cs := d.cl
	if cs == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cs.cancel = cancel
	log := d.logger.Named("cluster")
	cs.wg.Go(func() {
		ccfg, err := etcdClientConfig(cs.cfg)
		if err != nil { // checked by Load; the files may have gone since
			log.Error("cannot configure the etcd client; this host stays out of the cluster", "error", err)
			return
		}
		ccfg.Context = ctx
		var client *clientv3.Client
		for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
			client, err = clientv3.New(ccfg)
			if err == nil {
				break
			}
			log.Error("cannot connect to etcd; the host runs its own workers and keeps trying",
				"endpoints", cs.cfg.Endpoints, "error", err, "retry_in", delay.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
		cache := cluster.NewCache(client, cs.prefix, log.Named("cache"))
		p := &clusterParts{client: client, cache: cache,
			store: cluster.NewStore(client, cache, d.cfg.Host.Name, cs.sealer)}
		p.agent = cluster.NewAgent(cluster.AgentOptions{
			Client:   client,
			Cache:    cache,
			Host:     d.cfg.Host.Name,
			TTL:      cs.ttl,
			Capacity: cs.cfg.MaxWorkers,
			Labels:   cs.cfg.Labels,
			HTTPAddr: d.HTTPAddr(),
			Version:  d.opts.Version,
			Runner:   &clusterRunner{d: d},
			Sealer:   cs.sealer,
			Logger:   log.Named("agent"),
		})
		cs.parts.Store(p)
		cs.wg.Go(func() { _ = cache.Run(ctx) })
		cs.wg.Go(func() {
			select {
			case <-cache.Ready():
			case <-ctx.Done():
				return
			case <-time.After(2 * ccfg.DialTimeout):
				log.Error("etcd cannot be reached yet; the host runs its own workers, takes no cluster worker and keeps trying",
					"endpoints", cs.cfg.Endpoints)
				select {
				case <-cache.Ready():
				case <-ctx.Done():
					return
				}
			}
			log.Info("connected to etcd", "endpoints", cs.cfg.Endpoints, "prefix", cs.prefix)
		})
		for ctx.Err() == nil {
			err := p.agent.Run(ctx)
			if ctx.Err() != nil {
				break
			}
			log.Error("this host could not join the cluster; trying again", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(cs.ttl):
			}
		}
	})
	log.Info("joining the cluster", "endpoints", cs.cfg.Endpoints, "prefix", cs.prefix, "lease_ttl", cs.ttl.String(),
		"max_workers", cs.cfg.MaxWorkers, "labels", cs.cfg.Labels)
}

// leaveCluster is the cluster's step of the shutdown, after the host
// stopped taking control requests and before the tree stops: the agent
// stops this host's cluster workers, releases them and revokes the lease
// (bounded by leaveTimeout), so that the other hosts take them at once;
// then the cache and the agent end and the etcd client closes.
func (d *Daemon) leaveCluster() {
	cs := d.cl
	if cs == nil || cs.cancel == nil {
		return
	}
	if p := cs.parts.Load(); p != nil {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		if err := p.agent.Leave(ctx); err != nil {
			d.logger.Warn("leaving the cluster", "error", err)
		}
		cancel()
	}
	cs.cancel()
	ended := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(leaveTimeout):
		// Not expected: the cache and the agent end with their context.
		// The host's shutdown must not hang on them.
		d.logger.Error("the cluster agent did not end within its bound; shutting down without waiting for it")
	}
	if p := cs.parts.Load(); p != nil {
		if err := p.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			d.logger.Debug("closing the etcd client", "error", err)
		}
	}
}

// clusterParts returns the cluster's parts, or the error to answer with:
// no cluster block, or no etcd client yet.
func (d *Daemon) clusterParts() (*clusterParts, error) {
	if d.cl == nil {
		return nil, errNotClustered()
	}
	p := d.cl.parts.Load()
	if p == nil {
		return nil, control.Errorf(control.CodeInternal,
			"this host has not reached etcd yet (endpoints %s); try again, or send the request to another host",
			strings.Join(d.cl.cfg.Endpoints, ", "))
	}
	return p, nil
}

// clusterWorkerChanged tells the agent that a cluster worker's state
// changed (from the supervision event hook).
func (d *Daemon) clusterWorkerChanged(name string) {
	if d.cl == nil || name == "" {
		return
	}
	if p := d.cl.parts.Load(); p != nil && d.tree.IsCluster(name) {
		p.agent.WorkerChanged(name)
	}
}

// withDefaultTimeout bounds ctx by d unless it ends sooner already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// startClusterWorker is a cluster start received by this host: resolved
// here (as a local start is checked), written to etcd once (Store.Start
// keeps the name unique in the system), and waited for until it runs
// somewhere, failed for good, or no host fits (pending).
func (d *Daemon) startClusterWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	if d.cl == nil {
		return api.StartResult{}, errNotClustered()
	}
	w, res, err := d.resolveCluster(spec.Name, spec.Class, spec.Config, spec.Supervisor)
	if err != nil {
		return api.StartResult{}, err
	}
	if wi, ok := d.tree.Worker(spec.Name); ok && wi.Source != api.SourceCluster {
		return api.StartResult{}, control.Errorf(control.CodeConflict,
			"the name %q is taken on this host (%s) by a worker of source %s", spec.Name, d.cfg.Host.Name, wi.Source)
	}
	p, err := d.clusterParts()
	if err != nil {
		return api.StartResult{}, err
	}
	ctx, cancel := withDefaultTimeout(ctx, w.StartTimeout+clusterStartMargin)
	defer cancel()
	return p.store.Start(ctx, cluster.StartRequest{Name: spec.Name, Spec: res, Constraints: spec.Constraints, Replace: spec.Replace})
}

// localOnly reports whether a stop or restart of name is this host's own
// business: the host has a worker of that name that is not a cluster
// worker (an HCL, control-started or hybrid's child).
func (d *Daemon) localOnly(name string) bool {
	wi, ok := d.tree.Worker(name)
	return ok && wi.Source != api.SourceCluster
}

// stopClusterWorker stops name through the cluster if it is a cluster
// worker; handled is false when it is not (or the host is not in a
// cluster, or has not reached etcd): the caller stops it locally.
func (d *Daemon) stopClusterWorker(ctx context.Context, name string) (res api.WorkerResult, handled bool, err error) {
	if d.cl == nil || d.localOnly(name) {
		return api.WorkerResult{}, false, nil
	}
	p := d.cl.parts.Load()
	if p == nil {
		return api.WorkerResult{}, false, nil
	}
	ctx, cancel := withDefaultTimeout(ctx, clusterStopTimeout)
	defer cancel()
	res, found, err := p.store.Stop(ctx, name)
	if err != nil {
		return api.WorkerResult{}, true, err
	}
	return res, found, nil
}

// restartClusterWorker is stopClusterWorker for a restart.
func (d *Daemon) restartClusterWorker(ctx context.Context, name string) (handled bool, err error) {
	if d.cl == nil || d.localOnly(name) {
		return false, nil
	}
	p := d.cl.parts.Load()
	if p == nil {
		return false, nil
	}
	ctx, cancel := withDefaultTimeout(ctx, clusterStopTimeout+config.DefaultStartTimeout)
	defer cancel()
	found, err := p.store.Restart(ctx, name)
	if err != nil {
		return true, err
	}
	return found, nil
}

// Drain drains host (this host when "") of its cluster workers, or ends
// that (control.ClusterHost).
func (d *Daemon) Drain(ctx context.Context, host string, on bool) (api.DrainResult, error) {
	p, err := d.clusterParts()
	if err != nil {
		return api.DrainResult{}, err
	}
	if host == "" {
		host = d.cfg.Host.Name
	}
	return p.store.Drain(ctx, host, on)
}

// ClusterStatus is the whole system as etcd has it (control.ClusterHost).
func (d *Daemon) ClusterStatus(ctx context.Context) (api.ClusterView, error) {
	p, err := d.clusterParts()
	if err != nil {
		return api.ClusterView{}, err
	}
	v, err := p.store.View(ctx)
	v.SystemID = d.cfg.SystemID
	return v, err
}

var _ control.ClusterHost = (*Daemon)(nil)

// resolveCluster checks a cluster start with this host's catalog, as a
// local start is (d.resolve), and returns the worker it describes and the
// spec as the cluster stores it.
func (d *Daemon) resolveCluster(name, class string, cfg json.RawMessage, supervisor string) (*config.Worker, cluster.Resolved, error) {
	if err := config.ValidateWorkerName(name); err != nil {
		return nil, cluster.Resolved{}, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("worker_name: %v", err)}
	}
	path, err := d.supervisorPath(supervisor)
	if err != nil {
		return nil, cluster.Resolved{}, err
	}
	w, cerr := d.resolve(name, class, cfg, path)
	if cerr != nil {
		return nil, cluster.Resolved{}, cerr
	}
	cfgJSON, err := w.ConfigJSON()
	if err != nil {
		return nil, cluster.Resolved{}, fmt.Errorf("encoding config of %q: %w", name, err)
	}
	var sensitive []string
	for _, a := range w.Schema {
		if a.Sensitive {
			sensitive = append(sensitive, a.Name)
		}
	}
	return w, cluster.Resolved{Class: w.Class, Supervisor: path, Config: cfgJSON, SpecHash: clusterSpecHash(w), Sensitive: sensitive}, nil
}

// clusterSpecHash is the spec hash of a cluster worker: that of w without
// the host's default limits (d.resolve gives w this host's; each host
// runs a cluster worker with its own), so that the same start received by
// hosts with different limits is the same spec.
func clusterSpecHash(w *config.Worker) string {
	x := *w
	x.Limits = contain.Limits{}
	return x.SpecHash()
}

// supervisorPath is the path of the supervisor a cluster start names:
// this host's supervisor of that name or path if it has one, else the
// path spelled out ("" is the root, "a/b" is "root/a/b"): the leader
// places the worker on a host that has it.
func (d *Daemon) supervisorPath(s string) (string, error) {
	if p, ok := d.tree.SupervisorPath(s); ok {
		return p, nil
	}
	s = strings.Trim(s, "/")
	if s == "" || s == config.RootName {
		return config.RootName, nil
	}
	if !strings.HasPrefix(s, config.RootName+"/") {
		s = config.RootName + "/" + s
	}
	for _, part := range strings.Split(s, "/") {
		if err := config.ValidateName(part); err != nil && part != config.RootName {
			return "", &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("supervisor: %q: %v", s, err)}
		}
	}
	return s, nil
}

// clusterRunner is the cluster.Runner of this host: cluster workers are
// tree nodes of source api.SourceCluster.
type clusterRunner struct{ d *Daemon }

var _ cluster.Runner = (*clusterRunner)(nil)

func (r *clusterRunner) Resolve(name, class string, cfg json.RawMessage, supervisor string) (cluster.Resolved, error) {
	_, res, err := r.d.resolveCluster(name, class, cfg, supervisor)
	return res, err
}

func (r *clusterRunner) Run(ctx context.Context, spec cluster.Spec) (cluster.WorkerState, error) {
	_, err := r.d.tree.StartCluster(ctx, tree.ClusterSpec{Name: spec.Name, Class: spec.Class, Supervisor: spec.Supervisor,
		Config: spec.Config, SpecHash: spec.SpecHash, Generation: spec.Generation})
	if err != nil {
		return cluster.WorkerState{}, err
	}
	st, ok := r.d.tree.ClusterWorkers()[spec.Name]
	if !ok {
		// Stopped meanwhile (the name's lock is free once StartCluster
		// returned).
		return cluster.WorkerState{State: string(supervise.StateStopped)}, nil
	}
	return workerState(st), nil
}

func (r *clusterRunner) Stop(ctx context.Context, name string) error {
	return r.d.tree.StopCluster(ctx, name)
}

func (r *clusterRunner) Restart(ctx context.Context, name string) (cluster.WorkerState, error) {
	st, err := r.d.tree.RestartCluster(ctx, name)
	return workerState(st), err
}

func (r *clusterRunner) Local() map[string]cluster.WorkerState {
	in := r.d.tree.ClusterWorkers()
	out := make(map[string]cluster.WorkerState, len(in))
	for name, st := range in {
		out[name] = workerState(st)
	}
	return out
}

// Offers are the catalog's classes (names and aliases) and the paths of
// the supervisors that run (not a hybrid's children's).
func (r *clusterRunner) Offers() cluster.Offers {
	var o cluster.Offers
	for _, c := range r.d.Catalog().Classes() {
		o.Classes = append(o.Classes, c.Name)
		o.Classes = append(o.Classes, c.Aliases...)
	}
	for _, s := range r.d.tree.Supervisors() {
		if s.Source != api.SourceHybrid && s.State == string(supervise.SupervisorRunning) {
			o.Supervisors = append(o.Supervisors, s.Path)
		}
	}
	slices.Sort(o.Classes)
	o.Classes = slices.Compact(o.Classes)
	return o
}

func workerState(st tree.ClusterState) cluster.WorkerState {
	return cluster.WorkerState{State: st.State, PID: st.PID, Since: st.Since, Restarts: st.Restarts, LastExit: st.LastExit}
}
