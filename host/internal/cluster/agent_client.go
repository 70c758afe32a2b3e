package cluster

// OWNER: helper B (agent).

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DialOptions are the gRPC options a cluster host's etcd client should be
// made with (clientv3.Config.DialOptions): reconnect attempts start 100 ms
// after a lost connection and are at most 1 s apart, rather than gRPC's
// default 1 s growing to 2 min, so that the host's lease renewals reach an
// etcd that restarted well before the fence threshold (0.6·TTL).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 2 * time.Second,
	})}
}
