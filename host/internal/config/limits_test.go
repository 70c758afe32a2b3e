package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestValidateNameRefusesLookAlikes(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"pay\u202Egnp.exe", "U+202E"},      // right-to-left override
		{"a\u2066b\u2069", "U+2066"},        // left-to-right isolate
		{"zero\u200Bwidth", "U+200B"},       // zero-width space
		{"jo\u200Din", "U+200D"},            // zero-width joiner
		{"\uFEFFbom", "U+FEFF"},             // byte order mark
		{"soft\u00ADhyphen", "U+00AD"},      // soft hyphen (Cf)
		{"no\u00A0break", "U+00A0"},         // no-break space
		{"wide\u3000space", "U+3000"},       // ideographic space
		{"line\u2028sep", "U+2028"},         // line separator
		{"fill\u3164er", "U+3164"},          // Hangul filler (Lo, invisible)
		{"cgj\u034Fx", "U+034F"},            // combining grapheme joiner
		{"vs\uFE0F", "U+FE0F"},              // variation selector
		{"\u0301accent", "U+0301"},          // combining mark first
		{"private\uE000", "U+E000"},         // private use
		{"unassigned\u0378", "U+0378"},      // unassigned
		{"tab\tname", "control characters"}, // Cc
		{"blank\u2800", "U+2800"},           // braille blank
	} {
		err := ValidateName(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateName(%+q) = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	for _, ok := range []string{"SMPP Transport for account1", "Café", "日本語 worker", "a.b-c_d", "e\u0301clair", "🚀 launcher", "pool-a.1"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", ok, err)
		}
	}
}

func TestRootIsReservedForWorkers(t *testing.T) {
	if err := ValidateWorkerName("root"); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("ValidateWorkerName(root) = %v", err)
	}
	if err := ValidateName("root"); err != nil {
		t.Errorf("ValidateName(root) = %v: a supervisor is named root", err)
	}
	diags := loadSrc(t, `
supervisor "root" {
  worker "root" {
    class = "echo"
  }
}
`)
	wantDiag(t, diags, "Invalid worker name", `"root" is reserved`)
}

func TestInputLimitsBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host.hcl")
	src := `
input_limits {
  control_message_size = "4MiB"
  children_per_worker  = 10
  children             = 20
}
worker "w" {
  class = "echo"
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(path, testClasses())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := InputLimits{ControlMessageBytes: 4 << 20, ChildrenPerWorker: 10, Children: 20}
	if cfg.Limits != want {
		t.Errorf("limits = %+v, want %+v", cfg.Limits, want)
	}

	cfg, diags = loadCfg(t, `worker "w" { class = "echo" }`)
	if diags.HasErrors() || cfg.Limits != DefaultInputLimits() {
		t.Errorf("default limits = %+v (%v), want %+v", cfg, diags, DefaultInputLimits())
	}

	for _, tc := range []struct{ body, summary, detail string }{
		{`control_message_size = "1KiB"`, "Invalid control_message_size", "from 64 KiB to 64 MiB"},
		{`control_message_size = "1TB"`, "Invalid size", "such as \"2MiB\""},
		{`control_message_size = 1000000000`, "Invalid control_message_size", "from 64 KiB to 64 MiB"},
		{`children_per_worker = -1`, "Invalid value", "whole number"},
		{`children = 1000001`, "Invalid value", "whole number"},
		{`children = 200000`, "Invalid children", "from 0 (no hybrid children) to 100000"},
		{`unknown = 1`, "Unsupported argument", ""},
	} {
		diags := loadSrc(t, "input_limits {\n  "+tc.body+"\n}\n")
		wantDiag(t, diags, tc.summary, tc.detail)
	}
	diags = loadSrc(t, "input_limits {\n}\ninput_limits {\n}\n")
	wantDiag(t, diags, "Duplicate input_limits block", "")
}

func TestSupervisorDepthLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("supervisor \"root\" {\n")
	for i := 2; i <= MaxDepth+2; i++ {
		fmt.Fprintf(&b, "supervisor \"s%d\" {\n", i)
	}
	b.WriteString("worker \"deep\" {\n class = \"echo\"\n}\n")
	for i := 1; i <= MaxDepth+2; i++ {
		b.WriteString("}\n")
	}
	diags := loadSrc(t, b.String())
	wantDiag(t, diags, "Supervisors nested too deep", fmt.Sprintf("%d levels deep; supervisors may nest at most %d levels", MaxDepth+1, MaxDepth))
	n := 0
	for _, d := range diags {
		if d.Summary == "Supervisors nested too deep" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d depth diagnostics, want one (at the first supervisor too deep)", n)
	}

	// MaxDepth itself is fine.
	b.Reset()
	b.WriteString("supervisor \"root\" {\n")
	for i := 2; i <= MaxDepth; i++ {
		fmt.Fprintf(&b, "supervisor \"s%d\" {\n", i)
	}
	b.WriteString("worker \"deep\" {\n class = \"echo\"\n}\n")
	for i := 1; i <= MaxDepth; i++ {
		b.WriteString("}\n")
	}
	if diags := loadSrc(t, b.String()); diags.HasErrors() {
		t.Errorf("%d levels: %v", MaxDepth, diags)
	}
}

func TestConfigSizeLimits(t *testing.T) {
	big := strings.Repeat("x", MaxConfigValueBytes) // JSON adds the quotes
	secret := "SeKrEt-" + strings.Repeat("s", MaxConfigValueBytes)
	diags := loadSrc(t, fmt.Sprintf(`
worker "w" {
  class = "smpp"
  config {
    host     = "h"
    username = %q
    password = %q
  }
}
`, big, secret))
	wantDiag(t, diags, "Config value too large", `The value of "username" is 262146 bytes as JSON; a config value may be at most 256 KiB`)
	wantDiag(t, diags, "Config value too large", `The value of "password"`)
	for _, d := range diags {
		if strings.Contains(d.Detail, "SeKrEt") || strings.Contains(d.Summary, "SeKrEt") {
			t.Errorf("a diagnostic quotes the secret value: %s", d.Summary)
		}
		if d.Summary == "Config value too large" && d.Subject == nil {
			t.Errorf("no subject: %v", d)
		}
	}

	// Five values just under the per-value limit: the whole is too large.
	v := strings.Repeat("y", MaxConfigValueBytes-10)
	diags = loadSrc(t, fmt.Sprintf(`
worker "w" {
  class = "smpp"
  config {
    host      = %q
    username  = %q
    password  = %q
    system_id = %q
    tags      = [%q]
  }
}
`, v, v, v, v, v[:100]+v[:MaxConfigValueBytes-200]))
	wantDiag(t, diags, "Config too large", "may be at most 1 MiB")

	// The same limits hold for a worker_config from a control message.
	doc, _ := json.Marshal(map[string]any{"host": "h", "username": big})
	_, diags = DecodeWorkerConfigJSON(smppSchema, doc, "control message")
	wantDiag(t, diags, "Config value too large", `"username"`)
	doc, _ = json.Marshal(map[string]any{"host": "h", "username": big[:1000]})
	if _, diags := DecodeWorkerConfigJSON(smppSchema, doc, "control message"); diags.HasErrors() {
		t.Errorf("a small config: %v", diags)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "64KiB": 64 << 10, "2 MiB": 2 << 20, "1gb": 1 << 30, "5M": 5 << 20} {
		if got, ok := ParseSize(in); !ok || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "1TB", "9999999999999MiB"} {
		if _, ok := ParseSize(bad); ok {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func loadCfg(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "host.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path, testClasses())
}

func loadSrc(t *testing.T, src string) hcl.Diagnostics {
	t.Helper()
	_, diags := loadCfg(t, src)
	return diags
}

func wantDiag(t *testing.T, diags hcl.Diagnostics, summary, detail string) {
	t.Helper()
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary == summary && strings.Contains(d.Detail, detail) {
			return
		}
	}
	t.Errorf("no error %q with %q in:\n%v", summary, detail, diags)
}
