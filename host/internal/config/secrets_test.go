package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPluginLogAndStateKeySettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	writeFile(t, path, "host {\n  plugin_log_rate = \"64KiB\"\n  plugin_log_lines = 0\n  plugin_log_line_max = 4096\n  state_key_file = \"keys/state.key\"\n}\n")
	f, diags := Parse(path)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	want := PluginLogConfig{BytesPerSecond: 64 << 10, LinesPerSecond: 0, LineMax: 4096}
	if f.Host.PluginLog != want || f.Host.StateKeyFile != filepath.Join(dir, "keys/state.key") {
		t.Errorf("host = %+v, want %+v and the key file next to the config", f.Host, want)
	}

	writeFile(t, path, "system_id = \"s\"\n")
	f, _ = Parse(path)
	if d := (PluginLogConfig{BytesPerSecond: DefaultPluginLogRate, LinesPerSecond: DefaultPluginLogLines, LineMax: DefaultPluginLogLineMax}); f.Host.PluginLog != d || f.Host.StateKeyFile != "" {
		t.Errorf("defaults = %+v, %q", f.Host.PluginLog, f.Host.StateKeyFile)
	}

	for src, want := range map[string]string{
		`plugin_log_rate = "lots"`:     `"plugin_log_rate": "lots" is not a size`,
		`plugin_log_rate = "-1KiB"`:    `"plugin_log_rate": "-1KiB" is not a whole number of bytes`,
		`plugin_log_rate = "2GiB"`:     `from 0 to 1GiB`,
		`plugin_log_lines = -3`:        `"plugin_log_lines" must be a whole number`,
		`plugin_log_line_max = "100B"`: `"plugin_log_line_max" must be at least 256 bytes`,
		`state_key_file = ""`:          `"state_key_file" must not be empty`,
		`plugin_log_rate = ["a"]`:      `"plugin_log_rate" must be a size`,
	} {
		writeFile(t, path, "host {\n  "+src+"\n}\n")
		_, diags := Parse(path)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) || !strings.Contains(diags.Error(), "c.hcl:2") {
			t.Errorf("%s: %v; want an error at c.hcl:2 saying %q", src, diags, want)
		}
	}
}
