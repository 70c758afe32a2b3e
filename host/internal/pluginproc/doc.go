// Package pluginproc runs one worker in one plugin process: it launches the
// plugin binary with hashicorp/go-plugin (gRPC protocol only), calls the
// Worker service's Start, checks its health on a timer, and stops or kills it.
//
// Every Start makes a new go-plugin client and a new process; a Process is
// never restarted (the supervisor asks for a fresh one). With a pool of
// warm spares (Spares, Options.Spares) the process may have been launched
// ahead of the Start, checksum and handshake included; it still serves this
// one worker only, and behaves in every way as one launched by the Start.
// The life of a Process:
//
//	Start  launch (or take a spare), handshake and the Start RPC, within
//	       StartTimeout; on any error the process is killed and reaped
//	       before Start returns
//	run    a health check every HealthInterval; HealthFailures failed checks
//	       in a row kill the process; Health and Status may be called at will
//	end    Stop (Stop RPC, then go-plugin's graceful shutdown, SIGKILL of the
//	       process group when Stop's deadline passes), Kill, or the process
//	       exits by itself; Done is closed once it is gone and reaped, and
//	       ExitErr says why it ended
//
// Every call into the plugin carries a deadline, so a plugin that blocks can
// never block the host beyond it.
//
// The host serves the Host service (internal/wire/proto/host.proto) to every worker
// it starts, on a connection brokered by go-plugin's GRPCBroker whose id it
// passes in the Start RPC. The calls of a hybrid worker (StartChild,
// StopChild, ListChildren) go to Options.ChildHost, the worker's messages
// (Publish, Consume, Ack, Nack) to Options.BusHost and its metrics to
// Options.MetricSink. Each call is bounded by Options.HostCallTimeout, and
// those under way when the process ends are cancelled. The service is set
// up by Start, not at launch, so that warm spares get it too (see
// serveHost).
//
// Messaging rules enforced here, whatever the BusHost: every routing key,
// queue and binding a worker sends is checked with CheckBusName (the
// host's control, metrics, health and events names are refused); a Consume
// stream takes a delivery from its Consumer only while the worker has
// fewer than its prefetch unsettled, so a slow worker slows delivery down
// and no one buffers more than the prefetch; acks and nacks are checked
// against the deliveries the worker was sent; and when the process ends
// every Consumer it had is closed, so the bus requeues what the worker had
// not acked.
//
// Processes are launched in a process group of their own with Pdeathsig set,
// so they die with the host; the SDK's watchdog (wire.EnvParentPID) covers the
// rest. On Linux the exit of a plugin is noticed through a pidfd watched by
// the runtime poller, not by polling, and whatever the plugin left behind in
// its process group is killed when it exits.
//
// Each process also runs in a cgroup of its own (package contain), with the
// worker's Options.Limits: on cgroup v2 it is started inside it (clone3), on
// v1 it is moved there just after its handshake. When it ends, for any
// reason, everything left in the cgroup (a grandchild that called setsid
// included) is killed and the cgroup emptied before Done is closed; an exit
// by a SIGKILL the host did not send, with an OOM kill counted by the cgroup,
// is an ExitError with OOM set (ExitOOMKilled). A warm spare is launched in
// a cgroup with the limits of the workers it is kept for (they are part of
// its key).
//
// Every unix socket of the host's plugin processes, both sides', lives in
// one directory per host: "dynworkers-<host pid>-<random>" in os.TempDir(),
// mode 0700, made by the first launch and removed when the last process is
// gone (so a host that stops cleanly leaves nothing in $TMPDIR). In it each
// process has a directory of its own (go-plugin's UnixSocketConfig.TempDir
// with a RunnerFunc: "plugin-dir*", the plugin's PLUGIN_UNIX_SOCKET_DIR)
// holding the plugin's socket and the host's GRPCBroker socket for that
// process, removed once the process is gone, so that the socket files of
// killed plugins do not pile up. The directory of a host that was itself
// killed is removed by the next host that starts (CleanStaleSocketDirs,
// which also removes the per-process "dynworkers-plugin-<pid>-*"
// directories of earlier versions). A socket's path is at most 107 bytes:
// a $TMPDIR longer than about 40 bytes is refused with an error that says
// so.
//
// Before every launch (a Start, a warm spare, a Describe) the binary and
// its directory are checked (CheckBinary): owned by root or the host's
// user, not writable by group or others, parents included, no symlink out
// of the directory; an untrusted binary is never executed, and its Start
// error is permanent (ErrUntrusted). A plugin gets a clean environment: a
// few variables of the host's own (PATH, HOME, TMPDIR, the locale, the Go
// runtime's settings, CA paths), Options.Env, and what go-plugin and the
// SDK need; never the host's tokens or broker URL.
//
// A launch runs only bytes whose sha256 is the one the catalog recorded
// when it described the binary, so a binary swapped or edited after the
// scan is refused with ErrBinaryChanged. With an ExecStore (Options.Exec,
// DescribeOptions.Exec, Spares.UseExecStore) those bytes are the store's
// verified copy of the binary, checked by two stat calls at each launch;
// without one, the binary is hashed at each launch (go-plugin's
// SecureConfig). A warm spare was checked when it was launched.
package pluginproc
