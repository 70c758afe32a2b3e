// Package cluster makes the hosts of one system one system, on etcd (v3
// API): membership under leases, one leader (etcd election) that places
// the cluster workers on hosts, the system's desired state, fencing, drain
// and the one view of the whole system. docs/cluster.md is the operator's
// description; this comment is the implementer's.
//
// # Keys
//
// Everything lives under one prefix (config: cluster.prefix, default
// "/dynworkers/<system_id>/"):
//
//	hosts/<host>     HostRecord: a live host, put under the host's lease
//	workers/<name>   WorkerRecord: the desired state of a cluster worker (no lease)
//	assign/<name>    Assignment: where the leader placed it (no lease; only the leader writes)
//	running/<name>   Running: the host that runs it, put under that host's lease
//	drain/<host>     "1" while the host is drained (no lease: survives restarts)
//	election/        the leader election (concurrency.Election)
//
// # Who writes what
//
//   - Any host (Store) writes workers/<name> for a control start, stop or
//     restart, in a transaction that keeps the name unique, and drain/.
//   - The leader (Leader) writes assign/<name>, each write guarded by its
//     leadership (the election key's create revision) and by the mod
//     revisions it read, so a deposed leader cannot write.
//   - The host an assignment names (Agent) takes running/<name> with a
//     transaction that succeeds only if no other host holds it, then starts
//     the worker; it stops a worker whose assignment moved away, and then
//     deletes running/<name>.
//
// # The guarantee
//
// running/<name> is a lock under the running host's lease: a host starts a
// worker only while it holds it, and a host that cannot renew its lease
// stops its cluster workers before the lease can have expired (the fence),
// so a worker never runs on two hosts at once. The lease expires TTL after
// the host's last renewal; then the leader re-places its workers and their
// new hosts take the locks. A worker of a host that died is therefore down
// for at most TTL + placement + start time.
package cluster
