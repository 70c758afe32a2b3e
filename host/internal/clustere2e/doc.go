// Package clustere2e holds the system tests of cluster mode (docs/cluster.md):
// each runs real `dynworkers serve` processes (the binary built from this
// tree), a real etcd (etcdtest, one per test, each host reaching it through a
// proxy of its own that the test can black-hole) and the RabbitMQ broker of
// brokertest, with the hello example plugin as the workers, and checks the
// guarantees of the "Must hold" list from outside: through the
// control messages, the hosts' HTTP status and /proc. A sampler reads every
// live host's workers every 50 ms and records a violation whenever one
// worker name has live processes on two hosts.
//
// The package has only this file besides its tests. The cluster benchmarks
// (TestBenchCluster*, run by make bench) live here too, because they need
// the same harness.
package clustere2e
