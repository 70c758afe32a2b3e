package cluster

// OWNER: helper A (leader).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// LeaderOptions configure Lead.
type LeaderOptions struct {
	Client  *clientv3.Client
	Cache   *Cache
	Session *concurrency.Session // the host's session (its lease)
	Host    string
	Logger  hclog.Logger
}

// errDeposed is returned by applyMove when this host's election key is
// not the one it campaigned with any more.
var errDeposed = errors.New("this host is not the leader any more")

// leaderRetry is how long the leader waits before planning again after an
// etcd error (a change in the cache wakes it sooner).
const leaderRetry = time.Second

// Lead campaigns for leadership of the system with the host's session and,
// while leader, places workers (Plan) and writes the assignments, each
// write guarded by its leadership. It returns when ctx ends or the session
// is lost (then the caller campaigns again with a new one).
//
// Each assignment is written by a transaction that succeeds only if the
// election key this host created is still there with its create revision
// (a deposed leader's write fails), and the worker record and assignment
// have the mod revisions the plan read (a failed compare only means the
// snapshot was stale: the leader plans again at the next change).
func Lead(ctx context.Context, o LeaderOptions) error {
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if o.Client == nil || o.Cache == nil || o.Session == nil || o.Host == "" {
		return errors.New("cluster leader: client, cache, session and host are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-o.Session.Done():
			cancel()
		case <-ctx.Done():
		}
	}()

	el := concurrency.NewElection(o.Session, o.Cache.Keys().Election())
	if err := el.Campaign(ctx, o.Host); err != nil {
		return leadEnd(ctx, o.Session, err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		if err := el.Resign(rctx); err != nil {
			log.Debug("resigning the cluster leadership", "error", err)
		}
	}()
	l := &leader{client: o.Client, keys: o.Cache.Keys(), key: el.Key(), rev: el.Rev(), log: log}
	log.Info("this host is the cluster leader", "host", o.Host)

	wantRev := el.Rev() // the cache must show our election key and our writes
	var lastUnplaced map[string]string
	for {
		ch := o.Cache.Changed()
		snap := o.Cache.Snapshot()
		var retry <-chan time.Time
		if snap.Rev >= wantRev {
			moves, unplaced := Plan(snap)
			lastUnplaced = logUnplaced(log, lastUnplaced, unplaced)
			for _, m := range moves {
				rev, err := l.applyMove(ctx, snap, m, time.Now().UTC())
				if errors.Is(err, errDeposed) {
					log.Warn("lost the cluster leadership", "host", o.Host)
					return leadEnd(ctx, o.Session, err)
				}
				if err != nil {
					if ctx.Err() != nil {
						return leadEnd(ctx, o.Session, err)
					}
					log.Warn("cannot write a placement to etcd; will plan again", "worker", m.Worker, "error", err)
					retry = time.After(leaderRetry)
					break
				}
				if rev > wantRev {
					wantRev = rev
				}
			}
		}
		select {
		case <-ch:
		case <-retry:
		case <-ctx.Done():
			return leadEnd(ctx, o.Session, ctx.Err())
		}
	}
}

// leadEnd is Lead's error: ctx's, or that the session is gone.
func leadEnd(ctx context.Context, s *concurrency.Session, err error) error {
	select {
	case <-s.Done():
		return fmt.Errorf("cluster leader: the host's etcd session ended: %w", err)
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// logUnplaced logs the workers that became unplaceable or changed reason.
func logUnplaced(log hclog.Logger, last map[string]string, unplaced []Unplaced) map[string]string {
	now := make(map[string]string, len(unplaced))
	for _, u := range unplaced {
		now[u.Worker] = u.Reason
		if last[u.Worker] != u.Reason {
			log.Warn("cannot place cluster worker", "worker", u.Worker, "reason", u.Reason)
		}
	}
	return now
}

// leader is a leadership: the election key and its create revision guard
// every write.
type leader struct {
	client *clientv3.Client
	keys   Keys
	key    string
	rev    int64
	log    hclog.Logger
}

// applyMove writes one move of a plan made from snap. It returns the
// revision of the write, 0 with a nil error when a compare failed because
// snap is stale, or errDeposed.
func (l *leader) applyMove(ctx context.Context, snap *Snapshot, m Move, now time.Time) (int64, error) {
	akey, wkey := l.keys.Assign(m.Worker), l.keys.Worker(m.Worker)
	old, had := snap.Assign[m.Worker]
	var assignRev int64
	if had {
		assignRev = old.ModRev
	}
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev),
		clientv3.Compare(clientv3.ModRevision(akey), "=", assignRev),
	}
	var op clientv3.Op
	if m.To == "" {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(wkey), "=", 0))
		op = clientv3.OpDelete(akey)
	} else {
		w, ok := snap.Workers[m.Worker]
		if !ok {
			return 0, nil
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(wkey), "=", w.ModRev))
		a := Assignment{Host: m.To, Since: now, Moves: old.Moves, Reason: m.Reason, From: m.From}
		if m.From != "" {
			a.Moves++
		}
		val, err := json.Marshal(a)
		if err != nil {
			return 0, err
		}
		op = clientv3.OpPut(akey, string(val))
	}
	resp, err := l.client.Txn(ctx).If(cmps...).Then(op).Else(clientv3.OpGet(l.key)).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		// Stale snapshot, or deposed: the election key tells.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 || kvs[0].CreateRevision != l.rev {
			return 0, errDeposed
		}
		return 0, nil
	}
	if m.To == "" {
		l.log.Info("deleted the assignment of a stopped cluster worker", "worker", m.Worker, "from", m.From)
	} else {
		l.log.Info("placed cluster worker", "worker", m.Worker, "from", m.From, "to", m.To, "reason", m.Reason)
	}
	return resp.Header.Revision, nil
}
