package cluster

// OWNER: helper B (agent): making the host run what is assigned to it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"maps"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// failureShown is how long running/<name> shows a permanent start failure
// at least, so that the host waiting for the start's outcome sees it even
// when the leader removes the assignment at once.
const failureShown = 3 * time.Second

// action is what one name needs on this host.
type action int

const (
	actNone    action = iota
	actRun            // take running/<name> (if not held) and Runner.Run
	actRestart        // Runner.Restart: only the generation grew
	actStop           // Runner.Stop, then release running/<name>
	actRelease        // delete running/<name>: held for a worker not run here
	actUpdate         // running/<name> does not say the local state
)

func (x action) String() string {
	return [...]string{"none", "run", "restart", "stop", "release", "update"}[x]
}

// decide is what name needs, from a snapshot, the local workers and what
// this agent ran.
func (a *Agent) decide(s *Snapshot, name string, local map[string]WorkerState, specs map[string]localSpec, failedAt map[string]time.Time, st agentState) action {
	if st.fenced || st.leaving || st.lease == 0 {
		return actNone // the fence stops; nothing else happens meanwhile
	}
	w, hasW := s.Workers[name]
	as, hasA := s.Assign[name]
	r, hasR := s.Running[name]
	mine := hasR && r.Lease == int64(st.lease)
	loc, isLocal := local[name]
	spec, hasSpec := specs[name]
	if hasW && hasA && as.Host == a.o.Host {
		if hasR && !mine {
			if isLocal {
				return actStop // another host holds the lock: never run it here then
			}
			return actNone // another host holds it: wait until it lets go
		}
		if mine && r.Permanent && !isLocal && r.SpecHash == w.SpecHash && r.Generation == w.Generation {
			return actNone // failed for good with this spec: wait for the record's fate
		}
		if !isLocal || !hasSpec || spec.hash != w.SpecHash || !mine {
			return actRun
		}
		if spec.gen < w.Generation {
			return actRestart
		}
		if r.State != loc.State || r.PID != loc.PID || r.Restarts != loc.Restarts || r.SpecHash != spec.hash ||
			r.Generation != spec.gen {
			return actUpdate
		}
		return actNone
	}
	if isLocal {
		return actStop
	}
	if mine {
		if r.Permanent && ((hasA && as.Host == a.o.Host) || time.Since(failedAt[name]) < failureShown) {
			// The start's waiter reads the failure: it stays until the
			// assignment goes, and at least failureShown.
			return actNone
		}
		return actRelease
	}
	return actNone
}

// reconcileLoop dispatches the names that need something, at each change
// of the cluster state, each kick and every two seconds.
func (a *Agent) reconcileLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-a.o.Cache.Ready():
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		ch := a.o.Cache.Changed()
		a.dispatch(ctx, a.o.Cache.Snapshot())
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-a.kickc:
		case <-t.C:
		}
	}
}

func (a *Agent) dispatch(ctx context.Context, s *Snapshot) {
	st := a.state()
	if st.fenced || st.leaving || st.lease == 0 {
		return
	}
	local := a.o.Runner.Local()
	names := map[string]bool{}
	for name, as := range s.Assign {
		if as.Host == a.o.Host {
			names[name] = true
		}
	}
	for name := range local {
		names[name] = true
	}
	for name, r := range s.Running {
		if r.Lease == int64(st.lease) {
			names[name] = true
		}
	}
	a.mu.Lock()
	specs := maps.Clone(a.specs)
	failedAt := maps.Clone(a.failedAt)
	a.mu.Unlock()
	now := time.Now()
	for name := range names {
		if a.decide(s, name, local, specs, failedAt, st) == actNone {
			continue
		}
		a.mu.Lock()
		if w, ok := a.written[name]; ok && s.Rev >= w {
			delete(a.written, name)
			delete(a.writtenAt, name)
		}
		// The snapshot lacks this agent's last write: wait for it (a
		// while: a cache that lags for long does not hold the name up).
		_, stale := a.written[name]
		stale = stale && now.Sub(a.writtenAt[name]) < 5*time.Second
		skip := stale || a.pending[name] || now.Before(a.retryAt[name]) || a.leaving
		if !skip {
			a.pending[name] = true
			a.ops.Add(1)
		}
		a.mu.Unlock()
		if !skip {
			go a.op(ctx, name)
		}
	}
}

// op does what one name needs, holding the name (no two operations on one
// name) and one of eight slots.
func (a *Agent) op(ctx context.Context, name string) {
	defer a.ops.Done()
	failed := false
	defer func() {
		a.mu.Lock()
		delete(a.pending, name)
		if failed {
			a.retryAt[name] = time.Now().Add(time.Second)
		} else {
			delete(a.retryAt, name)
		}
		a.mu.Unlock()
		a.kick()
	}()
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-a.sem }()
	unlock := a.lockName(name)
	defer unlock()

	s := a.o.Cache.Snapshot()
	if want := a.wantRev(name); s.Rev < want {
		// Decide on a snapshot that has this agent's last write.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, _ = a.o.Cache.WaitRev(wctx, want)
		cancel()
	}
	st := a.state()
	local := a.o.Runner.Local()
	a.mu.Lock()
	specs := map[string]localSpec{}
	if sp, ok := a.specs[name]; ok {
		specs[name] = sp
	}
	failedAt := map[string]time.Time{name: a.failedAt[name]}
	a.mu.Unlock()
	act := a.decide(s, name, local, specs, failedAt, st)
	var err error
	switch act {
	case actNone:
	case actRun, actRestart:
		err = a.start(ctx, s, name, act, st.lease)
	case actStop:
		err = a.stop(ctx, s, name, st.lease)
	case actRelease:
		err = a.releaseRunning(ctx, name, st.lease)
		a.mu.Lock()
		delete(a.failedAt, name)
		a.mu.Unlock()
		if err == nil {
			a.log.Debug("released a running key", "worker", name)
		}
	case actUpdate:
		err = a.putRunning(ctx, name, st.lease, s.Running[name].Since, "", false, "")
	}
	if err != nil && ctx.Err() == nil {
		failed = true
		a.log.Warn("cluster worker operation failed; retrying", "worker", name, "action", act.String(), "error", err)
	}
}

// start takes running/<name> and runs (or restarts) the worker.
func (a *Agent) start(ctx context.Context, s *Snapshot, name string, act action, lease clientv3.LeaseID) error {
	w := s.Workers[name]
	since, ok, err := a.takeRunning(ctx, name, w, lease)
	if err != nil || !ok {
		return err
	}
	cfg := w.Config
	if len(w.Sealed) > 0 {
		if a.o.Sealer == nil {
			err = errors.New("its config is sealed and this host has no cluster secrets key")
		} else {
			cfg, err = a.o.Sealer.Open(w.Config, w.Sealed)
		}
		if err != nil {
			a.log.Error("cannot open the sealed config of a cluster worker; releasing it", "worker", name,
				"class", w.Class, "error", err)
			if rerr := a.releaseRunning(ctx, name, lease); rerr != nil {
				return rerr
			}
			return fmt.Errorf("opening the sealed config: %w", err)
		}
	}
	a.mu.Lock()
	if a.fenced || a.leaving || a.lease != lease {
		a.mu.Unlock()
		return nil
	}
	a.inflight[name] = true
	gen, rctx := a.runGen, a.runCtx
	a.mu.Unlock()

	started := time.Now()
	var ws WorkerState
	if act == actRestart {
		a.log.Info("restarting a cluster worker: its generation grew", "worker", name, "generation", w.Generation)
		ws, err = a.o.Runner.Restart(rctx, name)
	} else {
		a.log.Info("starting a cluster worker assigned to this host", "worker", name, "class", w.Class,
			"generation", w.Generation, "rev", w.ModRev)
		ws, err = a.o.Runner.Run(rctx, Spec{Name: name, Class: w.Class, Supervisor: w.Supervisor, Config: cfg,
			SpecHash: w.SpecHash, Generation: w.Generation})
	}
	_, isLocal := a.o.Runner.Local()[name]
	a.mu.Lock()
	delete(a.inflight, name)
	still := a.runGen == gen && !a.fenced && !a.leaving
	stopBy := a.stopBy
	if isLocal && !errors.Is(err, supervise.ErrPermanent) {
		a.specs[name] = localSpec{hash: w.SpecHash, gen: w.Generation}
	}
	a.mu.Unlock()
	a.kickHost()
	if !still {
		// Fenced or leaving meanwhile: what the fence or Leave stopped
		// must not be left running by this late start.
		sctx, cancel := context.WithDeadline(context.Background(), stopBy)
		if a.state().leaving || stopBy.IsZero() {
			cancel()
			sctx, cancel = context.WithTimeout(context.Background(), a.o.StopTimeout)
		}
		defer cancel()
		_ = a.o.Runner.Stop(sctx, name)
		a.forgetSpec(name)
		return nil
	}
	if errors.Is(err, supervise.ErrPermanent) {
		return a.failPermanent(ctx, w, lease, since, err)
	}
	if err != nil {
		if _, ok := a.o.Runner.Local()[name]; !ok {
			a.log.Warn("a cluster worker did not start; releasing it", "worker", name, "error", err)
			if rerr := a.releaseRunning(ctx, name, lease); rerr != nil {
				return rerr
			}
			return err
		}
		a.log.Warn("a cluster worker's first start failed; it is retried", "worker", name, "error", err)
		return a.putRunning(ctx, name, lease, since, errText(name, err), false, "")
	}
	if !isLocal {
		return fmt.Errorf("the runner started %q but does not list it", name)
	}
	a.log.Info("cluster worker started", "worker", name, "state", ws.State, "pid", ws.PID,
		"took", time.Since(started).Round(time.Millisecond))
	return a.putRunning(ctx, name, lease, since, "", false, "")
}

// takeRunning takes running/<name> for this host: created under its lease
// when absent, or already held by it. ok is false when another host holds
// it. since is when this host took it.
func (a *Agent) takeRunning(ctx context.Context, name string, w WorkerRecord, lease clientv3.LeaseID) (since time.Time, ok bool, err error) {
	rk := a.keys.Running(name)
	now := time.Now().UTC()
	val, err := json.Marshal(Running{Host: a.o.Host, State: "starting", Since: now, Generation: w.Generation, SpecHash: w.SpecHash})
	if err != nil {
		return since, false, err
	}
	tctx, cancel := context.WithTimeout(ctx, a.o.TTL/2)
	defer cancel()
	r, err := a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(rk), "=", 0)).
		Then(clientv3.OpPut(rk, string(val), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(rk)).Commit()
	if err != nil {
		return since, false, fmt.Errorf("taking running/%s: %w", name, err)
	}
	a.wrote(name, r.Header.Revision)
	if r.Succeeded {
		return now, true, nil
	}
	kvs := r.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && kvs[0].Lease == int64(lease) {
		var cur Running
		if json.Unmarshal(kvs[0].Value, &cur) == nil && !cur.Since.IsZero() {
			return cur.Since, true, nil
		}
		return now, true, nil
	}
	if len(kvs) == 1 {
		a.log.Debug("another host holds the worker; waiting for it to let go", "worker", name)
	}
	return since, false, nil
}

// putRunning writes running/<name> from the local state, if this host
// holds it.
func (a *Agent) putRunning(ctx context.Context, name string, lease clientv3.LeaseID, since time.Time, errMsg string, permanent bool, code string) error {
	a.mu.Lock()
	spec, hasSpec := a.specs[name]
	a.mu.Unlock()
	ws, isLocal := a.o.Runner.Local()[name]
	if !isLocal || !hasSpec {
		return nil
	}
	if since.IsZero() {
		since = time.Now().UTC()
	}
	rec := Running{Host: a.o.Host, State: ws.State, PID: ws.PID, Since: since, Restarts: ws.Restarts,
		Generation: spec.gen, SpecHash: spec.hash, Error: errMsg, Permanent: permanent, Code: code}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	rk := a.keys.Running(name)
	tctx, cancel := context.WithTimeout(ctx, a.o.TTL/2)
	defer cancel()
	r, err := a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.LeaseValue(rk), "=", lease)).
		Then(clientv3.OpPut(rk, string(val), clientv3.WithLease(lease))).Commit()
	if err != nil {
		return fmt.Errorf("updating running/%s: %w", name, err)
	}
	a.wrote(name, r.Header.Revision)
	return nil
}

// failPermanent records a first start that failed for good: the worker's
// record goes (unless it changed meanwhile) and running/<name> says why,
// for the start's waiter, until the assignment goes.
func (a *Agent) failPermanent(ctx context.Context, w WorkerRecord, lease clientv3.LeaseID, since time.Time, startErr error) error {
	code := string(control.CodeInternal)
	var ce *control.Error
	switch {
	case errors.As(startErr, &ce) && ce != nil:
		code = string(ce.Code) // the code a local start gives (invalid_config, unknown_class, ...)
	case errors.Is(startErr, sdk.ErrInvalidConfig) || pluginproc.IsTooLarge(startErr):
		code = string(control.CodeInvalidConfig)
	}
	msg := errText(w.Name, startErr)
	a.log.Warn("a cluster worker failed to start with an error that retrying cannot fix; removing its record",
		"worker", w.Name, "class", w.Class, "code", code)
	val, err := json.Marshal(Running{Host: a.o.Host, State: "failed", Since: since, Generation: w.Generation,
		SpecHash: w.SpecHash, Error: msg, Permanent: true, Code: code})
	if err != nil {
		return err
	}
	a.forgetSpec(w.Name)
	a.mu.Lock()
	a.failedAt[w.Name] = time.Now()
	a.mu.Unlock()
	wk, rk := a.keys.Worker(w.Name), a.keys.Running(w.Name)
	tctx, cancel := context.WithTimeout(ctx, a.o.TTL/2)
	defer cancel()
	r, err := a.o.Client.Txn(tctx).If(
		clientv3.Compare(clientv3.ModRevision(wk), "=", w.ModRev),
		clientv3.Compare(clientv3.LeaseValue(rk), "=", lease),
	).Then(clientv3.OpDelete(wk), clientv3.OpPut(rk, string(val), clientv3.WithLease(lease))).Commit()
	if err != nil {
		return fmt.Errorf("recording the failed start of %q: %w", w.Name, err)
	}
	a.wrote(w.Name, r.Header.Revision)
	if !r.Succeeded {
		// The record changed meanwhile (a replace): the next pass runs the
		// new spec.
		a.log.Debug("the record of a failed worker changed meanwhile", "worker", w.Name)
	}
	return nil
}

// errText is a start error as the running record shows it.
func errText(name string, err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, fmt.Sprintf("starting %q: ", name))
	return strings.TrimPrefix(msg, supervise.ErrPermanent.Error()+": ")
}

// stop stops a local worker that is not (or no longer) this host's, then
// releases running/<name>.
func (a *Agent) stop(ctx context.Context, s *Snapshot, name string, lease clientv3.LeaseID) error {
	why := "its record is gone"
	if as, ok := s.Assign[name]; ok && as.Host != a.o.Host {
		why = "it is assigned to " + as.Host
	} else if _, ok := s.Workers[name]; ok {
		why = "it is not assigned to this host"
	}
	a.log.Info("stopping a cluster worker", "worker", name, "why", why)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.o.StopTimeout)
	defer cancel()
	started := time.Now()
	if err := a.o.Runner.Stop(sctx, name); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	a.forgetSpec(name)
	a.log.Info("cluster worker stopped", "worker", name, "took", time.Since(started).Round(time.Millisecond))
	return a.releaseRunning(context.WithoutCancel(ctx), name, lease)
}

// releaseRunning deletes running/<name> if this host's lease holds it.
func (a *Agent) releaseRunning(ctx context.Context, name string, lease clientv3.LeaseID) error {
	rk := a.keys.Running(name)
	tctx, cancel := context.WithTimeout(ctx, a.o.TTL/2)
	defer cancel()
	r, err := a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.LeaseValue(rk), "=", lease)).
		Then(clientv3.OpDelete(rk)).Commit()
	if err != nil {
		return fmt.Errorf("releasing running/%s: %w", name, err)
	}
	a.wrote(name, r.Header.Revision)
	return nil
}

// updateRunning brings running/<name> up to the local state (after
// WorkerChanged), if this host holds it.
func (a *Agent) updateRunning(name string) {
	a.mu.Lock()
	base := a.base
	a.mu.Unlock()
	if base == nil || base.Err() != nil {
		return
	}
	unlock := a.lockName(name)
	defer unlock()
	st := a.state()
	if st.fenced || st.leaving || st.lease == 0 {
		return
	}
	r, ok := a.o.Cache.Snapshot().Running[name]
	since := time.Time{}
	if ok {
		since = r.Since
	}
	if err := a.putRunning(base, name, st.lease, since, "", false, ""); err != nil {
		a.log.Debug("cannot update a running record", "worker", name, "error", err)
	}
	a.kick()
}

// wrote records the revision of this agent's last write of name's keys:
// a snapshot older than it does not show what the agent did.
func (a *Agent) wrote(name string, rev int64) {
	a.mu.Lock()
	if rev > a.written[name] {
		a.written[name] = rev
		a.writtenAt[name] = time.Now()
	}
	a.mu.Unlock()
}

func (a *Agent) wantRev(name string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.written[name]
}
