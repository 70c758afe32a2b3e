package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// The workers' logs (package worklog): every line of each worker's plugin
// processes, scrubbed, kept in a bounded ring per worker (host.log_lines)
// and, with a log_files block, written to a file per worker, rotated by
// size. pluginproc feeds them (Options.Log, set by launch); forget removes
// a worker's log from the live ones when the worker is gone. The control
// operation logs (and the HTTP routes, the CLI and the dashboard, through
// it) reads them with Logs and WaitLogs.

// openWorkerLogs makes the store of the workers' logs, with the log_files
// block's directory (created 0700) if there is one.
func (d *Daemon) openWorkerLogs() error {
	o := worklog.Options{Lines: d.cfg.Host.LogLines, Logger: d.logger.Named("worklog")}
	if lf := d.cfg.Host.LogFiles; lf != nil {
		o.Files = worklog.Files{Dir: lf.Dir, MaxBytes: lf.MaxSize, Backups: lf.Backups}
	}
	s, err := worklog.NewStore(o)
	if err != nil {
		return fmt.Errorf("host.log_files: %w", err)
	}
	d.logs = s
	if o.Files.Dir != "" {
		d.logger.Info("writing each worker's log to a file", "dir", o.Files.Dir,
			"max_size", o.Files.MaxBytes, "backups", o.Files.Backups)
	}
	return nil
}

// closeWorkerLogs closes the workers' log files (the logs stay readable).
func (d *Daemon) closeWorkerLogs() {
	if d.logs == nil {
		return
	}
	if err := d.logs.Close(); err != nil {
		d.logger.Warn("closing the workers' log files", "error", err)
	}
}

// workerLog is the log of worker name for its plugin processes (nil
// before Run).
func (d *Daemon) workerLog(name string) *worklog.Log {
	if d.logs == nil {
		return nil
	}
	return d.logs.Log(name)
}

// Logs returns the kept lines of worker q.Name's log that q asks for
// (control.LogsHost). A worker of the host that has not logged yet has an
// empty log; a name the host has no log of is CodeNotFound, which says
// which host runs it when it is a cluster worker of another host.
func (d *Daemon) Logs(ctx context.Context, q control.LogsQuery) (api.LogsResult, error) {
	l, err := d.lookupLog(q.Name, false)
	if err != nil {
		return api.LogsResult{}, err
	}
	var res api.LogsResult
	if l == nil {
		res = api.LogsResult{Lines: []api.LogLine{}}
	} else {
		res = l.Lines(worklog.Query{Lines: q.Lines, Since: q.Since, After: q.After})
	}
	res.Worker = q.Name
	return res, nil
}

// WaitLogs blocks until worker name's log has lines after seq after, or
// ctx is done, and returns them (control.LogsHost). It follows the worker
// across its restarts, and across a stop and start of a worker of the
// same name while the host keeps the log (see package worklog).
func (d *Daemon) WaitLogs(ctx context.Context, name string, after uint64) (api.LogsResult, error) {
	for {
		l, err := d.lookupLog(name, true)
		if err != nil {
			return api.LogsResult{}, err
		}
		res, err := l.Wait(ctx, after)
		if errors.Is(err, worklog.ErrRemoved) {
			// Dropped from the store: follow the name's new log, if it
			// has one, from its start.
			if _, ok := d.logs.Lookup(name); ok || d.knowsWorker(name) {
				after = 0
				continue
			}
			return api.LogsResult{}, control.Errorf(control.CodeNotFound,
				"worker %q was removed from this host (%s) and its log is no longer kept", name, d.cfg.Host.Name)
		}
		if err != nil {
			return api.LogsResult{}, err
		}
		res.Worker = name
		return res, nil
	}
}

// lookupLog returns worker name's log. A worker of the host without a log
// yet (not launched yet) has none: nil, unless create, which makes it (for
// a follower to wait on). A name the host neither runs nor keeps a log of
// is CodeNotFound.
func (d *Daemon) lookupLog(name string, create bool) (*worklog.Log, error) {
	if d.logs != nil {
		if l, ok := d.logs.Lookup(name); ok {
			return l, nil
		}
		if d.knowsWorker(name) {
			if !create {
				return nil, nil
			}
			l := d.logs.Log(name)
			// The worker may have been removed meanwhile, before its log
			// was made: then it is a removed worker's log too.
			if !d.knowsWorker(name) {
				d.logs.Remove(name)
			}
			return l, nil
		}
	}
	return nil, d.noLog(name)
}

// knowsWorker reports whether the host has a worker of that name (also
// one not started yet).
func (d *Daemon) knowsWorker(name string) bool { return d.tree.HasWorker(name) }

// noLog is the error for a name the host has no log of: it says which
// host runs it, when the cluster cache says that another one does.
func (d *Daemon) noLog(name string) error {
	if host, known := d.clusterPlace(name); known {
		if host != "" && host != d.cfg.Host.Name {
			return control.Errorf(control.CodeNotFound,
				"worker %q runs on host %q, not on this host (%s): ask %s for its log", name, host, d.cfg.Host.Name, host)
		}
		if host == "" {
			return control.Errorf(control.CodeNotFound,
				"cluster worker %q runs on no host now, and this host (%s) has no log of it", name, d.cfg.Host.Name)
		}
	}
	return control.Errorf(control.CodeNotFound, "no worker %q on this host (%s), and no log of one", name, d.cfg.Host.Name)
}

var _ control.LogsHost = (*Daemon)(nil)
