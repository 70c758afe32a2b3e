package daemon

import (
	"context"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

var _ control.KillHost = (*Daemon)(nil)

// KillReason is the reason a worker killed by kill_worker exits with: its
// worker_exited event and its status's last exit say "killed on request
// (kill_worker): killed by SIGKILL".
const KillReason = "killed on request (kill_worker)"

// killWait bounds how long KillWorker waits for the killed process to be
// gone (and reaped) before it answers.
const killWait = 10 * time.Second

// KillWorker kills the plugin process that runs worker name with SIGKILL,
// as a crash would, for chaos drills (control.KillHost): the process and
// everything it started end, and the worker's supervisor sees an exit it
// did not ask for and restarts the worker with its normal backoff and
// events (worker_exited, worker_restarting, worker_started), counting it
// against its restart intensity. Only the process running the worker is
// killed, never a warm spare. It returns once the process is gone (or
// after killWait), with its pid.
//
// An unknown name is CodeNotFound. A worker with no running process
// (starting, in backoff, stopping, stopped or failed) is CodeConflict
// saying its state. A cluster worker that runs on another host of the
// cluster is CodeConflict naming that host: kill it there.
func (d *Daemon) KillWorker(ctx context.Context, name string) (api.KillResult, error) {
	wi, ok := d.tree.Worker(name)
	if !ok {
		if host := d.clusterHostOf(name); host != "" {
			return api.KillResult{}, control.Errorf(control.CodeConflict,
				"worker %q is a cluster worker that runs on host %q, not on this host (%q): send kill_worker to that host (dynworkers kill -amqp URL -host %s %s)",
				name, host, d.cfg.Host.Name, host, name)
		}
		return api.KillResult{}, control.Errorf(control.CodeNotFound, "no worker named %q on this host", name)
	}
	p := wi.Process()
	if wi.State != string(supervise.StateRunning) {
		return api.KillResult{}, control.Errorf(control.CodeConflict,
			"worker %q is %s, not running: it has no process to kill", name, wi.State)
	}
	if p == nil {
		return api.KillResult{}, control.Errorf(control.CodeConflict, "worker %q has no plugin process of its own to kill", name)
	}
	pid := p.Pid()
	d.logger.Warn("killing a worker's process with SIGKILL on request (kill_worker)", "worker", name, "pid", pid)
	p.Kill(KillReason)
	wait := time.NewTimer(killWait)
	defer wait.Stop()
	select {
	case <-p.Done():
	case <-wait.C:
	case <-ctx.Done():
	}
	return api.KillResult{Worker: name, PID: pid, Signal: "SIGKILL"}, nil
}

// clusterHostOf returns the host that runs name as a cluster worker, as
// this host's view of the cluster has it, or "" when it knows of none.
func (d *Daemon) clusterHostOf(name string) string {
	host, _ := d.clusterPlace(name)
	return host
}

// clusterPlace says where this host's view of the cluster puts name: the
// host that runs it, or else the host a wanted cluster worker is assigned
// to ("" for none), and whether name is a cluster worker at all (running
// somewhere or wanted).
func (d *Daemon) clusterPlace(name string) (host string, known bool) {
	if d.cl == nil {
		return "", false
	}
	p := d.cl.parts.Load()
	if p == nil {
		return "", false
	}
	snap := p.cache.Snapshot()
	if snap == nil {
		return "", false
	}
	if r, ok := snap.Running[name]; ok {
		return r.Host, true
	}
	if _, want := snap.Workers[name]; want {
		if a, ok := snap.Assign[name]; ok {
			return a.Host, true
		}
		return "", true
	}
	return "", false
}
