package catalog

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// FuzzConvertClass converts any described class of two attributes (what a
// plugin, not necessarily built with the sdk, answers to Describe) and
// decodes a worker_config with the schema it gets. It checks: no panic; an
// accepted class has names without white space or control characters and
// a schema that passes sdk.Schema.Validate; every default the schema
// accepted is applied to an empty config (none is silently dropped); and a
// config that decodes comes back to the same value through the JSON the
// plugin gets and the state file stores.
func FuzzConvertClass(f *testing.F) {
	for _, s := range []struct {
		class, alias                   string
		name1, type1, def1             string
		req1, sens1                    bool
		name2, type2, def2, configJSON string
	}{
		{"smpp", "vumi.transports.smpp.SmppTransport", "host", "string", "", true, false, "port", "number", "2773", `{"host": "h"}`},
		{"echo", "", "prefix", "string", `"echo: "`, false, false, "interval", "duration", `"5s"`, `{}`},
		{"vault", "v", "token", "string", "", true, true, "rotate", "duration", `"1m"`, `{"token": "t", "rotate": "-1.5h"}`},
		{"lists", "", "tags", "list(string)", `["a","b"]`, false, false, "labels", "map(string)", `{"k":"v"}`, `{"tags": [], "labels": {"": ""}}`},
		{"bools", "", "enabled", "bool", `true`, false, false, "n", "number", `-0.5e-3`, `{"enabled": "false", "n": "1e3"}`},
		{"bad", "", "x", "number", "{", false, false, "y", "complex", "", `{}`},
		{"bad", "", "x", "number", `"five"`, false, false, "x", "number", "", `{}`},
		{"has space", "", "Bad-Name", "string", "", true, false, "y", "string", `"d"`, `{}`},
		{"dup", "a\tb", "x", "string", `null`, true, false, "y", "list(string)", `[1]`, `{}`},
		{"big", "", "n", "number", `1e400`, false, false, "m", "number", `123456789012345678901234567890`, `{"n": 1e-400}`},
	} {
		f.Add(s.class, s.alias, s.name1, s.type1, s.def1, s.req1, s.sens1, s.name2, s.type2, s.def2, []byte(s.configJSON))
	}
	f.Fuzz(func(t *testing.T, class, alias, name1, type1, def1 string, req1, sens1 bool, name2, type2, def2 string, cfg []byte) {
		ci := &proto.ClassInfo{
			Name:    class,
			Aliases: []string{alias},
			Schema: []*proto.Attribute{
				{Name: name1, Type: type1, DefaultJson: def1, Required: req1, Sensitive: sens1},
				{Name: name2, Type: type2, DefaultJson: def2},
			},
		}
		c, err := convertClass(ci, &Binary{})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, n := range append([]string{c.Name}, c.Aliases...) {
			if n == "" || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Fatalf("class name or alias %q accepted", n)
			}
		}
		if err := c.Schema.Validate(); err != nil {
			t.Fatalf("accepted schema fails Validate: %v", err)
		}
		if len(c.Schema) != 2 {
			t.Fatalf("schema of %d attributes, want 2", len(c.Schema))
		}

		// An empty config gets every default.
		if !req1 {
			v, diags := config.DecodeWorkerConfigJSON(c.Schema, nil, "test")
			if diags.HasErrors() {
				t.Fatalf("an empty config does not decode: %s", diags.Error())
			}
			for _, a := range c.Schema {
				got := v.GetAttr(a.Name)
				if a.Default == nil {
					if !got.IsNull() {
						t.Fatalf("%s without a default = %#v, want null", a.Name, got)
					}
					continue
				}
				if got.IsNull() {
					t.Fatalf("the default %#v of %s (%s) was dropped", a.Default, a.Name, a.Type)
				}
			}
		}

		v, diags := config.DecodeWorkerConfigJSON(c.Schema, cfg, "test")
		if diags.HasErrors() {
			if v != cty.NilVal {
				t.Fatalf("value %#v with errors", v)
			}
			return
		}
		w := config.NewWorker("w", config.RootName, c.Name, c.Schema, v)
		js, err := w.ConfigJSON()
		if err != nil {
			t.Fatalf("ConfigJSON: %v", err)
		}
		v2, diags := config.DecodeWorkerConfigJSON(c.Schema, js, "state")
		if diags.HasErrors() {
			t.Fatalf("%s does not decode again: %s", js, diags.Error())
		}
		w2 := config.NewWorker("w", config.RootName, c.Name, c.Schema, v2)
		if js2, err := w2.ConfigJSON(); err != nil || !bytes.Equal(js, js2) {
			t.Fatalf("second encoding %s (%v), first %s", js2, err, js)
		}
		// The values are equal too, but for a number default: it is a
		// float64 (default_json goes through encoding/json), written with
		// the fewest digits that give that float64 back
		// (100000000000000016 as 100000000000000020), which JSON decoding
		// then reads exactly. What the plugin gets and the state file
		// stores (js) is the same either way.
		if !v2.RawEquals(v) && !onlyNumbersDiffer(v, v2) {
			t.Fatalf("%s decodes to %#v, not %#v", js, v2, v)
		}
		if w.SpecHash() != w2.SpecHash() {
			t.Fatal("the round trip changed the spec hash")
		}
	})
}

// onlyNumbersDiffer reports whether a and b, two decoded configs, differ
// at most in numbers that are the same float64.
func onlyNumbersDiffer(a, b cty.Value) bool {
	if !a.Type().Equals(b.Type()) {
		return false
	}
	for name := range a.Type().AttributeTypes() {
		x, y := a.GetAttr(name), b.GetAttr(name)
		if x.RawEquals(y) {
			continue
		}
		if !x.Type().Equals(cty.Number) || x.IsNull() || y.IsNull() {
			return false
		}
		fx, _ := x.AsBigFloat().Float64()
		fy, _ := y.AsBigFloat().Float64()
		if fx != fy {
			return false
		}
	}
	return true
}
