package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// secretMarker is part of every secret value the golden inputs use; no
// output may contain it.
const secretMarker = "SeKrEt"

// TestGolden loads every testdata/*.hcl file and testdata/*.d directory and
// compares the formatted diagnostics, or "ok" and a dump of the tree, with
// the matching .golden file. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	t.Setenv("SMPP_PASSWORD", "hunter2-"+secretMarker)
	t.Setenv("AMQP_URL", "amqp://guest:amqp-"+secretMarker+"@127.0.0.1:5672/")
	t.Setenv("DYNWORKERS_TEST_UNSET", "")
	os.Unsetenv("DYNWORKERS_TEST_UNSET")
	t.Chdir("testdata")

	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !(e.IsDir() && strings.HasSuffix(name, ".d")) && !(!e.IsDir() && strings.HasSuffix(name, ".hcl")) {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			got := runGolden(name)
			if strings.Contains(got, secretMarker) {
				t.Errorf("output leaks a secret:\n%s", got)
			}
			golden := strings.TrimSuffix(name, filepath.Ext(name)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run go test -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden inputs in testdata")
	}
}

func runGolden(path string) string {
	var b bytes.Buffer
	cfg, diags := Load(path, testClasses())
	if len(diags) > 0 {
		FormatDiagnostics(&b, diags, nil)
	}
	if cfg != nil {
		if len(diags) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("ok\n")
		dumpConfig(&b, cfg)
	}
	return b.String()
}

func dumpConfig(b *bytes.Buffer, c *Config) {
	fmt.Fprintf(b, "files: %s\n", strings.Join(c.Files, " "))
	fmt.Fprintf(b, "system_id: %s\n", c.SystemID)
	h := c.Host
	fmt.Fprintf(b, "host: name=%s plugin_dir=%s state_dir=%s http_addr=%s log_level=%s start_concurrency=%d warm_spares=%d\n",
		h.Name, h.PluginDir, h.StateDir, h.HTTPAddr, h.LogLevel, h.StartConcurrency, h.WarmSpares)
	if !h.WorkerLimits.IsZero() {
		fmt.Fprintf(b, "host limits: %s\n", h.WorkerLimits)
	}
	if c.AMQP != nil {
		fmt.Fprintf(b, "amqp: %s\n", c.AMQP)
	} else {
		fmt.Fprintf(b, "amqp: none\n")
	}
	if c.Cluster != nil {
		fmt.Fprintf(b, "%s\n", c.Cluster)
	}
	dumpSupervisor(b, c.Root, "")
}

func dumpSupervisor(b *bytes.Buffer, s *Supervisor, indent string) {
	fmt.Fprintf(b, "%ssupervisor %q path=%q strategy=%s intensity=%d period=%s at %s\n",
		indent, s.Name, s.Path, s.Strategy, s.Intensity, s.Period, position(s.Range))
	for _, c := range s.Children {
		if c.Supervisor != nil {
			dumpSupervisor(b, c.Supervisor, indent+"  ")
			continue
		}
		w := c.Worker
		fmt.Fprintf(b, "%s  worker %q path=%q class=%s restart=%s at %s\n", indent, w.Name, w.Path, w.Class, w.Restart, position(w.Range))
		fmt.Fprintf(b, "%s    start=%s shutdown=%s health=%s/%s backoff=%s..%s reset=%s\n", indent,
			w.StartTimeout, w.ShutdownTimeout, w.HealthInterval, w.HealthTimeout, w.Backoff.Initial, w.Backoff.Max, w.Backoff.ResetAfter)
		if !w.Limits.IsZero() {
			fmt.Fprintf(b, "%s    limits: %s\n", indent, w.Limits)
		}
		cfg, _ := json.Marshal(w.RedactedConfig())
		fmt.Fprintf(b, "%s    config=%s\n", indent, cfg)
	}
}
