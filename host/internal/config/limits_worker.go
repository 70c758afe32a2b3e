package config

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/contain"
)

// The resource limits of a worker's processes: a `limits` block in a
// worker block, and in the host block as the default of every worker (HCL,
// control-started and hybrids' children). A worker's own attributes win
// over the host's, one by one:
//
//	limits {
//	  memory     = "256MiB"  # B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB: powers of 1000)
//	  pids       = 64        # processes and threads, together
//	  cpu        = 0.5       # share of one CPU
//	  open_files = 1024      # per process
//	}
var limitsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "memory"}, {Name: "pids"}, {Name: "cpu"}, {Name: "open_files"}},
}

// Bounds of the limits. The minimums keep a Go plugin able to start: its
// runtime alone has about ten threads (pids count threads), maps some
// megabytes, and go-plugin opens sockets and pipes.
const (
	MinMemoryLimit    = 16 << 20
	MaxMemoryLimit    = 1 << 50 // 1PiB
	MinPidsLimit      = 16
	MaxPidsLimit      = 4194304 // the kernel's pid_max ceiling
	MinCPULimit       = 0.01
	MaxCPULimit       = 1024
	MinOpenFilesLimit = 64
	MaxOpenFilesLimit = 1 << 20
)

// byteUnits are the units a memory size may have.
var byteUnits = []struct {
	name string
	mult int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize parses a memory size such as "256MiB", "1.5GiB" or
// "500MB" (a number, then one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB).
func ParseByteSize(text string) (int64, error) {
	s := strings.TrimSpace(text)
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(s, u.name)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" || strings.ContainsAny(num, "eExXpP_") || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a size: use a number and a unit, such as \"256MiB\" or \"1GiB\"", text)
		}
		if f <= 0 {
			return 0, fmt.Errorf("the size must be greater than zero, not %q", text)
		}
		v := f * float64(u.mult)
		if v > MaxMemoryLimit {
			return 0, fmt.Errorf("%q is more than %s", text, contain.FormatBytes(MaxMemoryLimit))
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("%q has no unit: use a number and one of B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB), such as \"256MiB\"", text)
}

// decodeLimits decodes a limits block into *l, leaving the attributes it
// does not set as they are.
func decodeLimits(sc *scope, b *hcl.Block, l *contain.Limits) {
	content, d := b.Body.Content(limitsSchema)
	sc.add(d...)
	a := content.Attributes
	if attr := a["memory"]; attr != nil {
		if v, ok := sc.value(attr, cty.String); ok {
			n, err := ParseByteSize(v.AsString())
			switch {
			case err != nil:
				sc.errorf(attr.Expr.Range(), "Invalid memory limit", "%s.", upperFirst(err.Error()))
			case n < MinMemoryLimit:
				sc.errorf(attr.Expr.Range(), "Invalid memory limit",
					"The memory limit %q is below the minimum of %s: a plugin process needs more than that to start.", v.AsString(), contain.FormatBytes(MinMemoryLimit))
			default:
				l.Memory = n
			}
		}
	}
	wholeLimit(sc, a["pids"], "it counts processes and threads together, and a Go plugin's runtime alone has about ten threads", MinPidsLimit, MaxPidsLimit, &l.Pids)
	wholeLimit(sc, a["open_files"], "it is the most open files of each process, and go-plugin itself needs a few", MinOpenFilesLimit, MaxOpenFilesLimit, &l.OpenFiles)
	if attr := a["cpu"]; attr != nil {
		if v, ok := sc.value(attr, cty.Number); ok {
			f, _ := v.AsBigFloat().Float64()
			if f < MinCPULimit || f > MaxCPULimit {
				sc.errorf(attr.Expr.Range(), "Invalid cpu limit",
					"The argument \"cpu\" is a share of one CPU, from %g to %d (0.5 is half a CPU, 2 two CPUs), not %s.", MinCPULimit, MaxCPULimit, v.AsBigFloat().Text('g', -1))
			} else {
				l.CPU = f
			}
		}
	}
}

// wholeLimit decodes a whole-number limit from min to max.
func wholeLimit(sc *scope, attr *hcl.Attribute, what string, minV, maxV int64, dst *int64) {
	if attr == nil {
		return
	}
	v, ok := sc.value(attr, cty.Number)
	if !ok {
		return
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if acc != big.Exact || !bf.IsInt() || i < minV || i > maxV {
		sc.errorf(attr.Expr.Range(), "Invalid "+attr.Name+" limit",
			"The argument %q must be a whole number from %d to %d, not %s: %s.", attr.Name, minV, maxV, bf.Text('g', -1), what)
		return
	}
	*dst = i
}

// mergeLimits returns the host's default limits with the worker's own set
// attributes in their place.
func mergeLimits(def, own contain.Limits) contain.Limits {
	out := def
	if own.Memory > 0 {
		out.Memory = own.Memory
	}
	if own.Pids > 0 {
		out.Pids = own.Pids
	}
	if own.CPU > 0 {
		out.CPU = own.CPU
	}
	if own.OpenFiles > 0 {
		out.OpenFiles = own.OpenFiles
	}
	return out
}

// limitsHash is the part of SpecHash for limits: nil (left out) when a
// worker has none, so that the hashes of workers without limits are those
// they had before limits existed.
func limitsHash(l contain.Limits) *limitsHashInput {
	if l.IsZero() {
		return nil
	}
	return &limitsHashInput{Memory: l.Memory, Pids: l.Pids, CPU: l.CPU, OpenFiles: l.OpenFiles}
}

type limitsHashInput struct {
	Memory    int64   `json:"memory"`
	Pids      int64   `json:"pids"`
	CPU       float64 `json:"cpu"`
	OpenFiles int64   `json:"open_files"`
}

// decodeHostLimits decodes the host block's limits block (at most one).
func decodeHostLimits(sc *scope, blocks hcl.Blocks, l *contain.Limits) {
	if b := sc.onlyBlock(blocks, "limits", "the host block"); b != nil {
		decodeLimits(sc, b, l)
	}
}

// onlyBlock returns the first block of type typ among blocks (nil if
// none), and reports every further one as a duplicate of it; where names
// the enclosing block in the message ("the host block").
func (sc *scope) onlyBlock(blocks hcl.Blocks, typ, where string) *hcl.Block {
	var first *hcl.Block
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		if first != nil {
			sc.errorf(b.DefRange, "Duplicate "+typ+" block",
				"Only one %q block is allowed in %s; the first is at %s.", typ, where, position(first.DefRange))
			continue
		}
		first = b
	}
	return first
}

// LimitWarnings are the warnings of `dynworkers validate` about the limits
// of cfg's workers that this machine (sup, from contain.Probe) cannot
// enforce as configured: one per distinct problem, at the first worker it
// concerns, naming the others. With no usable cgroup at all it also warns
// that a worker's processes that leave its process group outlive it.
func LimitWarnings(cfg *Config, sup contain.Support) hcl.Diagnostics {
	type warning struct {
		first   *Worker
		workers []string
	}
	var order []string
	seen := map[string]*warning{}
	cfg.Root.Walk(func(w *Worker) {
		for _, text := range sup.Warnings(w.Limits) {
			if seen[text] == nil {
				seen[text] = &warning{first: w}
				order = append(order, text)
			}
			seen[text].workers = append(seen[text].workers, w.Path)
		}
	})
	var diags hcl.Diagnostics
	for _, text := range order {
		wn := seen[text]
		detail := "Limit " + text + "."
		if len(wn.workers) > 1 {
			detail += fmt.Sprintf(" It concerns %d workers: %s.", len(wn.workers), strings.Join(wn.workers, ", "))
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Limit not enforced on this machine",
			Detail:   detail,
			Subject:  wn.first.Range.Ptr(),
		})
	}
	if text := sup.ContainmentWarning(); text != "" {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Workers not contained",
			Detail:   upperFirst(text) + ".",
		})
	}
	return diags
}
