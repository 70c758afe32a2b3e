// Package sdktest helps test worker classes written with sdk, at two
// levels.
//
// Unit tests run a class in the test's own process with a recording Env,
// no host and no plugin process:
//
//	w := sdktest.Run(t, echo.Class, map[string]any{"transport_name": "tel"})
//	out, err := w.Env.Deliver("tel.inbound", inboundJSON) // runs the handler
//	// out == sdk.OutcomeAck, err == nil
//	reply := w.Env.WaitPublished("tel.outbound", 1)[0].UserMessage(t)
//
// Run builds the worker from its config as a plugin process does and
// starts it; the Env records what the worker publishes (Published,
// WaitPublished), the metrics it reports (Metrics) and what it logs (Logs,
// also shown by t.Log), delivers messages to its consumers (Deliver, which
// returns how the handler settled the message) and answers its Children
// calls from memory (FakeChildren). The worker's Start gets the Env's
// *sdk.Env (Env.SDK); NewWorker and NewEnv are the two steps of Run for
// tests that drive Start and Stop themselves. An exit (Env.Exit, or
// sdk.Run's function returning) stops the worker as a plugin process
// does and shows in Exited and ExitErr. The Env applies the host's rules, so a
// reserved routing key or an invalid metric fails here as it would in
// production. The worker is stopped when the test ends, consumers first, as
// the SDK does.
//
// Acceptance tests build the plugin binary and run it under a real host:
//
//	bin := sdktest.BuildPlugin(t, ".")
//	h := sdktest.StartHost(t, sdktest.HostOptions{
//		Plugins: []string{bin},
//		Config:  `worker "greeter" { class = "hello" }`,
//	})
//	h.WaitLog("hello, world!")
//	st := h.Status() // GET /v1/status on h.Addr
//
// StartHost builds the dynworkers command (or takes $DYNWORKERS_BIN), writes
// a config with a temporary plugin_dir and state_dir and an HTTP API on a
// free loopback port, runs `dynworkers serve` as a child process, and waits
// until the workers run. Without an amqp block in Config the host uses its
// embedded bus, so workers that publish and consume work unchanged.
//
// Both levels wait on events, not for a while: the Wait methods, and for
// state that nothing signals (a status, a process, a broker's queue)
// Eventually, which polls a condition until it holds or a timeout passes:
//
//	sdktest.Eventually(t, 10*time.Second, func() bool {
//		w, _ := h.Status().Worker("greeter")
//		return w.Restarts > 0
//	}, "greeter was not restarted")
package sdktest
