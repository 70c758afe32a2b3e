package cluster

// OWNER: helper A (leader).

import (
	"context"

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

// Lead campaigns for leadership of the system with the host's session and,
// while leader, places workers (Plan) and writes the assignments, each
// write guarded by its leadership. It returns when ctx ends or the session
// is lost (then the caller campaigns again with a new one).
func Lead(ctx context.Context, o LeaderOptions) error { return errTODO }
