package config

import (
	"fmt"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Spec returns the hcldec spec that decodes a config body of schema: an
// ObjectSpec with one AttrSpec per attribute, wrapped in a DefaultSpec when
// the attribute has a default. Types map as string → cty.String, number →
// cty.Number, bool → cty.Bool, duration → cty.String checked with
// time.ParseDuration (and > 0), list(string) → cty.List(cty.String),
// map(string) → cty.Map(cty.String). The schema should be valid (sdk.Schema.Validate); an attribute of
// an unknown type decodes as any value, and a default that does not fit its
// type is ignored.
func Spec(schema sdk.Schema) hcldec.Spec {
	spec := hcldec.ObjectSpec{}
	for _, a := range schema {
		spec[a.Name] = attrSpec(a)
	}
	return spec
}

func attrSpec(a sdk.Attribute) hcldec.Spec {
	var s hcldec.Spec = &hcldec.AttrSpec{Name: a.Name, Type: ctyType(a.Type), Required: a.Required}
	if check := validator(a); check != nil {
		s = &hcldec.ValidateSpec{Wrapped: s, Func: check}
	}
	if a.Default != nil {
		if def, err := ctyValue(a.Type, a.Default); err == nil {
			s = &hcldec.DefaultSpec{Primary: s, Default: &hcldec.LiteralSpec{Value: def}}
		}
	}
	return s
}

// validator checks what the type system cannot: a duration's text. Any
// duration time.ParseDuration accepts is valid here, zero and negative
// ones included: what a class's duration means (and whether "0s" makes
// sense) is the class's business, as in the SDK. The host's own timing
// attributes are stricter (parseDuration).
// ValidateSpec fills in the subject: the attribute's expression.
func validator(a sdk.Attribute) func(cty.Value) hcl.Diagnostics {
	if a.Type != sdk.TypeDuration {
		return nil
	}
	return func(v cty.Value) hcl.Diagnostics {
		if !v.IsNull() && v.IsKnown() {
			text := v.AsString()
			if _, err := time.ParseDuration(text); err != nil {
				d := durationDiag(a.Name, text, err, hcl.Range{}, a.Sensitive)
				d.Subject = nil
				return hcl.Diagnostics{d}
			}
		}
		return nil
	}
}

// ctyType is the cty type of an attribute type.
func ctyType(t sdk.AttrType) cty.Type {
	switch t {
	case sdk.TypeString, sdk.TypeDuration:
		return cty.String
	case sdk.TypeNumber:
		return cty.Number
	case sdk.TypeBool:
		return cty.Bool
	case sdk.TypeListString:
		return cty.List(cty.String)
	case sdk.TypeMapString:
		return cty.Map(cty.String)
	}
	return cty.DynamicPseudoType
}

// ctyValue converts a JSON-shaped Go value (a schema default) to a cty value
// of the attribute type.
func ctyValue(t sdk.AttrType, v any) (cty.Value, error) {
	bad := fmt.Errorf("value of type %T does not fit %s", v, t)
	switch t {
	case sdk.TypeString, sdk.TypeDuration:
		if s, ok := v.(string); ok {
			return cty.StringVal(s), nil
		}
	case sdk.TypeNumber:
		switch n := v.(type) {
		case float64:
			return cty.NumberFloatVal(n), nil
		case int:
			return cty.NumberIntVal(int64(n)), nil
		case int64:
			return cty.NumberIntVal(n), nil
		}
	case sdk.TypeBool:
		if b, ok := v.(bool); ok {
			return cty.BoolVal(b), nil
		}
	case sdk.TypeListString:
		var l []string
		switch x := v.(type) {
		case []string:
			l = x
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return cty.NilVal, bad
				}
				l = append(l, s)
			}
		default:
			return cty.NilVal, bad
		}
		if len(l) == 0 {
			return cty.ListValEmpty(cty.String), nil
		}
		vals := make([]cty.Value, len(l))
		for i, s := range l {
			vals[i] = cty.StringVal(s)
		}
		return cty.ListVal(vals), nil
	case sdk.TypeMapString:
		m := map[string]string{}
		switch x := v.(type) {
		case map[string]string:
			m = x
		case map[string]any:
			for k, e := range x {
				s, ok := e.(string)
				if !ok {
					return cty.NilVal, bad
				}
				m[k] = s
			}
		default:
			return cty.NilVal, bad
		}
		if len(m) == 0 {
			return cty.MapValEmpty(cty.String), nil
		}
		vals := make(map[string]cty.Value, len(m))
		for k, s := range m {
			vals[k] = cty.StringVal(s)
		}
		return cty.MapVal(vals), nil
	}
	return cty.NilVal, bad
}
