package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// wait is the generous deadline of every wait in these tests (2 cores,
// several helpers' tests at once).
const wait = 30 * time.Second

// testCluster is a real etcd, a client and a running Cache of one prefix.
type testCluster struct {
	t      *testing.T
	srv    *etcdtest.Server
	client *clientv3.Client
	keys   Keys
	cache  *Cache
	ctx    context.Context
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	srv := etcdtest.Start(t)
	client := srv.Client(t)
	prefix := DefaultPrefix("test")
	cache := NewCache(client, prefix, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = cache.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-cache.Ready():
	case <-time.After(wait):
		t.Fatal("cache not ready")
	}
	return &testCluster{t: t, srv: srv, client: client, keys: cache.Keys(), cache: cache, ctx: ctx}
}

// waitFor waits for cond on the cache or fails the test with what.
func (tc *testCluster) waitFor(what string, cond func(*Snapshot) bool) *Snapshot {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()
	s, err := tc.cache.WaitFor(ctx, cond)
	if err != nil {
		tc.t.Fatalf("waiting for %s: %v", what, err)
	}
	return s
}

// rev is etcd's current revision.
func (tc *testCluster) rev() int64 {
	tc.t.Helper()
	r, err := tc.client.Get(tc.ctx, "rev-probe")
	if err != nil {
		tc.t.Fatal(err)
	}
	return r.Header.Revision
}

// fakeHost is a host record under its own lease, and an agent stand-in
// that takes running/<name> for the workers assigned to it (as the real
// agent does: create only if absent, under its lease) and releases the
// ones assigned elsewhere or stopped.
type fakeHost struct {
	tc     *testCluster
	name   string
	lease  clientv3.LeaseID
	stopKA context.CancelFunc
	stopAg context.CancelFunc
	agDone chan struct{}
	mu     sync.Mutex
	pid    int
}

// addHost registers a host (capacity, labels "k=v") with a lease of ttl
// seconds kept alive, and runs its agent stand-in.
func (tc *testCluster) addHost(name string, capacity int, ttl int64, labels ...string) *fakeHost {
	tc.t.Helper()
	g, err := tc.client.Grant(tc.ctx, ttl)
	if err != nil {
		tc.t.Fatal(err)
	}
	rec := HostRecord{Name: name, Capacity: capacity, Classes: []string{"echo", "bad"}, Supervisors: []string{"root"},
		Started: time.Now().UTC()}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		if rec.Labels == nil {
			rec.Labels = map[string]string{}
		}
		rec.Labels[k] = v
	}
	val, _ := json.Marshal(rec)
	if _, err := tc.client.Put(tc.ctx, tc.keys.Host(name), string(val), clientv3.WithLease(g.ID)); err != nil {
		tc.t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(tc.ctx)
	ka, err := tc.client.KeepAlive(kctx, g.ID)
	if err != nil {
		tc.t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	actx, acancel := context.WithCancel(tc.ctx)
	h := &fakeHost{tc: tc, name: name, lease: g.ID, stopKA: kcancel, stopAg: acancel, agDone: make(chan struct{}), pid: 1000}
	go h.agent(actx)
	tc.t.Cleanup(func() { h.stopAg(); <-h.agDone; h.stopKA() })
	return h
}

// kill stops the host's agent and its keepalives: its lease expires after
// its TTL, as when a host dies.
func (h *fakeHost) kill() {
	h.stopAg()
	<-h.agDone
	h.stopKA()
}

func (h *fakeHost) agent(ctx context.Context) {
	defer close(h.agDone)
	c, keys := h.tc.client, h.tc.keys
	for ctx.Err() == nil {
		ch := h.tc.cache.Changed()
		s := h.tc.cache.Snapshot()
		for name, r := range s.Running {
			if r.Host != h.name || r.Permanent {
				continue // a permanent failure stays for the start to read
			}
			a, assigned := s.Assign[name]
			if _, ok := s.Workers[name]; ok && assigned && a.Host == h.name {
				continue
			}
			// Stopped or moved away: stop it, release the lock.
			_, _ = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.Running(name)), "=", r.ModRev)).
				Then(clientv3.OpDelete(keys.Running(name))).Commit()
		}
		for name, a := range s.Assign {
			w, ok := s.Workers[name]
			if !ok || a.Host != h.name {
				continue
			}
			r, held := s.Running[name]
			switch {
			case !held && w.Class == "bad":
				// A permanent first-start failure: report it, delete the record.
				v, _ := json.Marshal(Running{Host: h.name, State: "failed", SpecHash: w.SpecHash, Generation: w.Generation,
					Error: fmt.Sprintf("worker %q: invalid config: rejected by the plugin", name), Permanent: true, Code: "invalid_config"})
				_, _ = c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.Running(name)), "=", 0),
					clientv3.Compare(clientv3.ModRevision(keys.Worker(name)), "=", w.ModRev)).
					Then(clientv3.OpPut(keys.Running(name), string(v), clientv3.WithLease(h.lease)),
						clientv3.OpDelete(keys.Worker(name))).Commit()
			case !held:
				h.mu.Lock()
				h.pid++
				pid := h.pid
				h.mu.Unlock()
				run := Running{Host: h.name, State: "starting", Since: time.Now().UTC(), Generation: w.Generation, SpecHash: w.SpecHash}
				v, _ := json.Marshal(run)
				t, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.Running(name)), "=", 0)).
					Then(clientv3.OpPut(keys.Running(name), string(v), clientv3.WithLease(h.lease))).Commit()
				if err != nil || !t.Succeeded {
					continue
				}
				run.State, run.PID = "running", pid
				v, _ = json.Marshal(run)
				_, _ = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.Running(name)), "=", t.Header.Revision)).
					Then(clientv3.OpPut(keys.Running(name), string(v), clientv3.WithLease(h.lease))).Commit()
			case r.Host == h.name && !r.Permanent && (r.Generation != w.Generation || r.SpecHash != w.SpecHash):
				r.Generation, r.SpecHash, r.State = w.Generation, w.SpecHash, "running"
				r.Restarts++
				v, _ := json.Marshal(r)
				_, _ = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.Running(name)), "=", r.ModRev)).
					Then(clientv3.OpPut(keys.Running(name), string(v), clientv3.WithLease(h.lease))).Commit()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// leaderRun is a Lead running in the background.
type leaderRun struct {
	host    string
	session *concurrency.Session
	log     *logBuf
	cancel  context.CancelFunc
	done    chan error
}

// startLeader runs Lead for host with a session of its own.
func (tc *testCluster) startLeader(host string) *leaderRun {
	tc.t.Helper()
	sess, err := concurrency.NewSession(tc.client, concurrency.WithTTL(5))
	if err != nil {
		tc.t.Fatal(err)
	}
	lr := &leaderRun{host: host, session: sess, log: &logBuf{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(tc.ctx)
	lr.cancel = cancel
	logger := hclog.New(&hclog.LoggerOptions{Output: lr.log, Level: hclog.Info})
	go func() {
		lr.done <- Lead(ctx, LeaderOptions{Client: tc.client, Cache: tc.cache, Session: sess, Host: host, Logger: logger})
	}()
	tc.t.Cleanup(func() {
		cancel()
		select {
		case <-lr.done:
		case <-time.After(wait):
			tc.t.Errorf("Lead of %s did not return", host)
		}
		_ = sess.Close()
	})
	return lr
}

// spec is a resolved spec of class echo with the given hash.
func spec(hash string) Resolved {
	return Resolved{Class: "echo", Supervisor: "root", Config: json.RawMessage(`{"queue":"q"}`), SpecHash: hash}
}
