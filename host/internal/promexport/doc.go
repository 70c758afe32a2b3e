// Package promexport serves the host's figures as Prometheus metrics, for
// GET /metrics (DESIGN.md §6): the same monitor.Snapshot that status, the
// Vumi metrics and the dashboard show, plus the Go runtime and process
// figures of the host process itself.
//
// NewHandler returns the http.Handler. It serves a private registry (not
// prometheus.DefaultRegisterer, so that nothing registered elsewhere in the
// process leaks in) that holds:
//
//   - the Go collector (go_goroutines, go_memstats_*, go_gc_duration_seconds,
//     ...) and the process collector (process_resident_memory_bytes,
//     process_cpu_seconds_total, process_open_fds, process_start_time_seconds,
//     ...), both measuring the host process;
//   - a Collector, which on each scrape calls the snapshot source once and
//     exports what it returns, so that one scrape shows one sample;
//   - the handler's own promhttp_metric_handler_requests_total,
//     promhttp_metric_handler_requests_in_flight and
//     promhttp_metric_handler_errors_total.
//
// The daemon wires it up as
//
//	mux.Handle("GET /metrics", promexport.NewHandler(d.Snapshot,
//		promexport.WithErrorLog(logger.StandardLogger(nil))))
//
// # Design
//
// The exporter keeps no state: the figures are read from the snapshot at
// scrape time and sent as constant metrics (prometheus.MustNewConstMetric)
// whose descriptors are built once. A worker or supervisor that is removed
// thus simply stops being exported; there is nothing to unregister.
//
// Labels are chosen so that series do not churn. A worker's state is not a
// label of its figures, which would start a new series at every change of
// state: it is a state set, as kube-state-metrics exports a pod's phase,
// with one series per possible state, 1 for the current one and 0 for the
// others. Every worker series carries worker, class and supervisor, which
// only change if the worker is redefined, so that figures can be summed
// by class or supervisor without a join. Text that is not a figure
// (system_id, host name, strategy, source) goes on an _info metric whose
// value is 1, to be joined in when wanted:
//
//	dynworkers_worker_rss_bytes * on (worker) group_left (source) dynworkers_worker_info
//
// There are no system_id or host labels on the figures: the scrape's
// target labels (instance, job) tell hosts apart, and
// dynworkers_host_info names the target.
//
// Label values are exported as they are (spaces, quotes, non-ASCII): the
// exposition format escapes what needs it. Bytes that are not valid UTF-8
// become U+FFFD. Names follow the Prometheus conventions: base units in the
// name (_bytes, _seconds), _total on counters, no _total elsewhere; the
// tests run promlint on them (and promtool check metrics when it is
// installed).
//
// # Metrics
//
// Each metric is given with its labels and type, and what it means.
//
// Of the host:
//
//	dynworkers_host_info{system_id, host}                   gauge
//	    Always 1; names the host and the system it belongs to.
//	dynworkers_snapshot_timestamp_seconds                   gauge
//	    Unix time the exported figures were sampled at; time() minus it
//	    is their age.
//	dynworkers_host_workers{state}                          gauge
//	    Workers in each state. Every state of a worker (starting, running,
//	    backoff, stopping, stopped, exited, failed) is present, 0 if no
//	    worker is in it.
//	dynworkers_control_requests_total                       counter
//	    Control requests answered since the host started.
//	dynworkers_control_requests_failed_total                counter
//	    Of those, the ones answered with an error.
//
// Of each worker, with the labels worker (its name), class (its plugin
// class) and supervisor (its supervisor's path, such as root/campaign-a),
// written W below:
//
//	dynworkers_worker_info{W, source}                       gauge
//	    Always 1; source is where the worker was defined: hcl, control or
//	    hybrid.
//	dynworkers_worker_up{W}                                 gauge
//	    1 if the worker is in state running, else 0.
//	dynworkers_worker_state{W, state}                       gauge
//	    1 for the worker's current state, 0 for each other state.
//	dynworkers_worker_healthy{W}                            gauge
//	    1 if the worker runs and its last health check passed, else 0.
//	dynworkers_worker_restarts_total{W}                     counter
//	    Automatic restarts since the worker was added or last restarted by
//	    hand (see below).
//
// and only while the worker has a process whose /proc figures could be
// read:
//
//	dynworkers_worker_rss_bytes{W}                          gauge
//	    Resident set size of the worker's plugin process.
//	dynworkers_worker_cpu_seconds_total{W}                  counter
//	    User plus system CPU time of the plugin process, all threads.
//	dynworkers_worker_open_fds{W}                           gauge
//	    Open file descriptors of the plugin process.
//	dynworkers_worker_threads{W}                            gauge
//	    Threads of the plugin process.
//	dynworkers_worker_uptime_seconds{W}                     gauge
//	    Age of the plugin process, from its start time in /proc (if that
//	    is unknown, the time since the worker became running).
//
// and for the metrics the worker reports itself (Env.Metric), with the
// label metric (the name as the worker gave it, sanitised to [a-z0-9_.],
// as in the Vumi metrics):
//
//	dynworkers_worker_metric_total{W, metric}               counter
//	    Sum of the values reported with the sum aggregator, since the
//	    worker was added (or the host started).
//	dynworkers_worker_metric_aggregate{W, metric, aggregator}  gauge
//	    For each other aggregator the worker asked for (avg, min, max,
//	    last), its value over the last metrics interval in which the
//	    metric was reported; it keeps that value through intervals
//	    without any.
//
// One family for every metric of every worker, rather than a family per
// metric name, because the names are the workers' (made up at run time,
// with no help text, possibly clashing with the host's own families):
// select one with the label, as in
// rate(dynworkers_worker_metric_total{metric="messages_sent"}[5m]). A sum
// is a counter, as Prometheus expects of a count, so rate() and increase()
// work on it and it does not depend on the metrics interval; the other
// aggregators describe an interval and are gauges. A worker that reports
// negative values with sum makes its counter go down, which Prometheus
// reads as a reset: report those with avg, min, max or last instead.
//
// Of each supervisor, with the label supervisor (its path; the root's is
// root). The subtree figures cover its workers and those of all the
// supervisors below it.
//
//	dynworkers_supervisor_info{supervisor, strategy}        gauge
//	    Always 1; strategy is one_for_one, one_for_all or rest_for_one.
//	dynworkers_supervisor_up{supervisor}                    gauge
//	    1 if the supervisor is in state running, else 0.
//	dynworkers_supervisor_state{supervisor, state}          gauge
//	    1 for its current state, 0 for the others (running, stopping,
//	    stopped, failed).
//	dynworkers_supervisor_restarts_in_period{supervisor}    gauge
//	    Restarts counted against its intensity in the current period.
//	dynworkers_supervisor_intensity{supervisor}             gauge
//	    Restarts it allows within one period; one more and it fails.
//	dynworkers_supervisor_period_seconds{supervisor}        gauge
//	    The length of that period.
//	dynworkers_supervisor_workers{supervisor}               gauge
//	    Workers in the subtree.
//	dynworkers_supervisor_running_workers{supervisor}       gauge
//	    Of those, the ones in state running.
//	dynworkers_supervisor_rss_bytes{supervisor}             gauge
//	    Sum of the resident set sizes of the subtree's plugin processes.
//	dynworkers_supervisor_cpu_seconds{supervisor}           gauge
//	    Sum of the CPU times used so far by the subtree's plugin processes
//	    that run now (see below).
//
// Of the embedded bus (BusCollector; none with an amqp block, whose queues
// RabbitMQ reports), with the label queue for one series per queue that
// exists now (queues expire once unused, and their series go with them):
//
//	dynworkers_bus_dropped_total{reason}                    counter
//	    Messages lost to the bus's bounds since the host started: drop_head
//	    (dropped from a queue's head), reject_publish (refused by a full
//	    queue, once per queue), expired (deleted with an expired queue).
//	dynworkers_bus_expired_queues_total                     counter
//	    Queues deleted after going unused for host.bus.expires.
//	dynworkers_bus_bytes                                    gauge
//	    Memory of the ready messages of all queues, as max_total_bytes
//	    counts it.
//	dynworkers_bus_max_bytes                                gauge
//	    The bus's max_total_bytes.
//	dynworkers_bus_queue_dropped_total{queue, reason}       counter
//	    Messages the queue dropped (drop_head) or refused (reject_publish)
//	    since it was created: starts from 0 for a queue created again.
//	dynworkers_bus_queue_messages_ready{queue}              gauge
//	    Ready messages (what max_length bounds).
//	dynworkers_bus_queue_ready_bytes{queue}                 gauge
//	    Body bytes of the ready messages (what max_length_bytes bounds).
//	dynworkers_bus_queue_messages_unacked{queue}            gauge
//	    Messages delivered and not yet acked.
//	dynworkers_bus_queue_consumers{queue}                   gauge
//	    Consumers of the queue.
//
// # Counters that reset
//
// The counters of workers are not lifetime totals of the host, and
// Prometheus's rate() and increase() treat any decrease as a reset, which
// is right for them:
//
//   - dynworkers_worker_restarts_total is the supervisor's restart count,
//     which starts again from 0 when the worker is restarted by hand
//     (dynworkers restart, or a restart control request), or removed and
//     added again. Use increase(), not the raw value.
//   - dynworkers_worker_cpu_seconds_total is the CPU time of the current
//     process, which starts from 0 when the worker's process is restarted.
//   - dynworkers_worker_metric_total starts from 0 when the worker is
//     removed and added again, or the host restarts.
//
// dynworkers_supervisor_cpu_seconds is a sum over the processes that run
// now, so it drops whenever one of them exits or is restarted: it is a
// gauge, because as a counter rate() would count each drop as a reset and
// over-estimate. A true counter of a subtree's CPU would have to add the
// CPU time of every process that ended, which the host only knows up to
// its last sample. For the CPU use of a subtree over time, sum the rates
// of its workers instead; for root/campaign-a and the supervisors below
// it:
//
//	sum(rate(dynworkers_worker_cpu_seconds_total{supervisor=~"root/campaign-a(/.*)?"}[5m]))
//
// The host's counters (control requests, and the process collector's)
// reset only when the host restarts.
package promexport
