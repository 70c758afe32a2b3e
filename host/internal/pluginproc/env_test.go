package pluginproc

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/internal/wire"
)

// passEnv makes the host pass the named variables of its own environment
// to plugins until the end of the test, as it passes PATH (test plugins
// are configured by variables such as CHAOS_LAUNCH_LOG).
func passEnv(t *testing.T, names ...string) {
	t.Helper()
	extraPassed.Lock()
	old := extraPassed.names
	extraPassed.names = append(slices.Clone(old), names...)
	extraPassed.Unlock()
	t.Cleanup(func() {
		extraPassed.Lock()
		extraPassed.names = old
		extraPassed.Unlock()
	})
}

// environOf reads the environment of a running process.
func environOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

// hostSecrets puts into the host's environment what a host may hold there:
// a token and a broker URL with a password.
func hostSecrets(t *testing.T) {
	t.Setenv("DYNWORKERS_HTTP_TOKEN", "token-from-the-host-env-0123456789")
	t.Setenv("AMQP_URL", "amqp://dynworkers:s3cret-password@127.0.0.1:5672/")
	t.Setenv("SMPP_PASSWORD", "hunter2")
	t.Setenv("LC_TIME", "C.UTF-8")
	t.Setenv("TZ", "UTC")
}

func checkPluginEnv(t *testing.T, env map[string]string, extra map[string]string) {
	t.Helper()
	for _, k := range []string{"DYNWORKERS_HTTP_TOKEN", "AMQP_URL", "SMPP_PASSWORD"} {
		if v, ok := env[k]; ok {
			t.Errorf("the plugin sees the host's %s=%q", k, v)
		}
	}
	for k, v := range env {
		if strings.Contains(v, "s3cret-password") || strings.Contains(v, "hunter2") {
			t.Errorf("the plugin's %s holds a secret of the host's environment", k)
		}
	}
	want := map[string]string{
		"PATH":                        os.Getenv("PATH"),
		"LC_TIME":                     "C.UTF-8",
		"TZ":                          "UTC",
		wire.EnvParentPID:             strconv.Itoa(os.Getpid()),
		wire.Handshake.MagicCookieKey: wire.Handshake.MagicCookieValue,
	}
	for k, v := range extra {
		want[k] = v
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("the plugin's %s = %q, want %q", k, env[k], v)
		}
	}
}

// A real plugin process sees none of the host's environment but the few
// variables passed on purpose and the caller's own (Options.Env).
func TestPluginGetsCleanEnvironment(t *testing.T) {
	hostSecrets(t)
	o := chaosOptions(t, map[string]any{})
	o.Env = []string{"HTTPS_PROXY=http://proxy.example:3128"}
	p := start(t, o)
	defer stopProcess(t, p)
	checkPluginEnv(t, environOf(t, p.Pid()), map[string]string{"HTTPS_PROXY": "http://proxy.example:3128"})
}

// A warm spare is launched with the same clean environment, and Options.Env
// of its key; a Start with that Env takes it.
func TestSpareGetsCleanEnvironment(t *testing.T) {
	hostSecrets(t)
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Env = []string{"EXTRA=for-plugins"}
	o.Spares = s
	sp := prime(t, s, o)
	checkPluginEnv(t, environOf(t, sp.Pid()), map[string]string{"EXTRA": "for-plugins"})
	p := start(t, o)
	if p != sp {
		t.Errorf("Start with the spare's Env did not take the spare")
	}
	stopProcess(t, p)
}

func TestCleanEnv(t *testing.T) {
	in := []string{"PATH=/bin", "AMQP_URL=amqp://x", "LC_ALL=C", "HOME=/root", "=weird", "NOEQUALS", "GODEBUG=x=1", "LCX=1"}
	got := cleanEnv(in)
	want := []string{"PATH=/bin", "LC_ALL=C", "HOME=/root", "GODEBUG=x=1"}
	if !slices.Equal(got, want) {
		t.Errorf("cleanEnv = %q, want %q", got, want)
	}
}
