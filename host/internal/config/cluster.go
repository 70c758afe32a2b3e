package config

// OWNER: helper C1 (parsing, validation, docs). The struct is the contract.

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// ClusterConfig is the top-level cluster block: the host is one of a system
// of hosts that share their desired state, membership and leader in etcd.
//
//	cluster {
//	  endpoints   = ["https://etcd-1:2379", "https://etcd-2:2379"]
//	  prefix      = "/dynworkers/global/"   # default "/dynworkers/<system_id>/"
//	  lease_ttl   = "10s"                   # default 10s, from 2s to 5m
//	  max_workers = 50                      # cluster workers this host takes; 0: no limit
//	  labels      = { zone = "a" }
//	  username      = "dynworkers"          # etcd auth, with password_file
//	  password_file = "/etc/dynworkers/etcd-password"
//	  secrets_key_file = "/etc/dynworkers/cluster.key"  # seals sensitive config values in etcd
//	  tls { ca_file = "..." cert_file = "..." key_file = "..." server_name = "..." }
//	}
type ClusterConfig struct {
	// Endpoints are the etcd client endpoints (host:port or http(s)://
	// URLs); at least one.
	Endpoints []string
	// Prefix is the key prefix of the system's state, ending in "/";
	// default "/dynworkers/<system_id>/".
	Prefix string
	// LeaseTTL is the TTL of the host's lease (default 10s): a host whose
	// lease expired is dead to the others, and a host that cannot renew it
	// stops its cluster workers before it can expire.
	LeaseTTL time.Duration
	// DialTimeout bounds each connection attempt to etcd (default 5s).
	DialTimeout time.Duration
	// MaxWorkers is how many cluster workers this host takes at most; 0
	// means no limit.
	MaxWorkers int
	// Labels describe the host for placement constraints.
	Labels map[string]string
	// Username and Password authenticate to etcd (password read from
	// password_file, mode 0600; sensitive: never printed).
	Username string
	Password string
	// TLS, if set, is how the host checks etcd's certificate and proves
	// who it is (the same attributes as the amqp block's tls block).
	TLS *AMQPTLS
	// SecretsKeyFile, if set, holds the key (the format of
	// host.state_key_file: the daemon reads it with state.LoadKey) that
	// seals the sensitive attributes of cluster workers' configs in etcd.
	SecretsKeyFile string
	// Range is where the block is, for diagnostics.
	Range hcl.Range
}
