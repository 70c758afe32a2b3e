package cluster

// OWNER: helper A (store). The signatures are the contract; the bodies are
// to be written.

import (
	"context"
	"errors"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var errTODO = errors.New("cluster: not built yet")

// Store is the control side of the cluster on one host: what a control
// start, stop, restart, drain or cluster status received by this host does
// to the desired state in etcd, and the waits for its outcome.
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

// Start writes the worker's record once, in a transaction that keeps its
// name unique in the system: no record yet → "started"; a record with the
// same SpecHash (and constraints) → "unchanged" (nothing written); another
// spec → a control conflict error unless Replace, then "replaced". It then
// waits, until ctx ends, for the worker's outcome: placed and running (or
// in backoff) on some host, or its first start failed for good there (the
// error, with the control code a local start would give), or no host fits
// (api.StartResult.State "pending" and a reason). The result names the
// host.
func (s *Store) Start(ctx context.Context, req StartRequest) (api.StartResult, error) {
	return api.StartResult{}, errTODO
}

// Has reports whether name is a cluster worker.
func (s *Store) Has(ctx context.Context, name string) (bool, error) { return false, errTODO }

// Stop deletes the worker's record and waits (until ctx ends) until no host
// runs it. found is false when name is not a cluster worker.
func (s *Store) Stop(ctx context.Context, name string) (result api.WorkerResult, found bool, err error) {
	return api.WorkerResult{}, false, errTODO
}

// Restart bumps the worker's generation and waits until its host runs the
// new one. found is false when name is not a cluster worker.
func (s *Store) Restart(ctx context.Context, name string) (found bool, err error) {
	return false, errTODO
}

// Drain marks host as drained (on) or not (off). A drained host gets no new
// cluster workers and the leader moves its workers away one by one. The
// result lists the workers it still has.
func (s *Store) Drain(ctx context.Context, host string, on bool) (api.DrainResult, error) {
	return api.DrainResult{}, errTODO
}

// View is the whole system as etcd has it: every host (live or with
// workers assigned, drained or not) and every cluster worker.
func (s *Store) View(ctx context.Context) (api.ClusterView, error) {
	return api.ClusterView{}, errTODO
}

var _ = time.Second
