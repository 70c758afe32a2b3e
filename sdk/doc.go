// Package sdk is what a worker plugin for dynworkers imports, and the only
// package it needs.
//
// A plugin binary offers one or more worker classes. A class has a name, a
// config schema derived from a Go struct, and a constructor. The binary's
// main calls Serve:
//
//	type Config struct {
//		Greeting string        `config:"greeting" default:"hello" help:"what to say"`
//		Interval time.Duration `config:"interval" default:"5s"`
//	}
//
//	func main() {
//		sdk.Serve(sdk.Class{
//			Name:        "hello",
//			Description: "logs a greeting every interval",
//			Version:     "1.0.0",
//			New: sdk.Construct(func(cfg Config) (sdk.Worker, error) {
//				return sdk.Run(func(ctx context.Context, env *sdk.Env) error {
//					t := time.NewTicker(cfg.Interval)
//					defer t.Stop()
//					for {
//						select {
//						case <-ctx.Done():
//							return nil // stopped by the host
//						case <-t.C:
//							env.Logger().Info(cfg.Greeting)
//						}
//					}
//				}), nil
//			}),
//		})
//	}
//
// A worker is a Worker (Start, Stop); Run makes one of a blocking
// function, as above. Its Env (a *Env) is what the host gives it: names,
// a logger, child workers, the message bus and metrics.
//
// # Lifecycle contract
//
// The host runs every worker in a plugin process of its own, launched from
// the binary, over gRPC (go-plugin's protocol). One process, one worker:
//
//  1. Describe. When the host scans its plugin_dir it launches each binary
//     once to learn its classes and their schemas, then lets it exit. Your
//     main must reach Serve quickly (the host waits 10 s) and must not print
//     to stdout: stdout carries the go-plugin handshake.
//  2. Config. Before it starts any process, the host validates a worker's
//     config (from HCL or a control message) against the class's schema,
//     applies defaults and converts values ("2773" becomes 2773 for a
//     number). The constructor receives the config already decoded into the
//     class's struct.
//  3. Start. The host launches a fresh process, calls the constructor and
//     then Worker.Start, which must return once the worker runs and before
//     its context is done (the worker's start_timeout, 30 s by default);
//     otherwise the process is killed and the start counts as failed. Start
//     launches the worker's goroutines and returns; it must not block for
//     the worker's lifetime (Run's Start launches its function and
//     returns). An error wrapping ErrInvalidConfig, from Start or from
//     the constructor, is permanent:
//     the worker is marked failed instead of being restarted in a loop. Any
//     other error is retried with backoff.
//  4. Run. While the worker runs the SDK calls Health every
//     health_interval (5 s) and pushes each result to the host (the
//     HealthBeats stream); an error or no answer within health_timeout
//     (2 s) is a failed check, and three in a row make the host kill the
//     process and restart the worker. A Health that hangs is not called
//     again while it hangs: each interval it still runs is another failed
//     check. Status adds details to the status
//     API. Both are optional (HealthChecker, StatusReporter).
//  5. Exit. A worker may end itself with Env.Exit (or by returning from
//     Run's function): its consumers stop, what it published and settled is
//     flushed to the host, its Stop is called, and the process exits; nil
//     is a normal exit, an error an abnormal one. A panic or os.Exit ends
//     the process at once, and with it only this worker. Either way the
//     host restarts it by its restart policy (permanent, transient,
//     temporary) with exponential backoff.
//  6. Stop. The host calls Worker.Stop once, with a context whose deadline
//     is the worker's shutdown_timeout (5 s). When the deadline passes the
//     host kills the process group, so Stop should return promptly.
//
// The process exits when the host asks it to, when the worker exits, and
// when the host itself dies: the host sets a parent-death signal and Serve
// runs a watchdog on the parent pid, so killing the host with SIGKILL leaves
// no plugin process behind.
//
// Logging: use Env.Logger, a *slog.Logger. It writes JSON lines to stderr
// at the host's log level, and the host re-logs them under the worker's
// name with their levels and attributes kept.
// Anything else written to stderr (a panic, say) is kept too, and the last
// lines before a crash appear in the host's exit event.
//
// Hybrid workers start child workers of their own through Env.Children: the
// host runs each child in a plugin process of its own and supervises it,
// and stops a hybrid's children when the hybrid ends. The calls go to the
// host's Host service over a connection brokered by go-plugin
// (StartRequest.host_broker_id), which the SDK picks up when the worker
// receives Start.
//
// # Messages
//
// A worker moves messages through the host, never through a broker
// connection of its own (Env.Publish, Env.Consume): the host uses RabbitMQ
// when it is configured with an amqp block and its embedded in-process bus
// otherwise, so the same plugin runs unchanged on a laptop and in
// production. Messages go through the "vumi" exchange with Vumi's routing
// keys (<transport_name>.inbound, .outbound, .event); package sdk/vumi has
// the message types and typed helpers (vumi.ConsumeUserMessages,
// vumi.PublishUserMessage).
//
//	err := env.Consume("smpp.outbound", func(ctx context.Context, m sdk.Message) error {
//		if err := send(ctx, m.Body); err != nil {
//			return err // nacked and requeued
//		}
//		return nil // acked
//	}, sdk.WithPrefetch(10))
//
// A consumer's handler gets one message at a time, in order; its result
// acks the message (nil), requeues it (an error) or drops it (an error
// wrapping ErrDrop). The host delivers at most the prefetch ahead of the
// handler, so a slow worker slows delivery down. The SDK stops a worker's
// consumers before it calls Worker.Stop, and the host requeues whatever a
// worker had not acked when its process ends, so a crash loses nothing.
//
// A worker may not publish to or consume from the host's own exchanges and
// queues: names starting with "vumi.control", "vumi.metrics",
// "vumi.health", "vumi.events" or "amq." are refused (ErrReservedName; see
// CheckBusName).
//
// Env.Metric reports a worker's own figures, which the host aggregates
// (sum, avg, min, max, last) and publishes with its metrics under the
// worker's name.
//
// # Testing
//
// Testing a class needs no host: package sdk/sdktest builds a worker from a
// config exactly as the plugin process does and runs it with a recording
// Env (the messages it publishes, its metrics and logs, deliveries to its
// consumers), or builds the plugin and runs it under a real host for
// acceptance tests.
//
// # Errors
//
// The SDK's errors are matched with errors.Is (and errors.As for
// *HostError and *BusNameError): ErrInvalidConfig (permanent: the host
// does not restart a worker whose Start fails with it), ErrReservedName
// and ErrInvalidName (a bus name a worker may not use), ErrNoBus,
// ErrNoMetrics and ErrInvalidMetric (messages and metrics),
// ErrConsumerStopped (the worker is stopping), ErrNoHostService,
// ErrChildNotFound and ErrChildExists (child workers), ErrUnavailable (the
// host could not be reached or serve the call for now), ErrDrop (a
// handler's "never deliver this again").
package sdk
