package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// RedactedValue is what replaces a sensitive value in printable output.
const RedactedValue = "(sensitive)"

// minSecretLen is the shortest secret replaced wherever it occurs in a
// message: shorter ones would match ordinary words. A diagnostic about a
// sensitive attribute that contains a shorter secret loses its detail.
const minSecretLen = 4

// sensitiveExtra marks a diagnostic about a sensitive attribute: its source
// line is not shown by FormatDiagnostics.
type sensitiveExtra struct{}

// IsSensitive reports whether d concerns a sensitive value, so that a
// printer must not show its source line.
func IsSensitive(d *hcl.Diagnostic) bool {
	_, ok := d.Extra.(sensitiveExtra)
	return ok
}

// scrubSensitive makes diags safe to print when attrs hold secrets: values
// of the attributes' expressions (and of their sub-expressions, such as a
// function's arguments) are removed from every message, and diagnostics on
// the attributes' lines lose their expression, evaluation context and source
// line.
func scrubSensitive(diags hcl.Diagnostics, attrs []*hcl.Attribute, ctx *hcl.EvalContext) {
	if len(attrs) == 0 {
		return
	}
	var secrets []string
	for _, a := range attrs {
		secrets = exprSecrets(secrets, a.Expr, ctx)
	}
	for _, d := range diags {
		var hit *hcl.Attribute
		for _, a := range attrs {
			if linesOverlap(d.Subject, a.Range) || linesOverlap(d.Context, a.Range) {
				hit = a
				break
			}
		}
		if hit != nil {
			d.Expression, d.EvalContext, d.Extra = nil, nil, sensitiveExtra{}
		}
		for _, s := range secrets {
			for _, form := range secretForms(s) {
				if !strings.Contains(d.Summary, form) && !strings.Contains(d.Detail, form) {
					continue
				}
				if len(form) >= minSecretLen {
					d.Summary = strings.ReplaceAll(d.Summary, form, RedactedValue)
					d.Detail = strings.ReplaceAll(d.Detail, form, RedactedValue)
				} else if hit != nil {
					d.Detail = fmt.Sprintf("The value of the sensitive argument %q is not valid; details are hidden.", hit.Name)
				}
			}
		}
	}
}

// secretForms are the ways s can appear in a message: as is and escaped
// inside a quoted string.
func secretForms(s string) []string {
	if s == "" {
		return nil
	}
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if q == s {
		return []string{s}
	}
	return []string{s, q}
}

// exprSecrets appends the known string and number values of expr and of
// every sub-expression, but for the name argument of env() calls: the
// name of an environment variable ("AMQP_URL") is not a secret, its value
// is, and an error about the variable must be able to name it.
func exprSecrets(out []string, expr hcl.Expression, ctx *hcl.EvalContext) []string {
	collect := func(e hcl.Expression) {
		v, _ := e.Value(ctx)
		out = valueStrings(out, v)
	}
	if n, ok := expr.(hclsyntax.Node); ok {
		names := envNameNodes(n)
		hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
			if e, ok := n.(hcl.Expression); ok && !names[n] {
				collect(e)
			}
			return nil
		})
		return out
	}
	collect(expr)
	return out
}

func valueStrings(out []string, v cty.Value) []string {
	if v == cty.NilVal || !v.IsKnown() || v.IsNull() {
		return out
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		out = append(out, v.AsString())
	case ty == cty.Number:
		out = append(out, v.AsBigFloat().Text('f', -1))
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = valueStrings(out, e)
		}
	}
	return out
}

func linesOverlap(r *hcl.Range, a hcl.Range) bool {
	return r != nil && r.Filename == a.Filename &&
		r.Start.Line <= a.End.Line && a.Start.Line <= r.End.Line
}

// envNameNodes returns the nodes of the first argument (the variable's
// name) of every env() call in n, with their sub-expressions.
func envNameNodes(n hclsyntax.Node) map[hclsyntax.Node]bool {
	names := map[hclsyntax.Node]bool{}
	hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "env" && len(call.Args) > 0 {
			hclsyntax.VisitAll(call.Args[0], func(a hclsyntax.Node) hcl.Diagnostics {
				names[a] = true
				return nil
			})
		}
		return nil
	})
	return names
}
