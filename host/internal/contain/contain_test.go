package contain

import (
	"strings"
	"testing"
)

func TestFormatBytesAndString(t *testing.T) {
	for n, want := range map[int64]string{256 << 20: "256MiB", 1536 << 10: "1536KiB", 1000: "1000B", 1 << 30: "1GiB", 0: "0B"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	l := Limits{Memory: 256 << 20, Pids: 64, CPU: 0.5, OpenFiles: 1024}
	if got, want := l.String(), `memory = "256MiB", pids = 64, cpu = 0.5, open_files = 1024`; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if (Limits{}).String() != "none" || !(Limits{}).IsZero() || l.IsZero() {
		t.Error("zero limits")
	}
}

func TestSupportWarnings(t *testing.T) {
	l := Limits{Memory: 256 << 20, Pids: 64, CPU: 0.5, OpenFiles: 1024}
	full := Support{Memory: ByCgroup2, Pids: ByCgroup1, CPU: ByCgroup2, OpenFiles: ByRlimit, Kill: KillCgroup2}
	if w := full.Warnings(l); len(w) != 0 {
		t.Errorf("warnings with every controller: %q", w)
	}
	if full.ContainmentWarning() != "" {
		t.Error("containment warning with cgroup.kill")
	}
	none := Support{Memory: ByRlimit, Pids: ByRlimit, CPU: NotEnforced, OpenFiles: ByRlimit, Kill: KillProcessOnly, Notes: []string{"no cgroup2 mount"}}
	w := none.Warnings(l)
	if len(w) != 3 {
		t.Fatalf("warnings = %q, want memory, pids and cpu", w)
	}
	for i, want := range []string{`memory = "256MiB": no usable memory cgroup controller (no cgroup2 mount); the host sets RLIMIT_DATA`, "pids = 64: ", "RLIMIT_NPROC", "cpu = 0.5: ", "not a rate"} {
		if !strings.Contains(strings.Join(w, "\n"), want) {
			t.Errorf("warning %d: %q lacks %q", i, w, want)
		}
	}
	if w := none.Warnings(Limits{OpenFiles: 10}); len(w) != 0 {
		t.Errorf("open_files alone warns: %q", w)
	}
	if !strings.Contains(none.ContainmentWarning(), "setsid") {
		t.Errorf("containment warning = %q", none.ContainmentWarning())
	}
}
