package config

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/scrub"
)

// Scrubber returns the scrubber of the values of the worker's set
// sensitive attributes (every string and number in them), for what the
// worker itself reports: its logs, errors, status details and metric names.
// It follows scrub's rule for short values: those under scrub.MinSubstring
// bytes are replaced only where they are a whole value. Nil when the worker
// has no sensitive value set.
func (w *Worker) Scrubber() *scrub.Scrubber {
	if w == nil {
		return nil
	}
	if w.Config == cty.NilVal || w.Config.IsNull() || !w.Config.Type().IsObjectType() {
		return w.OwnerSecrets
	}
	var values []string
	for name, v := range w.Config.AsValueMap() {
		if a, ok := w.Schema.Lookup(name); ok && a.Sensitive {
			values = valueStrings(values, v)
		}
	}
	return scrub.Merge(scrub.New(values...), w.OwnerSecrets)
}

// Secrets returns the values of the worker's set sensitive attributes, in
// the forms they can take in text (as is and JSON-escaped), for scrubbing
// what the worker itself reports. Values shorter than minSecretLen are left
// out: replacing "1" everywhere would hide more than it protects.
func (w *Worker) Secrets() []string {
	if w == nil || w.Config.IsNull() || !w.Config.Type().IsObjectType() {
		return nil
	}
	var out []string
	for name, v := range w.Config.AsValueMap() {
		if a, ok := w.Schema.Lookup(name); !ok || !a.Sensitive {
			continue
		}
		for _, s := range valueStrings(nil, v) {
			for _, f := range secretForms(s) {
				if len(f) >= minSecretLen {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// ScrubJSON replaces every occurrence of a secret in the strings and keys of
// a JSON document by RedactedValue and returns the document re-encoded. A
// document that is not valid JSON is refused (ok false): what a worker sends
// is shown only once it has been scrubbed.
func ScrubJSON(doc json.RawMessage, secrets []string) (json.RawMessage, bool) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, false
	}
	if len(secrets) > 0 {
		v = scrubValue(v, secrets)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return out, true
}

func scrubValue(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return scrubString(x, secrets)
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i], secrets)
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[scrubString(k, secrets)] = scrubValue(e, secrets)
		}
		return out
	case float64:
		// A numeric secret (a PIN sent as a number) shows as its text.
		s := strconv.FormatFloat(x, 'f', -1, 64)
		for _, sec := range secrets {
			if s == sec {
				return RedactedValue
			}
		}
	}
	return v
}

func scrubString(s string, secrets []string) string {
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, RedactedValue)
		}
	}
	return s
}
