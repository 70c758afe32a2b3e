package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// Status JSON carries figures, not float noise: a sum of CPU times is 0.14,
// not 0.13999999999999999; a CPU percentage has 2 decimals, an uptime 3.
func TestStatusFiguresHaveNoFloatNoise(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sum := 0.0
	for range 14 {
		sum += 0.01 // ticks of 10ms, as the monitor adds them up
	}
	if sum == 0.14 {
		t.Fatal("the test needs a sum with float noise")
	}
	snap := &monitor.Snapshot{
		Time:        at,
		Host:        monitor.HostStats{Pid: 1, Proc: monitor.ProcStats{CPUSeconds: sum}, Started: at.Add(-1234567891 * time.Nanosecond)},
		Supervisors: []monitor.SupervisorStats{{Path: "root", CPUSeconds: sum}},
		Workers: []monitor.WorkerStats{{Name: "w", Pid: 7, StartedAt: at.Add(-2 * time.Second).Add(-345678 * time.Microsecond),
			Proc: &monitor.ProcStats{CPUSeconds: sum}, CPUPercent: 0.36987369342658744}},
	}
	got := map[string]any{
		"process": processReport(snap),
		"totals":  supervisorTotals(snap, "root"),
		"worker":  metricsOf(snap, &snap.Workers[0], 7),
	}
	raw, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	js := string(raw)
	for _, want := range []string{
		`"process":{"pid":1,"rss_bytes":0,"cpu_seconds":0.14,`, `"uptime_seconds":1.235,`,
		`"totals":{"workers":0,"running":0,"rss_bytes":0,"cpu_seconds":0.14}`,
		`"worker":{"rss_bytes":0,"cpu_seconds":0.14,"cpu_percent":0.37,"open_fds":0,"threads":0,"uptime_seconds":2.346}`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("status JSON lacks %s:\n%s", want, js)
		}
	}
}
