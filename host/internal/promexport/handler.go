package promexport

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// Option configures NewHandler and NewRegistry.
type Option func(*settings)

type settings struct {
	errorLog   promhttp.Logger
	timeout    time.Duration
	collectors []prometheus.Collector
}

// WithErrorLog logs the errors of collecting and serving metrics to l (a
// *log.Logger will do; hclog's StandardLogger gives one). Without it they
// are not logged; either way they are counted in
// promhttp_metric_handler_errors_total.
func WithErrorLog(l promhttp.Logger) Option {
	return func(s *settings) { s.errorLog = l }
}

// WithTimeout makes a scrape that takes longer than d fail with 503
// Service Unavailable. The default, 0, sets no limit.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) { s.timeout = d }
}

// WithCollectors adds collectors to the registry, next to the host's own
// (for instance the HTTP API's request metrics). Registering one whose
// metrics clash with those already registered panics, as
// prometheus.Registry.MustRegister does: that is a programming error.
func WithCollectors(cs ...prometheus.Collector) Option {
	return func(s *settings) { s.collectors = append(s.collectors, cs...) }
}

// NewRegistry returns a private registry holding the Go runtime collector
// and the process collector, both for the host process itself, a Collector
// reading snapshots from src, and the collectors given with WithCollectors.
// NewHandler serves one; it is exported for callers that gather in other
// ways, and for tests.
func NewRegistry(src func() *monitor.Snapshot, opts ...Option) *prometheus.Registry {
	reg, _ := newRegistry(src, opts)
	return reg
}

func newRegistry(src func() *monitor.Snapshot, opts []Option) (*prometheus.Registry, settings) {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(src),
	)
	reg.MustRegister(s.collectors...)
	return reg, s
}

// NewHandler returns an http.Handler for GET /metrics that serves, in the
// Prometheus text exposition format (compressed if the client asks),
// the metrics of NewRegistry(src, opts...) together with the handler's own
// promhttp_metric_handler_* metrics. src is called once per scrape, and
// must not be nil; see Collector for what it may return.
//
// A collection error (a duplicate series, say two workers of one name)
// does not fail the scrape: the other metrics are served, and the error is
// logged (WithErrorLog) and counted.
func NewHandler(src func() *monitor.Snapshot, opts ...Option) http.Handler {
	reg, s := newRegistry(src, opts)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      s.errorLog,
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
		Timeout:       s.timeout,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}
