package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/contain"
)

func TestParseByteSize(t *testing.T) {
	for text, want := range map[string]int64{
		"256MiB": 256 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29, "64 MiB": 64 << 20,
		"500MB": 500e6, "2KB": 2000, "4096B": 4096, "1TiB": 1 << 40,
	} {
		got, err := ParseByteSize(text)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", text, got, err, want)
		}
	}
	for text, msg := range map[string]string{
		"256":      "has no unit",
		"256mib":   "has no unit",
		"MiB":      "is not a size",
		"0MiB":     "greater than zero",
		"-5MiB":    "greater than zero",
		"1e3MiB":   "is not a size",
		"0x10MiB":  "is not a size",
		"NaNMiB":   "is not a size",
		"infMiB":   "is not a size",
		"2000TiB":  "is more than 1024TiB",
		"1_000MiB": "is not a size",
	} {
		if _, err := ParseByteSize(text); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseByteSize(%q) error = %v, want one saying %q", text, err, msg)
		}
	}
}

func TestSpecHashCoversLimitsOnlyWhenSet(t *testing.T) {
	w := NewWorker("w", RootName, "echo", nil, cty.EmptyObjectVal)
	before := w.SpecHash()
	w.Limits = contain.Limits{Memory: 256 << 20}
	limited := w.SpecHash()
	if limited == before {
		t.Fatal("a memory limit does not change the spec hash: a reload would not apply it")
	}
	w.Limits.Memory = 512 << 20
	if w.SpecHash() == limited {
		t.Fatal("a changed memory limit does not change the spec hash")
	}
	w.Limits = contain.Limits{}
	if w.SpecHash() != before {
		t.Fatal("removing the limits does not restore the hash")
	}
	// Workers without limits hash as before limits existed: the field is
	// left out of the hashed JSON.
	b, _ := json.Marshal(specHashInput{Limits: limitsHash(contain.Limits{})})
	if strings.Contains(string(b), "limits") {
		t.Fatalf("hashed JSON without limits mentions them: %s", b)
	}
}

func TestLimitWarnings(t *testing.T) {
	cfg, diags := Load("testdata/limits.hcl", testClasses())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	none := contain.Support{Memory: contain.ByRlimit, Pids: contain.ByRlimit, CPU: contain.NotEnforced,
		OpenFiles: contain.ByRlimit, Kill: contain.KillProcessOnly, Notes: []string{"no cgroup2 mount"}}
	ws := LimitWarnings(cfg, none)
	var text []string
	for _, d := range ws {
		text = append(text, d.Summary+": "+d.Detail)
	}
	all := strings.Join(text, "\n")
	// memory: 3 distinct values (512MiB for "default", 1536MiB, 300000000B);
	// pids: 128 (default, own) and 64; cpu: own only; and containment.
	if len(ws) != 3+2+1+1 {
		t.Fatalf("%d warnings, want 7:\n%s", len(ws), all)
	}
	for _, want := range []string{
		`Limit not enforced on this machine: Limit memory = "512MiB": no usable memory cgroup controller (no cgroup2 mount)`,
		"It concerns 2 workers: root/default, root/own.",
		"Limit cpu = 0.5: no usable cpu cgroup controller",
		"Workers not contained: No usable cgroup (no cgroup2 mount)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	full := contain.Support{Memory: contain.ByCgroup1, Pids: contain.ByCgroup1, CPU: contain.ByCgroup1, OpenFiles: contain.ByRlimit, Kill: contain.KillCgroup2}
	if ws := LimitWarnings(cfg, full); len(ws) != 0 {
		t.Errorf("warnings with every controller: %v", ws)
	}
}
