package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/sdk"
)

// Input limits: no single input (an HCL file, a control message, a
// worker's StartChild) can make the host allocate without bound, start
// processes without bound or hand a plugin a message its gRPC server
// refuses. Every refusal names the limit. docs/operator-guide.md ("Input
// limits") lists them; docs/security.md says why.
const (
	// MaxConfigBytes bounds a worker's whole config, encoded as the JSON
	// the plugin receives in its Start RPC. The plugin protocol's gRPC
	// messages are limited to 4 MiB; 1 MiB leaves room for the rest of
	// the request and keeps one config from costing much memory per
	// restart.
	MaxConfigBytes = 1 << 20
	// MaxConfigValueBytes bounds one top-level attribute of a worker's
	// config, encoded as JSON (a list or map counts as a whole).
	MaxConfigValueBytes = 256 << 10
	// MaxDepth bounds the nesting of supervisors: the number of segments
	// of a supervisor's path ("root" is 1, "root/a" is 2). A hybrid's
	// children's supervisor counts as one level below its owner's.
	MaxDepth = 16
)

// Defaults of the input_limits block (InputLimits).
const (
	// DefaultControlMessageBytes bounds one control message body (AMQP or
	// HTTP): larger ones are refused before they are decoded. It is twice
	// MaxConfigBytes so that any config the host accepts fits in a message.
	DefaultControlMessageBytes = 2 << 20
	// DefaultChildrenPerWorker bounds the children a hybrid worker may have
	// at once (through StartChild).
	DefaultChildrenPerWorker = 1000
	// DefaultChildren bounds the hybrids' children of the whole host, all
	// hybrids together.
	DefaultChildren = 5000
)

// Bounds of the input_limits settings.
const (
	minControlMessageBytes = 64 << 10
	// MaxControlMessageBytes is the largest control_message_size a host
	// may set; clients (the CLI's send) read no more than this.
	MaxControlMessageBytes = 64 << 20
	maxChildren            = 100000
)

// InputLimits are the host's operator-settable input limits (the
// input_limits block). The fixed ones are constants: MaxConfigBytes,
// MaxConfigValueBytes, MaxDepth, MaxNameLen and control's MaxRequestIDLen.
type InputLimits struct {
	// ControlMessageBytes bounds a control message body, AMQP or HTTP.
	ControlMessageBytes int
	// ChildrenPerWorker bounds one hybrid worker's children.
	ChildrenPerWorker int
	// Children bounds all hybrids' children of the host together.
	Children int
}

// DefaultInputLimits returns the limits of a host without an input_limits
// block.
func DefaultInputLimits() InputLimits {
	return InputLimits{
		ControlMessageBytes: DefaultControlMessageBytes,
		ChildrenPerWorker:   DefaultChildrenPerWorker,
		Children:            DefaultChildren,
	}
}

var inputLimitsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "control_message_size"},
		{Name: "children_per_worker"},
		{Name: "children"},
	},
}

// decodeInputLimits decodes an input_limits block into l.
func decodeInputLimits(sc *scope, b *hcl.Block, l *InputLimits) {
	content, d := b.Body.Content(inputLimitsSchema)
	sc.add(d...)
	a := content.Attributes
	if attr := a["control_message_size"]; attr != nil {
		n, ok := sizeValue(sc, attr)
		switch {
		case !ok:
		case n < minControlMessageBytes || n > MaxControlMessageBytes:
			sc.errorf(attr.Expr.Range(), "Invalid control_message_size",
				"control_message_size must be from %s to %s, not %s; the default, %s, fits any worker config the host accepts (at most %s).",
				FormatBytes(minControlMessageBytes), FormatBytes(MaxControlMessageBytes), FormatBytes(n),
				FormatBytes(DefaultControlMessageBytes), FormatBytes(MaxConfigBytes))
		default:
			l.ControlMessageBytes = int(n)
		}
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"children_per_worker", &l.ChildrenPerWorker}, {"children", &l.Children}} {
		attr := a[p.name]
		if attr == nil {
			continue
		}
		var n int
		before := len(*sc.diags)
		sc.wholeNumber(attr, &n)
		if len(*sc.diags) > before {
			continue
		}
		if n < 0 || n > maxChildren {
			sc.errorf(attr.Expr.Range(), "Invalid "+p.name,
				"%s must be from 0 (no hybrid children) to %d, not %d.", p.name, maxChildren, n)
			continue
		}
		*p.dst = n
	}
}

// sizeValue reads a size: a whole number of bytes or a string such as
// "512KiB", "2MiB" (units B, KiB, MiB, GiB; KB, MB, GB mean the same
// powers of 1024).
func sizeValue(sc *scope, attr *hcl.Attribute) (int64, bool) {
	v, d := attr.Expr.Value(sc.ctx)
	sc.add(d...)
	if d.HasErrors() {
		return 0, false
	}
	bad := func() (int64, bool) {
		sc.errorf(attr.Expr.Range(), "Invalid size",
			"%s must be a number of bytes or a string such as \"2MiB\" (units B, KiB, MiB, GiB).", attr.Name)
		return 0, false
	}
	switch {
	case v.IsNull() || !v.IsKnown():
		return bad()
	case v.Type() == cty.Number:
		bf := v.AsBigFloat()
		if !bf.IsInt() {
			return bad()
		}
		n, _ := bf.Int64()
		return n, true
	case v.Type() == cty.String:
		n, ok := ParseSize(v.AsString())
		if !ok {
			return bad()
		}
		return n, true
	}
	return bad()
}

// ParseSize parses "123", "512KiB", "2MiB", "1GiB" (also KB, MB, GB with
// the same meaning, and lower case), with optional space before the unit.
func ParseSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 12 {
		return 0, false
	}
	var n int64
	for _, c := range s[:i] {
		n = n*10 + int64(c-'0')
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
		"mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[strings.ToLower(strings.TrimSpace(s[i:]))]
	if mult == 0 || n > (1<<62)/mult {
		return 0, false
	}
	return n * mult, true
}

// FormatBytes writes n as "2 MiB", "256 KiB" or "123 bytes".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkConfigSize reports a decoded worker config that is too large for
// the plugin: a top-level value over MaxConfigValueBytes, or the whole over
// MaxConfigBytes, each encoded as the JSON the plugin gets. attrs locate
// the attributes (for the diagnostics' subjects); whole is the subject for
// the whole config. Values are never quoted: they may be secrets.
func checkConfigSize(schema sdk.Schema, val cty.Value, attrs map[string]*hcl.Attribute, whole hcl.Range) hcl.Diagnostics {
	if val == cty.NilVal || val.IsNull() || !val.IsWhollyKnown() || !val.Type().IsObjectType() {
		return nil
	}
	var diags hcl.Diagnostics
	names := make([]string, 0, len(schema))
	for _, a := range schema {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !val.Type().HasAttribute(name) {
			continue
		}
		b, err := configJSON(val.GetAttr(name))
		if err != nil || len(b) <= MaxConfigValueBytes {
			continue
		}
		subject := whole
		if attr := attrs[name]; attr != nil {
			subject = attr.Expr.Range()
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Config value too large",
			Detail: fmt.Sprintf("The value of %q is %s as JSON; a config value may be at most %s (and a worker's whole config %s). Pass large data by reference instead, e.g. a file path the worker reads.",
				name, FormatBytes(int64(len(b))), FormatBytes(MaxConfigValueBytes), FormatBytes(MaxConfigBytes)),
			Subject: subject.Ptr(),
		})
	}
	if b, err := configJSON(val); err == nil && len(b) > MaxConfigBytes {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Config too large",
			Detail: fmt.Sprintf("The worker's config is %s as JSON; it may be at most %s (the plugin protocol's messages are limited to 4 MiB). Pass large data by reference instead, e.g. a file path the worker reads.",
				FormatBytes(int64(len(b))), FormatBytes(MaxConfigBytes)),
			Subject: whole.Ptr(),
		})
	}
	return diags
}

// Depth returns the nesting depth of a supervisor path: its number of
// segments ("root" is 1).
func Depth(path string) int { return strings.Count(strings.Trim(path, "/"), "/") + 1 }

func tooDeep(path string) bool { return Depth(path) > MaxDepth }

func depthDiagnostic(path string, r hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Supervisors nested too deep",
		Detail: fmt.Sprintf("Supervisor %q is %d levels deep; supervisors may nest at most %d levels (the root is level 1). Flatten the tree.",
			cutPath(path), Depth(path), MaxDepth),
		Subject: r.Ptr(),
	}
}

// cutPath shortens a long path for a message.
func cutPath(p string) string {
	if len(p) <= 120 {
		return p
	}
	return p[:50] + "..." + p[len(p)-50:]
}
