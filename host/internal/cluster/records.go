package cluster

import (
	"encoding/json"
	"strings"
	"time"
)

// Key kinds: the first segment of a key under the prefix.
const (
	kindHosts    = "hosts/"
	kindWorkers  = "workers/"
	kindAssign   = "assign/"
	kindRunning  = "running/"
	kindDrain    = "drain/"
	kindElection = "election/"
)

// DefaultPrefix is the key prefix of a system's cluster state when the
// cluster block sets none.
func DefaultPrefix(systemID string) string { return "/dynworkers/" + systemID + "/" }

// Keys builds the keys under one prefix (which ends in "/").
type Keys struct{ Prefix string }

// Host is hosts/<host>.
func (k Keys) Host(host string) string { return k.Prefix + kindHosts + host }

// Worker is workers/<name>.
func (k Keys) Worker(name string) string { return k.Prefix + kindWorkers + name }

// Assign is assign/<name>.
func (k Keys) Assign(name string) string { return k.Prefix + kindAssign + name }

// Running is running/<name>.
func (k Keys) Running(name string) string { return k.Prefix + kindRunning + name }

// Drain is drain/<host>.
func (k Keys) Drain(host string) string { return k.Prefix + kindDrain + host }

// Election is the election prefix.
func (k Keys) Election() string { return k.Prefix + kindElection }

// split returns a key's kind ("hosts/", ...) and name, or "" when the key
// is none of the kinds.
func (k Keys) split(key string) (kind, name string) {
	rest, ok := strings.CutPrefix(key, k.Prefix)
	if !ok {
		return "", ""
	}
	for _, kd := range []string{kindHosts, kindWorkers, kindAssign, kindRunning, kindDrain, kindElection} {
		if n, ok := strings.CutPrefix(rest, kd); ok {
			return kd, n
		}
	}
	return "", ""
}

// Meta is what etcd says of a key, for the transactions that depend on it.
type Meta struct {
	CreateRev int64 `json:"-"`
	ModRev    int64 `json:"-"`
	Lease     int64 `json:"-"`
}

// HostRecord is hosts/<host>: a live host, under its lease.
type HostRecord struct {
	Name string `json:"name"`
	// Capacity is the host's max_workers: how many cluster workers it
	// takes at most; 0 means no limit.
	Capacity int               `json:"capacity"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Classes are the worker classes (canonical names and aliases) the
	// host's plugins offer; Supervisors the paths of its running
	// supervisors. The leader places a worker only where both fit.
	Classes     []string `json:"classes,omitempty"`
	Supervisors []string `json:"supervisors,omitempty"`
	// Load is how many cluster workers run on the host.
	Load int `json:"load"`
	// HTTPAddr is the host's HTTP API address, "" when it has none.
	HTTPAddr string    `json:"http_addr,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Version  string    `json:"version,omitempty"`
	Meta     `json:"-"`
}

// WorkerRecord is workers/<name>: a cluster worker's desired state, written
// by the host that took the control start.
type WorkerRecord struct {
	Name       string `json:"name"`
	Class      string `json:"class"`
	Supervisor string `json:"supervisor"` // path; "" or "root" is the root
	// Config is the worker's config as JSON after conversion and
	// defaults; its sensitive attributes are sealed when the cluster has
	// a secrets key (see Sealer): then Sealed names them.
	Config json.RawMessage `json:"config"`
	Sealed []string        `json:"sealed,omitempty"`
	// SpecHash is config.Worker.SpecHash of the resolved worker: two
	// starts of one name with equal hashes are the same spec.
	SpecHash string `json:"spec_hash"`
	// Constraints are labels a host must have (all of them) to run it.
	Constraints map[string]string `json:"constraints,omitempty"`
	// Generation grows with each restart_worker: a host that runs an
	// older generation restarts it.
	Generation int64     `json:"generation"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// By is the host that wrote the record.
	By   string `json:"by,omitempty"`
	Meta `json:"-"`
}

// Assignment is assign/<name>: where the leader placed a worker.
type Assignment struct {
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
	// Moves counts how often the worker was placed on another host
	// (failover, drain, rebalance) after its first placement.
	Moves int `json:"moves"`
	// Reason is why it was placed there: "placed", "failover", "drain"
	// or "rebalance".
	Reason string `json:"reason"`
	// From is the host the worker was moved off (failover, drain), ""
	// at its first placement: the leader's drain waits on it.
	From string `json:"from,omitempty"`
	Meta `json:"-"`
}

// Running is running/<name>: the host that runs the worker, under that
// host's lease; updated by that host as the worker's state changes.
type Running struct {
	Host       string    `json:"host"`
	State      string    `json:"state"` // as in status: starting, running, backoff, ...
	PID        int       `json:"pid,omitempty"`
	Since      time.Time `json:"since"` // when this host took it
	Restarts   int       `json:"restarts"`
	Generation int64     `json:"generation"`
	SpecHash   string    `json:"spec_hash"`
	// Error is set when the worker's first start on the host failed;
	// Permanent when retrying cannot help (the record was then deleted).
	Error     string `json:"error,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	// Code is the control error code of a permanent failure
	// (invalid_config or internal), for the reply to the start.
	Code string `json:"code,omitempty"`
	Meta `json:"-"`
}

// Assignment reasons.
const (
	ReasonPlaced    = "placed"
	ReasonFailover  = "failover"
	ReasonDrain     = "drain"
	ReasonRebalance = "rebalance"
)
