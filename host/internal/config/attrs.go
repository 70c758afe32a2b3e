package config

import (
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// scope evaluates the attributes of one file and collects diagnostics.
type scope struct {
	ctx   *hcl.EvalContext
	dir   string // the file's directory
	diags *hcl.Diagnostics
}

func (s *scope) add(d ...*hcl.Diagnostic) { *s.diags = append(*s.diags, d...) }

func (s *scope) errorf(subject hcl.Range, summary, format string, args ...any) {
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// value evaluates attr and converts it to ty; ok is false after a
// diagnostic.
func (s *scope) value(attr *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	v, d := attr.Expr.Value(s.ctx)
	s.add(d...)
	if d.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		s.errorf(attr.Expr.Range(), "Invalid value", "The argument %q must not be null.", attr.Name)
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Incorrect attribute value type",
			Detail:   fmt.Sprintf("Inappropriate value for attribute %q: %s.", attr.Name, err),
			Subject:  attr.Expr.Range().Ptr(),
			Context:  hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
		})
		return cty.NilVal, false
	}
	if !cv.IsWhollyKnown() {
		s.errorf(attr.Expr.Range(), "Invalid value", "The value of %q cannot be determined.", attr.Name)
		return cty.NilVal, false
	}
	return cv, true
}

// str sets *dst to the string value of attr, when attr is set and valid.
func (s *scope) str(attr *hcl.Attribute, dst *string) bool {
	if attr == nil {
		return false
	}
	v, ok := s.value(attr, cty.String)
	if ok {
		*dst = v.AsString()
	}
	return ok
}

// enum sets *dst to the value of attr, which must be one of allowed.
func (s *scope) enum(attr *hcl.Attribute, what string, allowed []string, dst *string) {
	var v string
	if !s.str(attr, &v) {
		return
	}
	if !slices.Contains(allowed, v) {
		s.errorf(attr.Expr.Range(), "Invalid "+what,
			"%q is not a valid %s: use %s.%s", v, what, quotedList(allowed), didYouMean(v, allowed))
		return
	}
	*dst = v
}

// maxIntensity bounds whole-number arguments such as a supervisor's
// intensity.
const maxIntensity = 1000000

// wholeNumber sets *dst to the value of attr, a whole number >= 0.
func (s *scope) wholeNumber(attr *hcl.Attribute, dst *int) {
	if attr == nil {
		return
	}
	v, ok := s.value(attr, cty.Number)
	if !ok {
		return
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if acc != big.Exact || !bf.IsInt() || i < 0 || i > maxIntensity {
		s.errorf(attr.Expr.Range(), "Invalid value", "The argument %q must be a whole number from 0 to %d.", attr.Name, maxIntensity)
		return
	}
	*dst = int(i)
}

// duration sets *dst to the value of attr, a duration string greater than
// zero.
func (s *scope) duration(attr *hcl.Attribute, dst *time.Duration) {
	if attr == nil {
		return
	}
	v, ok := s.value(attr, cty.String)
	if !ok {
		return
	}
	d, err := parseDuration(v.AsString())
	if err != nil {
		s.add(durationDiag(attr.Name, v.AsString(), err, attr.Expr.Range(), false))
		return
	}
	*dst = d
}

// parseDuration parses a positive duration such as "5s".
func parseDuration(text string) (time.Duration, error) {
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errNotPositive
	}
	return d, nil
}

type durationError string

func (e durationError) Error() string { return string(e) }

const errNotPositive = durationError("a duration must be greater than zero")

// durationDiag reports a bad duration text for the attribute name; a
// sensitive value is not repeated.
func durationDiag(name, text string, err error, subject hcl.Range, sensitive bool) *hcl.Diagnostic {
	var detail string
	switch {
	case err == errNotPositive:
		detail = fmt.Sprintf("The argument %q must be a duration greater than zero", name)
		if !sensitive {
			detail += fmt.Sprintf(", not %q", text)
		}
		detail += "."
	case sensitive:
		detail = fmt.Sprintf("The argument %q is not a duration: use a number with a unit, such as \"500ms\", \"5s\" or \"1m30s\".", name)
	default:
		detail = fmt.Sprintf("%q is not a duration: use a number with a unit, such as \"500ms\", \"5s\" or \"1m30s\".", text)
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Invalid duration",
		Detail:   detail,
		Subject:  subject.Ptr(),
	}
}
