// Package monitor measures the host and its worker processes and speaks
// Vumi's monitoring formats (DESIGN.md §6). A Monitor samples every
// metrics interval (5 s by default): /proc for the host and every plugin
// process, the supervision tree as the daemon lists it, and the metrics
// workers report (Registry). It keeps the result as a Snapshot, which
// status, the Prometheus exporter and the dashboard read, publishes it
// as Vumi metrics, and publishes Vumi heartbeats every heartbeat interval
// (10 s by default). It imports nothing of the host: the daemon feeds it
// through Options (List, Publish, Control), so it is tested with a fake
// tree and a recording publisher.
//
//	m := monitor.New(monitor.Options{
//		SystemID: "prod", Host: "web-1", Started: start,
//		List:     d.listTree,   // workers and supervisors, no figures
//		Publish:  d.publishMonitoring, // vumi.metrics, vumi.health; never waits for a broker that is away
//		Registry: reg,          // what workers report through Env.Metric
//	})
//	go m.Run(ctx)
//	snap := m.Snapshot() // at most a second old (its workers' figures: Interval)
//
// Each round of Run flushes the Registry, takes a Snapshot (each worker's
// Proc, CPUPercent since the previous sample and Metrics; each
// supervisor's subtree totals), publishes one metrics message and, when
// due, a heartbeat per healthy worker, and then removes from the Registry
// the metrics of workers the tree no longer lists (after their last
// values were published). A message that cannot be published is dropped.
//
// # Process figures
//
// ReadProc(pid), or Sampler.Read, returns a ProcStats: resident memory, CPU
// time (user + system), open descriptors, threads, state, parent and start
// time, from /proc/<pid>/stat (parsed by hand, into a buffer on the stack)
// and a stat of /proc/<pid>/fd. Where the kernel does not give the
// descriptor count as the directory's size (before Linux 6.2), the read
// goes through github.com/prometheus/procfs, which lists the directory;
// procfs stays the host's reader of the rest of /proc (boot time,
// Children), and the benchmark harness and the test plugins read through
// ReadProc. CPU and start times
// are in clock ticks of USER_HZ, 100 on every architecture Go runs Linux
// on. A process that does not
// exist, or exits while it is read, gives an error wrapping
// os.ErrNotExist; a zombie is still read, with State 'Z'. Children lists
// the live children of a process.
//
// A read costs about 5 µs of CPU on the CI machine (BenchmarkSample500,
// fd=stat; 3 allocations): little more than the kernel's work of opening
// and reading the /proc files. Issue 10 had replaced an earlier
// hand-written reader by procfs (then 29 µs a read, 0.3% of a core for
// 500 workers every 5 s, judged not worth the upkeep below 1% of a core);
// issue 15 brought it back for hosts of 1,000 workers: procfs cost 16 µs
// a read there (parsing every field of stat with fmt, 43 allocations),
// 200 reads a second at the default 5 s interval, and the hand-written
// parser saves about 0.2% of a core of the host's idle work (and its
// garbage) at that size.
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
// ["avg"] reaches Graphite as rss_bytes.avg. Datapoints turns a Snapshot
// into the figures of the host, its workers and its supervisors, each
// with avg and one point (the list of names is on Datapoints).
//
// # Metrics reported by workers
//
// Workers report values through the host (Env.Metric in the SDK) with any
// of Vumi's aggregators: sum, avg, min, max and last; none means avg, the
// default of Vumi's Metric class (its Count class defaults to sum). A
// Registry collects them per prefix (WorkerPrefix) and metric name
// (sanitised by SanitizeName to [a-z0-9_.]). Two spellings of a name that
// sanitise alike ("Messages Sent", "messages-sent") would be one series
// downstream, silently mixed, so the second is refused
// (ErrNameCollision) until the prefix is released, which the host does
// when the worker's process is replaced. A prefix may have at most
// DefaultMaxNames (1000) names, each at most MaxNameLen bytes; further
// names are refused with ErrTooManyMetrics until the prefix is removed,
// so that a worker that makes up a name per message cannot grow the
// host's memory.
//
// Registry.Flush publishes them as a Vumi worker's MetricManager does:
// one datapoint per metric, named <prefix>.<name> without any aggregator
// suffix, with the aggregators it was recorded with (sorted), and its
// values as points, each at the whole second it was recorded. Vumi's
// MetricTimeBucket and MetricAggregator then group the points of each
// name into buckets of bucket_size seconds (by int(timestamp) /
// bucket_size), sort each bucket's points as (timestamp, value) pairs,
// and publish <name>.<aggregator> with the aggregator applied to their
// values, for Graphite: "replies" recorded with sum reaches Graphite as
// replies.sum, as from a Vumi worker.
//
// The rule for what is sent: points that lead Vumi's aggregators to the
// same result as every value would. Since a bucket is a whole number of
// seconds, the values of one second always share a bucket, and may be
// folded:
//
//   - a metric recorded with sum alone gets one point per second, the sum
//     of its values (a sum of sums is the sum);
//   - a metric whose aggregators are among min, max and last gets at most
//     two points per second, the second's min and max: the min and max of
//     the bucket are among them, and Vumi's last, the value sorted last,
//     is the greatest value of the bucket's last second, which is that
//     second's max;
//   - any other metric (avg, or sum with another aggregator) keeps every
//     value, as an average needs them all: a prefix may keep at most
//     MaxRawPoints such values per interval; beyond that, values still
//     count in the figures the Registry shows (Values) but are left out
//     of the datapoints and counted (Dropped), and the Monitor logs it.
//
// Folding is exact while a metric's aggregators stay the same; aggregators
// asked for at different times add up, as in Vumi's MetricAggregator, and
// a change within an interval is exact from the next interval on. Values
// keep the time the host received them, which is within milliseconds of
// the worker's call. Memory is bounded: a folded metric holds at most two
// points per second of the interval, the others share MaxRawPoints.
//
// For the Snapshot, and so Prometheus, the Registry also keeps per metric
// the running total of the values recorded with sum (a counter) and the
// avg, min, max and last of the last flushed interval (gauges; last in
// the order the values came), returned by Values and carried in each
// WorkerStats.Metrics of a Snapshot.
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
// Using the parts without a Monitor:
//
//	reg := monitor.NewRegistry(0)
//	prefix := monitor.WorkerPrefix("prod", hostname, "echo")
//	_ = reg.Record(prefix, "messages_sent", 1, []string{monitor.AggSum})
//	...
//	st, err := sampler.Read(pid)
//	dps := monitor.ProcDatapoints(prefix, st, now)
//	dps = append(dps, reg.Flush()...)
//	body, _ := json.Marshal(monitor.MetricMessage{Datapoints: dps})
//	// publish body on MetricsExchange with MetricsRoutingKey
package monitor
