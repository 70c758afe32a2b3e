package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBusSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	for _, tc := range []struct {
		name string
		src  string
		want BusConfig
	}{
		{"absent: the bus's defaults", "system_id = \"s\"\n", BusConfig{}},
		{"empty block", "host {\n  bus {}\n}\n", BusConfig{}},
		{"every setting", "host {\n  bus {\n    max_length = 5000\n    max_length_bytes = \"8MiB\"\n    max_total_bytes = \"64MiB\"\n    overflow = \"reject-publish\"\n    expires = \"10m\"\n  }\n}\n",
			BusConfig{MaxLength: 5000, MaxLengthBytes: 8 << 20, MaxTotalBytes: 64 << 20, Overflow: OverflowRejectPublish, Expires: 10 * time.Minute}},
		{"sizes as numbers", "host {\n  bus {\n    max_length_bytes = 1\n    max_total_bytes = 1048576\n    overflow = \"drop-head\"\n  }\n}\n",
			BusConfig{MaxLengthBytes: 1, MaxTotalBytes: 1 << 20, Overflow: OverflowDropHead}},
		{"max_length at its bound", "host {\n  bus {\n    max_length = 1000000\n  }\n}\n", BusConfig{MaxLength: MaxBusMaxLength}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, path, tc.src)
			f, diags := Parse(path)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if f.Host.Bus != tc.want {
				t.Errorf("Bus = %+v, want %+v", f.Host.Bus, tc.want)
			}
		})
	}
}

func TestBusSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	for src, want := range map[string]string{
		"host {\n  bus {\n    max_length = 0\n  }\n}\n":                    `"max_length" of the bus block (the most ready messages a queue holds) must be a whole number from 1 to 1000000`,
		"host {\n  bus {\n    max_length = 1000001\n  }\n}\n":              `"max_length" must be a whole number from 0 to 1000000`,
		"host {\n  bus {\n    max_length = -3\n  }\n}\n":                   `"max_length" must be a whole number`,
		"host {\n  bus {\n    max_length = \"many\"\n  }\n}\n":             `max_length`,
		"host {\n  bus {\n    max_length_bytes = 0\n  }\n}\n":              `"max_length_bytes" of the bus block`,
		"host {\n  bus {\n    max_length_bytes = \"lots\"\n  }\n}\n":       `"max_length_bytes": "lots" is not a size`,
		"host {\n  bus {\n    max_length_bytes = \"2GiB\"\n  }\n}\n":       `from 0 to 1GiB`,
		"host {\n  bus {\n    max_total_bytes = \"512KiB\"\n  }\n}\n":      `"max_total_bytes" of the bus block (the memory the ready messages of all queues may take) must be at least 1MiB`,
		"host {\n  bus {\n    overflow = \"drop-tail\"\n  }\n}\n":          `"drop-tail" is not a valid overflow policy: use "drop-head" or "reject-publish"`,
		"host {\n  bus {\n    overflow = \"reject-publish-dlx\"\n  }\n}\n": `is not a valid overflow policy`,
		"host {\n  bus {\n    expires = \"0s\"\n  }\n}\n":                  `"expires" must be a duration greater than zero`,
		"host {\n  bus {\n    expires = \"soon\"\n  }\n}\n":                `"soon" is not a duration`,
		"host {\n  bus {\n    max_len = 3\n  }\n}\n":                       `"max_len" is not expected here`,
		"host {\n  bus {}\n  bus {}\n}\n":                                  `Duplicate bus block`,
	} {
		writeFile(t, path, src)
		_, diags := Parse(path)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
			t.Errorf("%q: %v; want an error saying %q", src, diags, want)
			continue
		}
		if !strings.Contains(diags.Error(), "c.hcl:3") && !strings.Contains(diags.Error(), "c.hcl:2") {
			t.Errorf("%q: %v; want the error at the attribute's line", src, diags)
		}
	}
}

// A bus block and an amqp block, in one file or in two of a directory,
// are refused at the bus block, naming the amqp block and what to do.
func TestBusBlockRefusedWithAMQP(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.hcl"), "host {\n  bus {\n    max_length = 10\n  }\n}\n")
	writeFile(t, filepath.Join(dir, "b.hcl"), "amqp {\n  url = \"amqp://guest:secret@127.0.0.1:5672/\"\n}\n")
	_, diags := Parse(dir)
	msg := diags.Error()
	for _, want := range []string{"a.hcl:2", "Bus block without the embedded bus", "b.hcl:1", "set_policy", "remove the bus block"} {
		if !strings.Contains(msg, want) {
			t.Errorf("diagnostics %q do not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("diagnostics %q repeat the amqp url's password", msg)
	}
	// Without the amqp block, the same bus block is fine.
	if err := os.Remove(filepath.Join(dir, "b.hcl")); err != nil {
		t.Fatal(err)
	}
	f, diags := Parse(dir)
	if diags.HasErrors() || f.Host.Bus.MaxLength != 10 {
		t.Fatalf("%v, bus %+v", diags, f.Host.Bus)
	}
}
