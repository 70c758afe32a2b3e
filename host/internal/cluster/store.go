package cluster

// OWNER: helper A (store).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var errTODO = errors.New("cluster: not built yet")

// Limits of a start's constraints.
const (
	maxConstraints   = 32
	maxConstraintLen = 256
)

// freshReadTimeout bounds the etcd read that makes a view or a Has
// current; when etcd does not answer in time, the cache answers.
const freshReadTimeout = 2 * time.Second

// Store is the control side of the cluster on one host: what a control
// start, stop, restart, drain or cluster status received by this host does
// to the desired state in etcd, and the waits for its outcome.
//
// The waits follow the shared cache (Cache.WaitFor): they never poll etcd.
type Store struct {
	client *clientv3.Client
	cache  *Cache
	keys   Keys
	host   string
	sealer *Sealer
}

// NewStore returns the store of host (this host's name) over cache. sealer
// may be nil (no secrets key: configs are stored as they are).
func NewStore(client *clientv3.Client, cache *Cache, host string, sealer *Sealer) *Store {
	return &Store{client: client, cache: cache, keys: cache.Keys(), host: host, sealer: sealer}
}

// StartRequest is a resolved cluster start.
type StartRequest struct {
	Name        string
	Spec        Resolved
	Constraints map[string]string
	Replace     bool
}

// invalid is a CodeInvalidConfig error naming the request field at fault.
func invalid(field, summary string, args ...any) *control.Error {
	msg := fmt.Sprintf(summary, args...)
	return &control.Error{Code: control.CodeInvalidConfig, Message: msg,
		Details: []control.Detail{{Attribute: field, Summary: msg}}}
}

// ValidateConstraints checks a start's constraints: at most 32 pairs,
// keys and values non-empty and at most 256 bytes each.
func ValidateConstraints(c map[string]string) error {
	if len(c) > maxConstraints {
		return invalid("constraints", "constraints: at most %d labels, got %d", maxConstraints, len(c))
	}
	keys := slices.Sorted(maps.Keys(c))
	for _, k := range keys {
		v := c[k]
		switch {
		case k == "":
			return invalid("constraints", "constraints: a label name is empty")
		case len(k) > maxConstraintLen:
			return invalid("constraints", "constraints: label name %.32q... is longer than %d bytes", k, maxConstraintLen)
		case v == "":
			return invalid("constraints", "constraints: the value of label %q is empty", k)
		case len(v) > maxConstraintLen:
			return invalid("constraints", "constraints: the value of label %q is longer than %d bytes", k, maxConstraintLen)
		}
	}
	return nil
}

func sameConstraints(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

// Start writes the worker's record once, in a transaction that keeps its
// name unique in the system: no record yet → "started"; a record with the
// same SpecHash (and constraints) → "unchanged" (nothing written); another
// spec → a control conflict error unless Replace, then "replaced". It then
// waits, until ctx ends, for the worker's outcome: placed and running (or
// in backoff) on some host, or its first start failed for good there (the
// error, with the control code a local start would give), or no host fits
// (api.StartResult.State "pending" and a reason). The result names the
// host.
//
// A new start is one etcd write (one transaction); "unchanged" is none; a
// replace is two round trips (the first reads the record it replaces).
func (s *Store) Start(ctx context.Context, req StartRequest) (api.StartResult, error) {
	if req.Name == "" {
		return api.StartResult{}, invalid("worker_name", "worker_name is empty")
	}
	if err := ValidateConstraints(req.Constraints); err != nil {
		return api.StartResult{}, err
	}
	if req.Spec.SpecHash == "" || req.Spec.Class == "" {
		return api.StartResult{}, fmt.Errorf("cluster start of %q: the spec is not resolved", req.Name)
	}
	now := time.Now().UTC()
	rec := WorkerRecord{
		Name: req.Name, Class: req.Spec.Class, Supervisor: req.Spec.Supervisor,
		Config: req.Spec.Config, SpecHash: req.Spec.SpecHash, Generation: 1,
		Created: now, Updated: now, By: s.host,
	}
	if len(req.Constraints) > 0 {
		rec.Constraints = maps.Clone(req.Constraints)
	}
	if len(rec.Config) == 0 {
		rec.Config = json.RawMessage("{}")
	}
	if s.sealer != nil && len(req.Spec.Sensitive) > 0 {
		sealed, err := s.sealer.Seal(rec.Config, req.Spec.Sensitive)
		if err != nil {
			return api.StartResult{}, fmt.Errorf("cluster start of %q: %w", req.Name, err)
		}
		rec.Config = sealed
		rec.Sealed = slices.Sorted(slices.Values(req.Spec.Sensitive))
	}

	key := s.keys.Worker(req.Name)
	var action string
	var rev int64 // the revision the outcome must be at or after
	for attempt := 0; ; attempt++ {
		if attempt > 10 {
			return api.StartResult{}, fmt.Errorf("cluster start of %q: the worker record kept changing under this start", req.Name)
		}
		rec.Created, rec.Generation = now, 1
		val, err := json.Marshal(rec)
		if err != nil {
			return api.StartResult{}, err
		}
		resp, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return api.StartResult{}, fmt.Errorf("cluster start of %q: writing its record to etcd: %w", req.Name, err)
		}
		if resp.Succeeded {
			action, rev = "started", resp.Header.Revision
			break
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // deleted meanwhile
		}
		var old WorkerRecord
		if err := json.Unmarshal(kvs[0].Value, &old); err != nil {
			return api.StartResult{}, fmt.Errorf("cluster start of %q: the stored record does not decode: %w", req.Name, err)
		}
		if old.SpecHash == rec.SpecHash && sameConstraints(old.Constraints, rec.Constraints) {
			action, rev = "unchanged", resp.Header.Revision
			rec.Generation = old.Generation
			break
		}
		if !req.Replace {
			return api.StartResult{}, control.Errorf(control.CodeConflict,
				"worker %q already runs in the cluster with a different spec; send \"replace\": true to replace it", req.Name)
		}
		rec.Created, rec.Generation = old.Created, old.Generation
		val, err = json.Marshal(rec)
		if err != nil {
			return api.StartResult{}, err
		}
		resp, err = s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return api.StartResult{}, fmt.Errorf("cluster start of %q: writing its record to etcd: %w", req.Name, err)
		}
		if resp.Succeeded {
			action, rev = "replaced", resp.Header.Revision
			break
		}
	}
	return s.waitStarted(ctx, req.Name, action, rec.SpecHash, rec.Generation, rev)
}

// waitStarted waits for the outcome of a start written at rev.
func (s *Store) waitStarted(ctx context.Context, name, action, hash string, gen, rev int64) (api.StartResult, error) {
	res := api.StartResult{Worker: name, Action: action}
	var failed *Running
	gone := false
	pending := ""
	snap, err := s.cache.WaitFor(ctx, func(sn *Snapshot) bool {
		if sn.Rev < rev {
			return false
		}
		r, ok := sn.Running[name]
		if ok && r.Permanent && r.SpecHash == hash && r.ModRev > rev {
			failed = &r
			return true
		}
		if _, ok := sn.Workers[name]; !ok {
			gone = true
			return true
		}
		if !ok {
			// No host fits it now: say so at once rather than at the
			// deadline (the leader plans from this state or a newer one,
			// and places it as soon as a host fits).
			if a, assigned := sn.Assign[name]; !assigned || !sn.hostLive(a.Host) {
				pending = unplacedReason(sn, name)
				return pending != ""
			}
			return false
		}
		if r.SpecHash != hash {
			return false
		}
		// >= gen: a restart may have bumped it meanwhile.
		return !r.Permanent && r.Generation >= gen && r.State != "" && r.State != "starting"
	})
	if err == nil {
		if failed != nil {
			code := control.Code(failed.Code)
			if code == "" {
				code = control.CodeInternal
			}
			msg := failed.Error
			if msg == "" {
				msg = fmt.Sprintf("worker %q failed to start on host %s", name, failed.Host)
			}
			return api.StartResult{}, &control.Error{Code: code, Message: msg}
		}
		if gone {
			return api.StartResult{}, control.Errorf(control.CodeConflict, "worker %q was stopped (its cluster record deleted) before it started", name)
		}
		if pending != "" {
			res.State, res.Pending = "pending", pending
			return res, nil
		}
		r := snap.Running[name]
		res.Host, res.State, res.Pid = r.Host, r.State, r.PID
		return res, nil
	}
	// ctx ended: say where it stands.
	if a, ok := snap.Assign[name]; ok {
		if _, live := snap.Hosts[a.Host]; live {
			res.Host, res.State = a.Host, "starting"
			return res, nil
		}
	}
	res.State, res.Pending = "pending", pendingReason(snap, name)
	return res, nil
}

// pendingReason says why name is not placed in snap.
func pendingReason(snap *Snapshot, name string) string {
	if r := unplacedReason(snap, name); r != "" {
		return r
	}
	return waitingReason(snap)
}

// unplacedReason is Plan's reason for not placing name, "" when Plan
// places it (or it needs no placing).
func unplacedReason(snap *Snapshot, name string) string {
	_, unplaced := Plan(snap)
	for _, u := range unplaced {
		if u.Worker == name {
			return u.Reason
		}
	}
	return ""
}

func (s *Snapshot) hostLive(h string) bool { _, ok := s.Hosts[h]; return ok }

// waitingReason says why a worker that fits somewhere is not placed yet.
func waitingReason(snap *Snapshot) string {
	if snap.Leader() == "" {
		return "no leader is elected yet"
	}
	return "waiting for the leader to place it"
}

// fresh returns a snapshot at least as new as etcd's current revision
// (read with one small linearizable read), so that a view or check made on
// this host sees every write acknowledged before it anywhere. When etcd
// does not answer within freshReadTimeout, it returns the cache's
// snapshot as it is.
func (s *Store) fresh(ctx context.Context) (*Snapshot, error) {
	select {
	case <-s.cache.Ready():
	case <-ctx.Done():
		return nil, fmt.Errorf("the cluster state is not loaded from etcd yet: %w", ctx.Err())
	}
	rctx, cancel := context.WithTimeout(ctx, freshReadTimeout)
	defer cancel()
	resp, err := s.client.Get(rctx, s.keys.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return s.cache.Snapshot(), nil
	}
	wctx, cancel2 := context.WithTimeout(ctx, freshReadTimeout)
	defer cancel2()
	snap, _ := s.cache.WaitRev(wctx, resp.Header.Revision)
	return snap, nil
}

// Has reports whether name is a cluster worker. It asks etcd, and answers
// from the cache when etcd does not answer within 2 s.
func (s *Store) Has(ctx context.Context, name string) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, freshReadTimeout)
	defer cancel()
	resp, err := s.client.Get(rctx, s.keys.Worker(name), clientv3.WithCountOnly())
	if err == nil {
		return resp.Count > 0, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	select {
	case <-s.cache.Ready():
		_, ok := s.cache.Snapshot().Workers[name]
		return ok, nil
	default:
		return false, fmt.Errorf("cannot read the cluster state from etcd: %w", err)
	}
}

// Stop deletes the worker's record and waits (until ctx ends) until no host
// runs it. found is false when name is not a cluster worker.
func (s *Store) Stop(ctx context.Context, name string) (result api.WorkerResult, found bool, err error) {
	if name == "" {
		return api.WorkerResult{}, false, invalid("worker_name", "worker_name is empty")
	}
	resp, err := s.client.Delete(ctx, s.keys.Worker(name))
	if err != nil {
		return api.WorkerResult{}, false, fmt.Errorf("cluster stop of %q: deleting its record in etcd: %w", name, err)
	}
	rev := resp.Header.Revision
	if resp.Deleted == 0 {
		// Not a cluster worker, unless a concurrent stop deleted the
		// record and a host still runs it.
		snap, err := s.cache.WaitRev(ctx, rev)
		if err != nil {
			return api.WorkerResult{}, false, err
		}
		if _, ok := snap.Running[name]; !ok {
			return api.WorkerResult{}, false, nil
		}
	}
	snap, err := s.cache.WaitFor(ctx, func(sn *Snapshot) bool {
		_, ok := sn.Running[name]
		return sn.Rev >= rev && !ok
	})
	if err != nil {
		host := ""
		if r, ok := snap.Running[name]; ok {
			host = r.Host
		}
		return api.WorkerResult{}, true, fmt.Errorf("cluster stop of %q: its record is deleted, but host %s has not stopped it yet: %w", name, host, err)
	}
	return api.WorkerResult{Worker: name, Action: "stopped"}, true, nil
}

// Restart bumps the worker's generation and waits until its host runs the
// new one. found is false when name is not a cluster worker.
func (s *Store) Restart(ctx context.Context, name string) (found bool, err error) {
	if name == "" {
		return false, invalid("worker_name", "worker_name is empty")
	}
	key := s.keys.Worker(name)
	var gen, rev int64
	var hash string
	for attempt := 0; ; attempt++ {
		if attempt > 10 {
			return true, fmt.Errorf("cluster restart of %q: the worker record kept changing under this restart", name)
		}
		g, err := s.client.Get(ctx, key)
		if err != nil {
			return false, fmt.Errorf("cluster restart of %q: reading its record from etcd: %w", name, err)
		}
		if len(g.Kvs) == 0 {
			return false, nil
		}
		var rec WorkerRecord
		if err := json.Unmarshal(g.Kvs[0].Value, &rec); err != nil {
			return true, fmt.Errorf("cluster restart of %q: the stored record does not decode: %w", name, err)
		}
		rec.Generation++
		rec.Updated = time.Now().UTC()
		rec.By = s.host
		val, err := json.Marshal(rec)
		if err != nil {
			return true, err
		}
		t, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", g.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return true, fmt.Errorf("cluster restart of %q: writing its record to etcd: %w", name, err)
		}
		if t.Succeeded {
			gen, rev, hash = rec.Generation, t.Header.Revision, rec.SpecHash
			break
		}
	}
	_, err = s.cache.WaitFor(ctx, func(sn *Snapshot) bool {
		if sn.Rev < rev {
			return false
		}
		if _, ok := sn.Workers[name]; !ok {
			return true // stopped meanwhile
		}
		r, ok := sn.Running[name]
		return ok && r.SpecHash == hash && r.Generation >= gen && r.State != "" && r.State != "starting"
	})
	if err != nil {
		return true, fmt.Errorf("cluster restart of %q: generation %d is written, but no host runs it yet: %w", name, gen, err)
	}
	return true, nil
}

// Drain marks host as drained (on) or not (off). A drained host gets no new
// cluster workers and the leader moves its workers away one by one. The
// result lists the workers it still has.
func (s *Store) Drain(ctx context.Context, host string, on bool) (api.DrainResult, error) {
	if host == "" {
		return api.DrainResult{}, invalid("host", "host is empty: name the host to drain")
	}
	snap, err := s.fresh(ctx)
	if err != nil {
		return api.DrainResult{}, err
	}
	_, live := snap.Hosts[host]
	if !live && !snap.Drain[host] && len(snap.AssignedTo(host)) == 0 {
		return api.DrainResult{}, control.Errorf(control.CodeNotFound, "unknown host %q: no live host of that name and no cluster worker assigned to it", host)
	}
	key := s.keys.Drain(host)
	res := api.DrainResult{Host: host, Action: "unchanged"}
	var rev int64
	if on {
		t, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, "1")).Commit()
		if err != nil {
			return api.DrainResult{}, fmt.Errorf("drain of %s: writing to etcd: %w", host, err)
		}
		if t.Succeeded {
			res.Action = "draining"
		}
		rev = t.Header.Revision
	} else {
		d, err := s.client.Delete(ctx, key)
		if err != nil {
			return api.DrainResult{}, fmt.Errorf("undrain of %s: writing to etcd: %w", host, err)
		}
		if d.Deleted > 0 {
			res.Action = "undrained"
		}
		rev = d.Header.Revision
	}
	if sn, err := s.cache.WaitRev(ctx, rev); err == nil {
		snap = sn
	}
	res.Workers = snap.AssignedTo(host)
	if res.Workers == nil {
		res.Workers = []string{}
	}
	return res, nil
}

// View is the whole system as etcd has it: every host (live or with
// workers assigned, drained or not) and every cluster worker. SystemID is
// left for the caller to fill in.
func (s *Store) View(ctx context.Context) (api.ClusterView, error) {
	snap, err := s.fresh(ctx)
	if err != nil {
		return api.ClusterView{}, err
	}
	return BuildView(snap, s.keys.Prefix, s.host, time.Now().UTC()), nil
}

// BuildView is View of a snapshot.
func BuildView(snap *Snapshot, prefix, from string, now time.Time) api.ClusterView {
	leader := snap.Leader()
	v := api.ClusterView{Prefix: prefix, Leader: leader, From: from, Revision: snap.Rev, ReadAt: now,
		Hosts: []api.ClusterHost{}, Workers: []api.ClusterWorker{}}

	assigned, load := map[string]int{}, map[string]int{}
	for name, a := range snap.Assign {
		if _, ok := snap.Workers[name]; ok {
			assigned[a.Host]++
		}
	}
	for _, r := range snap.Running {
		load[r.Host]++
	}
	hosts := map[string]bool{}
	for h := range snap.Hosts {
		hosts[h] = true
	}
	for h := range snap.Drain {
		hosts[h] = true
	}
	for h, n := range assigned {
		if n > 0 {
			hosts[h] = true
		}
	}
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		rec, alive := snap.Hosts[h]
		ch := api.ClusterHost{Name: h, Alive: alive, Draining: snap.Drain[h], Leader: h == leader,
			Assigned: assigned[h], Load: load[h]}
		if alive {
			ch.Capacity, ch.HTTPAddr, ch.Started, ch.Version = rec.Capacity, rec.HTTPAddr, rec.Started, rec.Version
			ch.Labels = maps.Clone(rec.Labels)
		}
		v.Hosts = append(v.Hosts, ch)
	}

	_, unplaced := Plan(snap)
	why := map[string]string{}
	for _, u := range unplaced {
		why[u.Worker] = u.Reason
	}
	names := slices.Sorted(maps.Keys(snap.Workers))
	for _, name := range names {
		w := snap.Workers[name]
		cw := api.ClusterWorker{Name: name, Class: w.Class, Supervisor: w.Supervisor,
			Constraints: maps.Clone(w.Constraints), Created: w.Created, Pending: why[name]}
		a, assignedOK := snap.Assign[name]
		r, runs := snap.Running[name]
		if runs {
			cw.RunningOn, cw.Pid, cw.Since, cw.Restarts, cw.Error = r.Host, r.PID, r.Since, r.Restarts, r.Error
		}
		if assignedOK {
			cw.Host, cw.Moves = a.Host, a.Moves
		}
		_, hostLive := snap.Hosts[a.Host]
		switch {
		case !assignedOK:
			cw.State = "pending"
			if cw.Pending == "" {
				cw.Pending = waitingReason(snap)
			}
		case runs && r.Host == a.Host:
			cw.State = r.State
		case !runs && !hostLive && cw.Pending != "":
			cw.State = "pending"
		default:
			cw.State = "moving"
		}
		v.Workers = append(v.Workers, cw)
	}
	sort.Slice(v.Workers, func(i, j int) bool { return v.Workers[i].Name < v.Workers[j].Name })
	return v
}
