package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/dynworkers/dynworkers/sdk"
)

// ConfigJSON returns the worker's config as the JSON object sent to the
// plugin: strings, numbers, bools, durations as their strings ("5s"),
// lists and maps of strings. Every schema attribute is present; an unset
// optional attribute without a default is null (which sdk decoding treats
// like an absent one). Sensitive values are in clear: this is for the
// plugin only.
func (w *Worker) ConfigJSON() ([]byte, error) {
	return configJSON(w.Config)
}

func configJSON(v cty.Value) ([]byte, error) {
	if v == cty.NilVal || v.IsNull() {
		return []byte("{}"), nil
	}
	if !v.IsWhollyKnown() {
		return nil, fmt.Errorf("config has unknown values")
	}
	return ctyjson.Marshal(v, v.Type())
}

// RedactedConfig returns the config as JSON-shaped Go values (string,
// float64, bool, []any, map[string]any, nil), with the value of every set
// sensitive attribute replaced by RedactedValue. It is what logs, status
// and events show.
func (w *Worker) RedactedConfig() map[string]any {
	out := map[string]any{}
	if w.Config == cty.NilVal || w.Config.IsNull() || !w.Config.Type().IsObjectType() {
		return out
	}
	for name, v := range w.Config.AsValueMap() {
		if a, ok := w.Schema.Lookup(name); ok && a.Sensitive && !v.IsNull() {
			out[name] = RedactedValue
			continue
		}
		out[name] = goValue(v)
	}
	return out
}

// goValue converts a decoded config value to a JSON-shaped Go value.
func goValue(v cty.Value) any {
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString()
	case ty == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case ty == cty.Bool:
		return v.True()
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		l := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			l = append(l, goValue(e))
		}
		return l
	case ty.IsMapType() || ty.IsObjectType():
		m := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			m[k.AsString()] = goValue(e)
		}
		return m
	}
	return nil
}

// specHashInput is what SpecHash covers; its JSON encoding is canonical
// (fixed field order, durations in nanoseconds, config keys sorted).
type specHashInput struct {
	Class           string           `json:"class"`
	Restart         string           `json:"restart"`
	StartTimeout    int64            `json:"start_timeout"`
	ShutdownTimeout int64            `json:"shutdown_timeout"`
	HealthInterval  int64            `json:"health_interval"`
	HealthTimeout   int64            `json:"health_timeout"`
	Backoff         [3]int64         `json:"backoff"`
	Limits          *limitsHashInput `json:"limits,omitempty"`
	Config          json.RawMessage  `json:"config"`
}

// SpecHash returns a stable hex SHA-256 of everything that defines how the
// worker runs: class, config, restart policy, timeouts, backoff and limits (not its
// name or place in the tree). Equal hashes mean a restart would change
// nothing. The hash covers sensitive values too, so that a changed
// password is a changed spec.
func (w *Worker) SpecHash() string {
	cfg, err := configJSON(w.Config)
	if err != nil {
		cfg = []byte(`"unknown"`)
	}
	b, _ := json.Marshal(specHashInput{
		Class:           w.Class,
		Restart:         w.Restart,
		StartTimeout:    int64(w.StartTimeout),
		ShutdownTimeout: int64(w.ShutdownTimeout),
		HealthInterval:  int64(w.HealthInterval),
		HealthTimeout:   int64(w.HealthTimeout),
		Backoff:         [3]int64{int64(w.Backoff.Initial), int64(w.Backoff.Max), int64(w.Backoff.ResetAfter)},
		Limits:          limitsHash(w.Limits),
		Config:          cfg,
	})
	sum := sha256.Sum256(append([]byte("dynworkers.worker.v1\n"), b...))
	return hex.EncodeToString(sum[:])
}

// NewWorker returns a worker with the default restart policy, timeouts and
// backoff, for workers that do not come from HCL (started by a control
// message). cfg is the config as decoded by DecodeWorkerConfigJSON with
// schema; supervisorPath is the path of the supervisor it joins.
func NewWorker(name, supervisorPath, class string, schema sdk.Schema, cfg cty.Value) *Worker {
	return &Worker{
		Name:            name,
		Path:            supervisorPath + "/" + name,
		Class:           class,
		Restart:         DefaultRestart,
		StartTimeout:    DefaultStartTimeout,
		ShutdownTimeout: DefaultShutdownTimeout,
		HealthInterval:  DefaultHealthInterval,
		HealthTimeout:   DefaultHealthTimeout,
		Backoff: Backoff{
			Initial:    DefaultBackoffInitial,
			Max:        DefaultBackoffMax,
			ResetAfter: DefaultBackoffReset,
		},
		Config: cfg,
		Schema: schema,
	}
}
