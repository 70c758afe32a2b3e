package monitor

// Sink records one worker process's own metrics in a Registry, under the
// worker's prefix. Its Metric method is what the plugin host asks of a
// metric sink (pluginproc.MetricSink), so a Sink is passed to it as is.
type Sink struct {
	reg    *Registry
	prefix string
}

// Sink returns the sink of a new process of the worker whose metrics are
// recorded under prefix. It releases the prefix's names (Release), so the
// process claims the spelling of its metrics' names anew: two spellings of
// one name collide within one process, not with a spelling its predecessor
// used (a new version of a plugin may tidy a name; the series stays the
// same).
func (r *Registry) Sink(prefix string) Sink {
	r.Release(prefix)
	return Sink{reg: r, prefix: prefix}
}

// Metric records value under the sink's prefix (see Registry.Record).
func (s Sink) Metric(name string, value float64, aggregators []string) error {
	return s.reg.Record(s.prefix, name, value, aggregators)
}
