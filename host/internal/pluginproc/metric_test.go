package pluginproc

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// registrySink is the daemon's MetricSink: a monitor.Registry, under one
// prefix.
type registrySink struct {
	reg    *monitor.Registry
	prefix string
}

func (s registrySink) Metric(name string, value float64, aggs []string) error {
	return s.reg.Record(s.prefix, name, value, aggs)
}

// A metric name the host's registry refuses (here: another spelling of a
// name the worker already reported, equal once sanitised) reaches the
// worker's Env.Metric as an error matching sdk.ErrInvalidMetric that names
// both spellings, though the worker's earlier values already went on the
// outbox without a round trip.
func TestMetricNameCollisionReachesWorker(t *testing.T) {
	reg := monitor.NewRegistry(0)
	o := busOptions(t, map[string]any{
		"metrics": []string{"Messages Sent", "Messages Sent", "messages-sent", "Messages Sent", "MESSAGES_SENT", "other"},
	}, nil)
	o.MetricSink = registrySink{reg: reg, prefix: "w"}
	p := start(t, o)
	st := busStatusOf(t, p)
	if want := []string{"invalid_metric", "invalid_metric"}; !slices.Equal(st.Kinds, want) {
		t.Fatalf("error kinds %v, want %v; errors %q", st.Kinds, want, st.Errors)
	}
	for i, other := range []string{"messages-sent", "MESSAGES_SENT"} {
		for _, s := range []string{`"` + other + `"`, `"Messages Sent"`, `"messages_sent" once sanitised`, "InvalidArgument"} {
			if !strings.Contains(st.Errors[i], s) {
				t.Errorf("error %q does not say %s", st.Errors[i], s)
			}
		}
	}
	// The three values of the first spelling and the other metric were
	// taken (the later ones on the outbox, which may still be on its
	// way); the refused ones were not.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := reg.Values("w")
		if slices.Equal(v, []monitor.MetricValue{{Name: "messages_sent", Aggregator: "sum", Value: 3}, {Name: "other", Aggregator: "sum", Value: 1}}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry values %v", v)
		}
		time.Sleep(10 * time.Millisecond) // polling the registry, not waiting for time to pass
	}
}
