package pluginproc

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/internal/wire"
)

// passedEnv lists the variables of the host's environment that plugins
// get; variables starting with LC_ are passed too. Nothing else of the
// host's environment reaches a plugin: not a token, not AMQP_URL, not a
// password given to the host by env(). What a plugin needs beyond these
// (a proxy, a CA bundle, a setting of its own) the operator passes
// explicitly (host.plugin_env, Options.Env).
var passedEnv = []string{
	"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE",
	// The Go runtime's settings, for Go plugins.
	"GOTRACEBACK", "GODEBUG", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GOCOVERDIR",
	// Where TLS clients find CA certificates.
	"SSL_CERT_FILE", "SSL_CERT_DIR",
}

// extraPassed holds names added to passedEnv by tests of this package
// (passEnvForTest), which run test plugins configured by variables.
var extraPassed struct {
	sync.Mutex
	names []string
}

// cleanEnv returns the entries of environ ("KEY=value") that plugins get:
// those named in passedEnv and those starting with LC_.
func cleanEnv(environ []string) []string {
	extraPassed.Lock()
	extra := extraPassed.names
	extraPassed.Unlock()
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if strings.HasPrefix(k, "LC_") || slices.Contains(passedEnv, k) || slices.Contains(extra, k) {
			out = append(out, kv)
		}
	}
	return out
}

// pluginEnv is the plugin's environment: the host's variables plugins may
// see (cleanEnv), the log level, the caller's extra variables, and the
// parent pid for the SDK's watchdog. Later entries win (exec.Cmd drops
// earlier duplicates); go-plugin adds its handshake variables and launch
// the socket directory.
func pluginEnv(logger hclog.Logger, extra []string) []string {
	return pluginEnvLevel(logger.GetLevel(), extra)
}

// pluginEnvLevel is pluginEnv for a log level.
func pluginEnvLevel(lvl hclog.Level, extra []string) []string {
	env := cleanEnv(os.Environ())
	if lvl != hclog.NoLevel {
		env = append(env, wire.EnvLogLevel+"="+lvl.String())
	}
	env = append(env, extra...)
	return append(env, fmt.Sprintf("%s=%d", wire.EnvParentPID, os.Getpid()))
}
