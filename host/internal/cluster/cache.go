package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is the cluster state under the prefix at one etcd revision. It
// is immutable: the cache replaces it, never changes it.
type Snapshot struct {
	Rev     int64
	Hosts   map[string]HostRecord
	Workers map[string]WorkerRecord
	Assign  map[string]Assignment
	Running map[string]Running
	Drain   map[string]bool
	// elections are the election keys: the leader is the value of the one
	// created first.
	elections map[string]electionKey
}

type electionKey struct {
	value     string
	createRev int64
}

// Leader is the host name of the current leader, "" when there is none.
func (s *Snapshot) Leader() string {
	var best electionKey
	for _, e := range s.elections {
		if best.createRev == 0 || e.createRev < best.createRev {
			best = e
		}
	}
	return best.value
}

// AssignedTo lists the workers assigned to host, sorted.
func (s *Snapshot) AssignedTo(host string) []string {
	var out []string
	for name, a := range s.Assign {
		if a.Host == host {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func newSnapshot() *Snapshot {
	return &Snapshot{
		Hosts: map[string]HostRecord{}, Workers: map[string]WorkerRecord{}, Assign: map[string]Assignment{},
		Running: map[string]Running{}, Drain: map[string]bool{}, elections: map[string]electionKey{},
	}
}

func (s *Snapshot) clone() *Snapshot {
	return &Snapshot{
		Rev: s.Rev, Hosts: maps.Clone(s.Hosts), Workers: maps.Clone(s.Workers), Assign: maps.Clone(s.Assign),
		Running: maps.Clone(s.Running), Drain: maps.Clone(s.Drain), elections: maps.Clone(s.elections),
	}
}

// Cache keeps a Snapshot of the prefix up to date with one etcd watch. The
// leader, the agent and the store of a host share one.
type Cache struct {
	client *clientv3.Client
	keys   Keys
	log    hclog.Logger

	mu      sync.Mutex
	snap    *Snapshot
	changed chan struct{} // closed (and replaced) at each change
	ready   chan struct{} // closed once the first snapshot is loaded
}

// NewCache returns a cache of the cluster state under prefix; Run fills it.
func NewCache(client *clientv3.Client, prefix string, logger hclog.Logger) *Cache {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Cache{client: client, keys: Keys{Prefix: prefix}, log: logger, snap: newSnapshot(),
		changed: make(chan struct{}), ready: make(chan struct{})}
}

// Keys returns the cache's key builder.
func (c *Cache) Keys() Keys { return c.keys }

// Ready is closed once the first snapshot is loaded.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Snapshot returns the current snapshot (empty before Ready).
func (c *Cache) Snapshot() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// Changed returns a channel closed at the next change after the call, so
// that "ch := c.Changed(); s := c.Snapshot(); ...; <-ch" misses nothing.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitFor waits until cond holds of a snapshot, and returns that snapshot;
// or returns ctx's error.
func (c *Cache) WaitFor(ctx context.Context, cond func(*Snapshot) bool) (*Snapshot, error) {
	for {
		ch := c.Changed()
		s := c.Snapshot()
		if s.Rev > 0 && cond(s) {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// WaitRev waits until the snapshot is at rev or later (a write this host
// made is then in it).
func (c *Cache) WaitRev(ctx context.Context, rev int64) (*Snapshot, error) {
	return c.WaitFor(ctx, func(s *Snapshot) bool { return s.Rev >= rev })
}

func (c *Cache) publish(s *Snapshot) {
	c.mu.Lock()
	c.snap = s
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Run loads the prefix and follows it until ctx ends. A watch that fails
// (etcd restarted and compacted, a lost connection the client gave up on)
// is replaced by a fresh load. It returns ctx's error.
func (c *Cache) Run(ctx context.Context) error {
	first := true
	for ctx.Err() == nil {
		rev, err := c.load(ctx)
		if err != nil {
			c.log.Warn("cannot read the cluster state from etcd; retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		if first {
			close(c.ready)
			first = false
		}
		if err := c.follow(ctx, rev+1); err != nil && ctx.Err() == nil {
			c.log.Warn("the cluster state watch ended; reading it again", "error", err)
		}
	}
	return ctx.Err()
}

func (c *Cache) load(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.client.Get(rctx, c.keys.Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	s := newSnapshot()
	for _, kv := range r.Kvs {
		c.apply(s, kv, false)
	}
	s.Rev = r.Header.Revision
	c.publish(s)
	return s.Rev, nil
}

func (c *Cache) follow(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wc := c.client.Watch(wctx, c.keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range wc {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 {
			continue
		}
		s := c.Snapshot().clone()
		for _, ev := range resp.Events {
			c.apply(s, ev.Kv, ev.Type == mvccpb.DELETE)
		}
		s.Rev = resp.Header.Revision
		c.publish(s)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}

// apply puts kv into s (or deletes it).
func (c *Cache) apply(s *Snapshot, kv *mvccpb.KeyValue, deleted bool) {
	kind, name := c.keys.split(string(kv.Key))
	if name == "" {
		return
	}
	meta := Meta{CreateRev: kv.CreateRevision, ModRev: kv.ModRevision, Lease: kv.Lease}
	bad := func(err error) {
		c.log.Error("cannot decode a cluster key; ignoring it", "key", string(kv.Key), "error", err)
	}
	switch kind {
	case kindHosts:
		if deleted {
			delete(s.Hosts, name)
			return
		}
		var r HostRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			bad(err)
			return
		}
		r.Meta = meta
		s.Hosts[name] = r
	case kindWorkers:
		if deleted {
			delete(s.Workers, name)
			return
		}
		var r WorkerRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			bad(err)
			return
		}
		r.Meta = meta
		s.Workers[name] = r
	case kindAssign:
		if deleted {
			delete(s.Assign, name)
			return
		}
		var r Assignment
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			bad(err)
			return
		}
		r.Meta = meta
		s.Assign[name] = r
	case kindRunning:
		if deleted {
			delete(s.Running, name)
			return
		}
		var r Running
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			bad(err)
			return
		}
		r.Meta = meta
		s.Running[name] = r
	case kindDrain:
		if deleted {
			delete(s.Drain, name)
			return
		}
		s.Drain[name] = true
	case kindElection:
		if deleted {
			delete(s.elections, name)
			return
		}
		s.elections[name] = electionKey{value: string(kv.Value), createRev: kv.CreateRevision}
	}
}
