package cluster

// OWNER: helper B (agent): membership, the lease, the fence, the campaign.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// fenceFraction: the agent fences when no renewal succeeded for this part
// of the TTL since the send time of the last one that did.
const fenceFraction = 0.6

func (a *Agent) ttlSeconds() int64 { return int64(math.Ceil(a.o.TTL.Seconds())) }

// hostRecord is the record this host puts at hosts/<host> now.
func (a *Agent) hostRecord() HostRecord {
	off := a.o.Runner.Offers()
	classes := slices.Clone(off.Classes)
	sups := slices.Clone(off.Supervisors)
	slices.Sort(classes)
	slices.Sort(sups)
	return HostRecord{
		Name: a.o.Host, Capacity: a.o.Capacity, Labels: maps.Clone(a.o.Labels),
		Classes: classes, Supervisors: sups, Load: len(a.o.Runner.Local()),
		HTTPAddr: a.o.HTTPAddr, Started: a.started, Updated: time.Now().UTC(), Version: a.o.Version,
	}
}

// sameHost reports whether two records differ in nothing but Updated.
func sameHost(x, y HostRecord) bool {
	x.Updated, y.Updated = time.Time{}, time.Time{}
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}

// join grants a lease and registers hosts/<host> under it. If a live
// lease of another host holds the name, it waits up to TTL + 1 s for it to
// go (a quick restart after a crash), then fails. It returns the lease and
// the send time of its grant.
func (a *Agent) join(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	hk := a.keys.Host(a.o.Host)
	var deadline time.Time
	waiting := false
	for {
		sent := time.Now()
		rec := a.hostRecord()
		val, err := json.Marshal(rec)
		if err != nil {
			return 0, time.Time{}, err
		}
		gctx, cancel := context.WithTimeout(ctx, a.o.TTL)
		g, err := a.o.Client.Grant(gctx, a.ttlSeconds())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, time.Time{}, ctx.Err()
			}
			a.log.Warn("cannot grant the host's lease in etcd; retrying", "error", err)
			if !sleepCtx(ctx, time.Second) {
				return 0, time.Time{}, ctx.Err()
			}
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, a.o.TTL)
		r, err := a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(hk), "=", 0)).
			Then(clientv3.OpPut(hk, string(val), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(hk)).Commit()
		cancel()
		if err == nil && r.Succeeded {
			a.mu.Lock()
			a.lastHost = &rec
			a.mu.Unlock()
			return g.ID, sent, nil
		}
		a.revoke(g.ID)
		if err != nil {
			if ctx.Err() != nil {
				return 0, time.Time{}, ctx.Err()
			}
			a.log.Warn("cannot register the host in etcd; retrying", "error", err)
			if !sleepCtx(ctx, time.Second) {
				return 0, time.Time{}, ctx.Err()
			}
			continue
		}
		kvs := r.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && kvs[0].Lease == 0 {
			// Not under a lease: nobody's, it would never go. Replace it.
			a.log.Warn("replacing a host key that is under no lease", "host", a.o.Host)
			_, _ = a.o.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(hk), "=", kvs[0].ModRevision)).
				Then(clientv3.OpDelete(hk)).Commit()
			continue
		}
		if !waiting {
			waiting = true
			deadline = time.Now().Add(a.o.TTL + time.Second)
			a.log.Info("the host name is held by a live lease (a previous run of this host?); waiting for it to expire",
				"host", a.o.Host, "wait", a.o.TTL+time.Second)
		}
		if time.Now().After(deadline) {
			return 0, time.Time{}, fmt.Errorf("host name %q is taken by a live host in the cluster at prefix %q", a.o.Host, a.keys.Prefix)
		}
		// Wait for the key to go before granting again.
		for time.Now().Before(deadline) {
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return 0, time.Time{}, ctx.Err()
			}
			gctx, cancel := context.WithTimeout(ctx, time.Second)
			gr, err := a.o.Client.Get(gctx, hk)
			cancel()
			if err == nil && len(gr.Kvs) == 0 {
				break
			}
		}
	}
}

// renewLoop renews the lease every TTL/5, each call bounded by TTL/5, and
// records the send time of each renewal that succeeded.
func (a *Agent) renewLoop(ctx context.Context) {
	interval := a.o.TTL / 5
	next := time.Now().Add(interval)
	for {
		if !sleepCtx(ctx, time.Until(next)) {
			return
		}
		next = time.Now().Add(interval)
		a.mu.Lock()
		lease, leaving := a.lease, a.leaving
		a.mu.Unlock()
		if leaving {
			return
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, interval)
		_, err := a.o.Client.KeepAliveOnce(cctx, lease)
		cancel()
		switch {
		case err == nil:
			a.renewed(lease, sent)
		case ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			a.leaseLost(ctx, lease)
			next = time.Now().Add(interval)
		default:
			a.mu.Lock()
			since := time.Since(a.lastOK)
			a.mu.Unlock()
			a.log.Debug("cannot renew the host's lease", "error", err, "since_last_renewal", since.Round(time.Millisecond))
		}
	}
}

// renewed records a successful renewal sent at sent, and unfences.
func (a *Agent) renewed(lease clientv3.LeaseID, sent time.Time) {
	a.mu.Lock()
	if a.lease != lease || a.leaving {
		a.mu.Unlock()
		return
	}
	if sent.After(a.lastOK) {
		a.lastOK = sent
	}
	fenced := a.fenced
	a.mu.Unlock()
	if fenced {
		a.unfence("the lease was renewed again; it is still alive")
	}
}

// fenceLoop fences when no renewal succeeded for 0.6·TTL since the send
// time of the last one that did.
func (a *Agent) fenceLoop(ctx context.Context) {
	step := min(a.o.TTL/50, 50*time.Millisecond)
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		due := !a.fenced && !a.leaving && a.lease != 0 &&
			time.Since(a.lastOK) > time.Duration(fenceFraction*float64(a.o.TTL))
		a.mu.Unlock()
		if due {
			a.fence("no lease renewal succeeded for 0.6 of the TTL")
		}
	}
}

// fence stops every cluster worker of the host, so that none runs once the
// lease may have expired, and starts nothing until unfenced. It returns
// once the stops are done.
func (a *Agent) fence(why string) { a.fenceBy(why, time.Time{}) }

// fenceBy is fence with a stop deadline: zero means the last renewal's
// send time + TTL - 1 s; a lease known to be gone stops at once.
func (a *Agent) fenceBy(why string, deadline time.Time) {
	a.mu.Lock()
	if a.fenced || a.leaving {
		ch := a.fenceWG
		a.mu.Unlock()
		if ch != nil {
			<-ch
		}
		return
	}
	a.fenced, a.fenceAt = true, time.Now()
	a.stopBy = a.lastOK.Add(a.o.TTL - time.Second)
	if !deadline.IsZero() && deadline.Before(a.stopBy) {
		a.stopBy = deadline
	}
	a.cancelRun()
	a.runGen++
	ch := make(chan struct{})
	a.fenceWG = ch
	stopBy, lastOK := a.stopBy, a.lastOK
	names := map[string]bool{}
	for n := range a.inflight {
		names[n] = true
	}
	a.mu.Unlock()
	for n := range a.o.Runner.Local() {
		names[n] = true
	}
	a.log.Warn("fenced: cannot renew the host's lease; stopping this host's cluster workers before it can expire",
		"reason", why, "since_last_renewal", time.Since(lastOK).Round(time.Millisecond),
		"stop_deadline_in", time.Until(stopBy).Round(time.Millisecond), "workers", len(names))
	start := time.Now()
	a.stopNames(names, stopBy)
	a.log.Warn("fenced: this host's cluster workers are stopped", "workers", len(names),
		"took", time.Since(start).Round(time.Millisecond),
		"before_lease_expiry", time.Until(lastOK.Add(a.o.TTL)).Round(time.Millisecond))
	close(ch)
}

// stopNames stops the names concurrently, killing at deadline.
func (a *Agent) stopNames(names map[string]bool, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.o.Runner.Stop(ctx, name); err != nil {
				a.log.Error("stopping a cluster worker at the fence", "worker", name, "error", err)
			}
			a.forgetSpec(name)
		}()
	}
	wg.Wait()
}

// unfence lets the agent start workers again (after the fence's stops).
func (a *Agent) unfence(why string) {
	a.mu.Lock()
	ch := a.fenceWG
	a.mu.Unlock()
	if ch != nil {
		<-ch
	}
	a.mu.Lock()
	if !a.fenced || a.leaving || a.base == nil {
		a.mu.Unlock()
		return
	}
	a.fenced = false
	fencedFor := time.Since(a.fenceAt)
	a.runCtx, a.cancelRun = context.WithCancel(a.base)
	a.signalLeaseLocked()
	a.mu.Unlock()
	a.log.Info("unfenced: the host takes its cluster workers again", "reason", why,
		"fenced_for", fencedFor.Round(time.Millisecond))
	a.kick()
	a.kickHost()
}

// leaseLost fences (if not yet), then joins again with a new lease until
// it can or ctx ends.
func (a *Agent) leaseLost(ctx context.Context, old clientv3.LeaseID) {
	a.log.Warn("the host's lease has expired in etcd; joining again with a new one", "host", a.o.Host,
		"lease", fmt.Sprintf("%x", int64(old)))
	a.fenceBy("the lease expired", time.Now()) // others may take the workers now: stop at once
	for ctx.Err() == nil {
		if a.state().leaving {
			return
		}
		lease, sent, err := a.join(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("cannot join the cluster again", "error", err)
			sleepCtx(ctx, a.o.TTL)
			continue
		}
		a.mu.Lock()
		if a.leaving {
			a.mu.Unlock()
			a.revoke(lease)
			return
		}
		a.lease, a.lastOK = lease, sent
		a.leaseN++
		a.mu.Unlock()
		a.log.Info("joined the cluster again", "host", a.o.Host, "lease", fmt.Sprintf("%x", int64(lease)))
		a.unfence("joined again with a new lease")
		return
	}
}

// leaderLoop campaigns (Lead) with a session on the host's lease while the
// lease lives and the host is not fenced; again with each new lease.
func (a *Agent) leaderLoop(ctx context.Context) {
	for ctx.Err() == nil {
		a.mu.Lock()
		lease, n, ok := a.lease, a.leaseN, !a.fenced && !a.leaving && a.lease != 0
		wake := a.leasec
		a.mu.Unlock()
		if a.state().leaving {
			return
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-time.After(time.Second):
			}
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		sess, err := concurrency.NewSession(a.o.Client, concurrency.WithLease(lease),
			concurrency.WithContext(sctx), concurrency.WithTTL(int(a.ttlSeconds())))
		if err != nil {
			cancel()
			a.log.Debug("cannot open the election session", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		for sctx.Err() == nil {
			err := a.lead(sctx, LeaderOptions{Client: a.o.Client, Cache: a.o.Cache, Session: sess, Host: a.o.Host,
				Logger: a.log.Named("leader")})
			a.mu.Lock()
			same := a.leaseN == n && !a.leaving
			a.mu.Unlock()
			if !same || ctx.Err() != nil {
				break
			}
			select {
			case <-sess.Done():
			default:
				if err != nil {
					a.log.Debug("the campaign ended; campaigning again", "error", err)
				}
				select {
				case <-sctx.Done():
				case <-sess.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			break
		}
		cancel()
		sess.Orphan() // never Close: that would revoke the host's lease
	}
}

// hostLoop keeps hosts/<host> current: load and offers, re-read every few
// seconds and after each local change (debounced).
func (a *Agent) hostLoop(ctx context.Context) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.hostc:
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
			select {
			case <-a.hostc:
			default:
			}
		}
		if err := a.putHost(ctx); err != nil && ctx.Err() == nil {
			a.log.Debug("cannot update the host record", "error", err)
		}
	}
}

func (a *Agent) putHost(ctx context.Context) error {
	st := a.state()
	if st.fenced || st.leaving || st.lease == 0 {
		return nil
	}
	rec := a.hostRecord()
	a.mu.Lock()
	last := a.lastHost
	a.mu.Unlock()
	if last != nil && sameHost(*last, rec) {
		return nil
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	hk := a.keys.Host(a.o.Host)
	tctx, cancel := context.WithTimeout(ctx, a.o.TTL/2)
	defer cancel()
	r, err := a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.LeaseValue(hk), "=", st.lease)).
		Then(clientv3.OpPut(hk, string(val), clientv3.WithLease(st.lease))).Commit()
	if err != nil {
		return err
	}
	if !r.Succeeded {
		// Deleted by hand while the lease lives: put it back if free.
		r, err = a.o.Client.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(hk), "=", 0)).
			Then(clientv3.OpPut(hk, string(val), clientv3.WithLease(st.lease))).Commit()
		if err != nil {
			return err
		}
		if !r.Succeeded {
			return fmt.Errorf("hosts/%s is held by another lease", a.o.Host)
		}
	}
	a.mu.Lock()
	a.lastHost = &rec
	a.mu.Unlock()
	return nil
}
