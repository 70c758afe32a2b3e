// Package cli implements the dynworkers command line: serve, validate,
// classes, plugins lock and version, and the client commands start, stop, restart,
// start-supervisor, stop-supervisor, status, logs, drain, undrain and send, which ask a running
// host over its HTTP API (default) or over AMQP (-amqp). The main package
// is a thin wrapper around Main.
//
// The client commands exit with 0 when every answer is ok, 1 when a host
// answered with an error (printed to stderr with its code and details), 2
// for a usage error, and 3 when no host could be reached or none answered
// in time.
//
// kill (a worker's process, as a crash would, for chaos drills) and
// reload (apply the host's changed HCL file) are client commands too.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/sdk"
)

// Version is the version of the host, set at build time with -ldflags.
var Version = "dev"

// DefaultConfig is the config path used when -config is not given.
const DefaultConfig = "configs/dynworkers.hcl"

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the host: load config and plugins, start and supervise the workers", runServe},
		{"validate", "check a configuration (and the plugins it uses) without starting anything", runValidate},
		{"classes", "list the worker classes in the plugin directory (-remote: of the running host)", runClassesCmd},
		{"plugins", "plugins lock: approve the binaries of plugin_dir by sha256 (host.plugin_lock); -check: report drift", runPlugins},
		{"start", "start a worker on a running host: start NAME -class C [-set k=v ...] [-cluster [-constraint k=v ...]]", runStart},
		{"stop", "stop a worker on a running host: stop NAME", runStop},
		{"restart", "restart a worker on a running host: restart NAME", runRestart},
		{"kill", "kill a worker's process with SIGKILL, as a crash would (chaos drills); its supervisor restarts it: kill NAME", runKill},
		{"reload", "apply a running host's changed HCL config and print what changed: reload [-json]", runReload},
		{"start-supervisor", "start a supervisor on a running host: start-supervisor NAME [-parent PATH]", runStartSupervisor},
		{"stop-supervisor", "stop a supervisor and its subtree on a running host: stop-supervisor PATH", runStopSupervisor},
		{"logs", "print the last lines of a worker's log; -f: follow it live, across restarts: logs [-f] [-n N] [-since T] NAME", runLogs},
		{"status", "show a running host's supervision tree and its workers (-watch: keep refreshing; -cluster: the whole cluster)", runStatus},
		{"drain", "move a cluster host's cluster workers elsewhere, one by one, and keep new ones off it: drain [-wait] HOST", runDrain},
		{"undrain", "let a drained cluster host take cluster workers again: undrain HOST", runUndrain},
		{"send", "send a raw control message (a file, or - for stdin) and print the replies", runSend},
		{"keygen", "write an Ed25519 key pair to sign control requests with (-key): keygen FILE", runKeygen},
		{"version", "print the version", runVersion},
	}
}

// Main runs the command line and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dynworkers: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "dynworkers: a supervisor host for messaging workers")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: dynworkers <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The client commands (start, stop, restart, kill, reload, start-supervisor, stop-supervisor,")
	fmt.Fprintln(w, "status, logs, drain, undrain, send, classes -remote) ask the host at host.http_addr of -config")
	fmt.Fprintln(w, "(default "+DefaultConfig+"), or -http URL; with -amqp URL and -host NAME, -all or -any they send a")
	fmt.Fprintln(w, "control message over AMQP instead.")
	fmt.Fprintln(w, "Exit status: 0 ok, 1 the host answered an error, 2 usage error, 3 no host reached.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run `dynworkers <command> -h` for a command's flags.")
}

// newFlagSet returns a flag set that reports errors to stderr and returns
// them instead of exiting.
func newFlagSet(name, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dynworkers %s %s\n\nFlags:\n", name, usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns the exit status to use when the
// command must not go on (-h, a bad flag or stray arguments), or -1.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "dynworkers %s: unexpected argument %q\n", fs.Name(), fs.Arg(maxArgs))
		fs.Usage()
		return 2
	}
	return -1
}

func newLogger(stderr io.Writer, level string, jsonFormat bool) hclog.Logger {
	color := hclog.ColorOff
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) && !jsonFormat {
		color = hclog.AutoColor
	}
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		lvl = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "dynworkers",
		Level:      lvl,
		Output:     stderr,
		JSONFormat: jsonFormat,
		Color:      color,
		// SetLevel is used once the config's log_level is known.
		IndependentLevels: false,
	})
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", stderr)
	if rc := parseFlags(fs, args, 0); rc >= 0 {
		return rc
	}
	fmt.Fprintf(stdout, "dynworkers %s (%s, sdk %s, plugin protocol %d)\n", Version, runtime.Version(), sdk.Version, wire.Handshake.ProtocolVersion)
	return 0
}
