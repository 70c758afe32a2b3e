// Package monitor measures worker processes and speaks Vumi's monitoring
// formats: it reads process figures from /proc, encodes Vumi metrics
// messages, aggregates the metrics workers report, and builds Vumi
// heartbeats. It decides nothing about when to sample or where to publish:
// the host's daemon calls it every 5 s (metrics) and 10 s (heartbeats) and
// publishes what it returns (DESIGN.md §6).
//
// # Process figures
//
// ReadProc(pid), or Sampler.Read, returns a ProcStats: resident memory, CPU
// time (user + system), open descriptors, threads, state, parent and start
// time, from /proc/<pid>/stat and /proc/<pid>/fd, read through
// github.com/prometheus/procfs: it is the host's one /proc reader, which
// the benchmark harness and the test plugins use too. CPU and start times
// are in clock ticks of USER_HZ, 100 on every architecture Go runs Linux
// on. The descriptor count is the size of /proc/<pid>/fd on Linux 6.2 and
// later, and the number of its entries before. A process that does not
// exist, or exits while it is read, gives an error wrapping
// os.ErrNotExist; a zombie is still read, with State 'Z'. Children lists
// the live children of a process.
//
// A read costs about 29 µs of CPU on the CI machine (BenchmarkSample500):
// the kernel's work of opening the /proc files, and procfs parsing every
// field of stat. Sampling 500 workers every 5 s, 100 reads a second, then
// takes about 0.3% of a core; the hand-written reader procfs replaced took
// 11 µs, a saving that was not worth its upkeep below 1% of a core.
// ProcDatapoints turns a sample into the per-worker datapoints rss_bytes,
// cpu_seconds, open_fds, threads and uptime_seconds.
//
// # Vumi metrics messages
//
// Vumi workers publish metrics on the direct exchange vumi.metrics with
// routing key vumi.metrics (MetricsExchange, MetricsRoutingKey). The body
// is MetricMessage:
//
//	{"datapoints": [["<name>", ["<aggregator>", ...], [[<unix seconds>, <value>], ...]], ...]}
//
// Each Datapoint names a metric, the aggregators Vumi's metric workers are
// to apply to its values, and the values with their times. As in Vumi's
// MetricManager, times are whole seconds (int(time.time())). Values are
// always written with a decimal point ("3.0", not "3"): Vumi's aggregators
// run on Python 2, where the average of integers would be computed with
// integer division. Decoding accepts both.
//
// Downstream, Vumi's MetricTimeBucket and MetricAggregator workers group
// the values of each name into time buckets and publish, for each
// aggregator, <name>.<aggregator> on vumi.metrics.aggregates, from which
// Graphite collectors read. So a process figure sent as rss_bytes with
// ["avg"] reaches Graphite as rss_bytes.avg.
//
// # Metrics reported by workers
//
// Workers report values through the host (Env.Metric in the SDK) with any
// of Vumi's aggregators: sum, avg, min, max and last; none means avg, the
// default of Vumi's Metric class (its Count class defaults to sum). A
// Registry collects them per prefix (WorkerPrefix) and metric name
// (sanitised by SanitizeName to [a-z0-9_.]). Unlike Vumi's MetricManager,
// which sends every value it was given, the Registry folds values into a
// running count, sum, min, max and last (the last in call order) as they
// arrive, so its memory does
// not grow with the rate at which a worker reports. A prefix may have at
// most DefaultMaxNames (1000) distinct names, the names at most MaxNameLen
// bytes; further names are rejected with ErrTooManyMetrics until the
// prefix is removed, so a worker that makes up a name per message cannot
// grow the host's memory either.
//
// Registry.Flush returns, for each metric recorded since the last flush,
// one datapoint per aggregator, named <prefix>.<name>.<aggregator> and
// carrying that aggregator alone, with one point: the aggregate of the
// interval. Why not one datapoint <prefix>.<name> with all its aggregators,
// as a Vumi worker would send? Because that form needs every raw value to
// stay right downstream: Vumi's MetricAggregator merges everything sent
// under one name in a bucket, so per-aggregator summaries sent under the
// same name would be mixed together (a metric with sum and max would get
// the max added to its sum). With one name per aggregator, and that
// aggregator asked for, the downstream result stays right: a sum of sums,
// a min of mins, a max of maxes and a last of lasts are exact; an average
// of interval averages is exact when a bucket holds one flush (buckets as
// long as the flush interval) and an unweighted approximation otherwise.
// The price is that after Vumi's aggregator the Graphite name ends with
// the aggregator twice (messages_sent.sum.sum); consumers of vumi.metrics
// itself, such as a Prometheus exporter, see messages_sent.sum.
//
// # Heartbeats
//
// A Heartbeat is Vumi's heartbeat message, version 20130319, published on
// exchange vumi.health with routing key heartbeat.inbound (HeartbeatExchange,
// HeartbeatRoutingKey):
//
//	{"version":"20130319","system_id":"prod","worker_id":"prod:echo","worker_name":"echo",
//	 "hostname":"web-1","timestamp":1700000000.25,"pid":4242}
//
// worker_id is "<system_id>:<worker_name>" (WorkerID) and pid is the
// worker's plugin process, so Vumi's heartbeat monitor can watch dynworkers
// workers as it watches its own. NewHeartbeat builds one; Validate checks
// the fields Vumi's HeartBeatMessage requires.
//
// # Example
//
//	reg := monitor.NewRegistry(0)
//	prefix := monitor.WorkerPrefix("prod", hostname, "echo")
//	_ = reg.Record(prefix, "messages_sent", 1, []string{monitor.AggSum})
//	...
//	st, err := sampler.Read(pid)
//	dps := monitor.ProcDatapoints(prefix, st, now)
//	dps = append(dps, reg.Flush(now)...)
//	body, _ := json.Marshal(monitor.MetricMessage{Datapoints: dps})
//	// publish body on MetricsExchange with MetricsRoutingKey
package monitor
