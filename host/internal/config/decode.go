package config

import (
	"fmt"
	"slices"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Decode resolves every worker's class with classes and decodes its config
// body with the class's schema, returning every diagnostic at once. It can
// be called again, e.g. with a rescanned catalog; each call builds a new
// tree. When Parse reported errors, Decode still checks what it can but
// returns a nil Config; it also does when it reports errors itself.
func (f *File) Decode(classes ClassResolver) (*Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	if f.root == nil {
		return nil, diags
	}
	d := &decoder{classes: classes, diags: &diags}
	root := d.supervisor(f.root)
	root.Walk(func(w *Worker) { w.Limits = mergeLimits(f.Host.WorkerLimits, w.Limits) })
	sortDiagnostics(diags)
	if diags.HasErrors() || f.failed {
		return nil, diags
	}
	var amqp *AMQPConfig
	if f.AMQP != nil {
		amqp = &AMQPConfig{URL: f.AMQP.URL, TLS: f.AMQP.TLS}
	}
	return &Config{
		SystemID: f.SystemID,
		Host:     f.Host,
		AMQP:     amqp,
		Control:  f.Control,
		Cluster:  f.Cluster,
		Root:     root,
		Files:    slices.Clone(f.Files),
		Limits:   f.Limits,
	}, diags
}

type decoder struct {
	classes ClassResolver
	diags   *hcl.Diagnostics
}

func (d *decoder) supervisor(rs *rawSupervisor) *Supervisor {
	s := rs.sup
	s.Children = make([]Node, 0, len(rs.children))
	for _, c := range rs.children {
		if c.worker != nil {
			s.Children = append(s.Children, Node{Worker: d.worker(c.worker)})
		} else {
			s.Children = append(s.Children, Node{Supervisor: d.supervisor(c.sup)})
		}
	}
	return &s
}

func (d *decoder) worker(rw *rawWorker) *Worker {
	w := rw.w
	if rw.class == "" {
		return &w // already reported by Parse
	}
	canonical, schema, err := d.resolve(rw.class)
	if err != nil {
		summary, hint := "Invalid class", ""
		if l, ok := d.classes.(ClassLister); ok {
			names := l.ClassNames()
			if !slices.Contains(names, rw.class) {
				summary, hint = "Unknown class", didYouMean(rw.class, names)
			}
		}
		*d.diags = append(*d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   fmt.Sprintf("Worker %q: %s.%s", w.Name, err, hint),
			Subject:  rw.classRange.Ptr(),
		})
		return &w
	}
	if err := schema.Validate(); err != nil {
		*d.diags = append(*d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid class schema",
			Detail:   fmt.Sprintf("The class %q declares an invalid config schema: %s.", canonical, err),
			Subject:  rw.classRange.Ptr(),
		})
		return &w
	}
	w.Class, w.Schema = canonical, schema

	var body hcl.Body
	if rw.config != nil {
		body = rw.config.Body
	} else {
		body = hcl.EmptyBody()
	}
	val, diags := decodeConfig(schema, body, rw.ctx)
	for _, diag := range diags {
		if diag.Summary != "Missing required argument" {
			continue
		}
		if rw.config != nil {
			diag.Subject = rw.config.DefRange.Ptr()
		} else {
			diag.Subject = w.Range.Ptr()
			diag.Detail = missingDetail(diag.Detail, canonical)
		}
	}
	*d.diags = append(*d.diags, diags...)
	w.Config = val
	return &w
}

func (d *decoder) resolve(class string) (string, sdk.Schema, error) {
	if d.classes == nil {
		return "", nil, fmt.Errorf("unknown class %q: no classes are available", class)
	}
	return d.classes.ResolveClass(class)
}

// decodeConfig decodes a config body with the schema's spec and scrubs
// sensitive values from the diagnostics. The value is cty.NilVal after
// errors.
func decodeConfig(schema sdk.Schema, body hcl.Body, ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	val, diags := hcldec.Decode(body, Spec(schema), ctx)
	attrs := bodyAttrs(schema, body)
	resuggest(diags, schema, attrs)
	diags = append(diags, nullRequired(schema, attrs, val)...)
	var secret []*hcl.Attribute
	for _, a := range schema {
		if attr := attrs[a.Name]; a.Sensitive && attr != nil {
			secret = append(secret, attr)
		}
	}
	scrubSensitive(diags, secret, ctx)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	if more := checkConfigSize(schema, val, attrs, body.MissingItemRange()); more.HasErrors() {
		return cty.NilVal, append(diags, more...)
	}
	return val, diags
}

// bodyAttrs returns the attributes of body that schema declares.
func bodyAttrs(schema sdk.Schema, body hcl.Body) map[string]*hcl.Attribute {
	bs := &hcl.BodySchema{}
	for _, a := range schema {
		bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.Name})
	}
	content, _, _ := body.PartialContent(bs)
	if content == nil {
		return nil
	}
	return content.Attributes
}

// nullRequired reports required attributes explicitly set to null, which
// hcldec accepts.
func nullRequired(schema sdk.Schema, attrs map[string]*hcl.Attribute, val cty.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if !val.IsKnown() || val.IsNull() || !val.Type().IsObjectType() {
		return nil
	}
	for _, a := range schema {
		attr := attrs[a.Name]
		if !a.Required || attr == nil || !val.GetAttr(a.Name).IsNull() {
			continue
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value",
			Detail:   fmt.Sprintf("The argument %q is required and must not be null.", a.Name),
			Subject:  attr.Expr.Range().Ptr(),
		})
	}
	return diags
}

// missingDetail rewrites HCL's "Missing required argument" detail for a
// worker without a config block.
func missingDetail(detail, class string) string {
	var name string
	if _, err := fmt.Sscanf(detail, "The argument %q is required", &name); err != nil {
		return detail
	}
	return fmt.Sprintf("The argument %q is required by class %q, but this worker has no config block.", name, class)
}
