package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPluginLockAndEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	t.Setenv("TEST_PROXY", "http://user:pw@proxy:3128")
	writeFile(t, path, `host {
  plugin_lock = "plugins.lock.hcl"
  plugin_env  = { HTTPS_PROXY = env("TEST_PROXY"), TZ = "UTC" }
}
`)
	f, diags := Parse(path)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if f.Host.PluginLock != filepath.Join(dir, "plugins.lock.hcl") {
		t.Errorf("PluginLock = %q, want it next to the config", f.Host.PluginLock)
	}
	if got := f.Host.PluginEnvList(); !slices.Equal(got, []string{"HTTPS_PROXY=http://user:pw@proxy:3128", "TZ=UTC"}) {
		t.Errorf("PluginEnvList = %q", got)
	}
}

func TestPluginTrustErrors(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string
	}{
		{`plugin_lock = ""`, []string{"plugin_lock", "must not be empty", "dynworkers plugins lock"}},
		{`plugin_env = { "1BAD" = "x" }`, []string{`"1BAD"`, "not valid", "letters, digits and underscores"}},
		{`plugin_env = { PLUGIN_MIN_PORT = "1" }`, []string{`"PLUGIN_MIN_PORT"`, "reserved"}},
		{`plugin_env = { DYNWORKERS_PARENT_PID = "1" }`, []string{`"DYNWORKERS_PARENT_PID"`, "reserved"}},
		{`plugin_env = { X = "` + strings.Repeat("v", maxPluginEnvValue+1) + `" }`, []string{`"X"`, "8193 bytes", "at most 8192"}},
		{`plugin_env = "A=B"`, []string{"plugin_env", "map of string required"}},
	} {
		path := filepath.Join(t.TempDir(), "c.hcl")
		writeFile(t, path, "host {\n  "+c.src+"\n}\n")
		_, diags := Parse(path)
		if !diags.HasErrors() {
			t.Errorf("%s: no error", c.src)
			continue
		}
		msg := diags.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %s\nwant %q", c.src[:min(len(c.src), 60)], msg[:min(len(msg), 300)], w)
			}
		}
		if !strings.Contains(msg, "c.hcl:2,") {
			t.Errorf("%s: %s; want the attribute's position", c.src[:min(len(c.src), 60)], msg[:min(len(msg), 300)])
		}
	}
}

// A plugin_env value may be a secret: a diagnostic about the attribute
// does not repeat it.
func TestPluginEnvValuesNotInDiagnostics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hcl")
	t.Setenv("TEST_SECRET", "very-secret-value")
	writeFile(t, path, "host {\n  plugin_env = { API_KEY = env(\"TEST_SECRET\"), \"bad name\" = \"x\" }\n}\n")
	_, diags := Parse(path)
	if !diags.HasErrors() {
		t.Fatal("no error")
	}
	if strings.Contains(diags.Error(), "very-secret-value") {
		t.Errorf("diagnostic shows the secret: %s", diags.Error())
	}
}
