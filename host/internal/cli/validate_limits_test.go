package cli

import (
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/contain"
)

func TestValidateLimits(t *testing.T) {
	cfg := writeConfig(t, `
worker "limited" {
  class = "chaos"
  limits {
    memory     = "256MiB"
    pids       = 64
    cpu        = 0.5
    open_files = 1024
  }
}
`)
	rc, out, errOut := runMain("validate", cfg)
	if rc != 0 || !strings.Contains(out, "ok (1 worker in 1 supervisor") {
		t.Fatalf("validate: rc=%d out=%q err=%q", rc, out, errOut)
	}
	// It warns exactly about what this machine cannot enforce.
	sup := contain.Probe()
	want := sup.Warnings(contain.Limits{Memory: 256 << 20, Pids: 64, CPU: 0.5, OpenFiles: 1024})
	if got := strings.Count(errOut, "Limit not enforced on this machine"); got != len(want) {
		t.Errorf("validate printed %d limit warnings, want %d (%q):\n%s", got, len(want), want, errOut)
	}
	if (sup.ContainmentWarning() != "") != strings.Contains(errOut, "Workers not contained") {
		t.Errorf("containment warning: support %+v, output:\n%s", sup, errOut)
	}

	bad := writeConfig(t, `
worker "limited" {
  class = "chaos"
  limits { memory = "256" }
}
`)
	rc, _, errOut = runMain("validate", bad)
	if rc != 1 || !strings.Contains(errOut, `host.hcl:11:21: error: Invalid memory limit`) || !strings.Contains(errOut, `"256" has no unit`) {
		t.Errorf("validate bad memory: rc=%d\n%s", rc, errOut)
	}
}
