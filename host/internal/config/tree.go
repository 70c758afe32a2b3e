package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// rawSupervisor and rawWorker are the tree as Parse leaves it: everything
// decoded but the classes and the worker config bodies.
type rawSupervisor struct {
	sup      Supervisor // Children is left empty
	children []rawNode
}

type rawNode struct {
	worker *rawWorker
	sup    *rawSupervisor
}

type rawWorker struct {
	w          Worker // Class, Config and Schema are left empty
	class      string // as written; "" after an error
	classRange hcl.Range
	config     *hcl.Block // nil when absent
	ctx        *hcl.EvalContext
}

var supervisorSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "strategy"}, {Name: "intensity"}, {Name: "period"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "worker", LabelNames: []string{"name"}},
		{Type: "supervisor", LabelNames: []string{"name"}},
	},
}

var workerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "class", Required: true},
		{Name: "restart"},
		{Name: "start_timeout"},
		{Name: "shutdown_timeout"},
		{Name: "health_interval"},
		{Name: "health_timeout"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "backoff"}, {Type: "config"}, {Type: "limits"}},
}

var backoffSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "initial"}, {Name: "max"}, {Name: "reset_after"}},
}

// tree builds the supervisor tree from the top-level blocks of all files.
// The root is implicit (named "root", holding the top-level workers) unless
// there is a top-level supervisor block; then it must be the only one, be
// named "root", and no worker may be at the top level.
func (m *merger) tree(firstFile string) {
	t := &treeBuilder{diags: m.diags, names: map[string]declared{}}
	if len(m.supervisors) == 0 {
		root := &rawSupervisor{sup: defaultSupervisor(RootName, RootName,
			hcl.Range{Filename: firstFile, Start: hcl.InitialPos, End: hcl.InitialPos})}
		t.names[RootName] = declared{kind: "supervisor", implicit: true}
		for _, w := range m.workers {
			root.children = append(root.children, rawNode{worker: t.worker(w.sc, w.block, RootName)})
		}
		m.f.root = root
		return
	}
	first := m.supervisors[0]
	for _, s := range m.supervisors[1:] {
		t.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Duplicate root supervisor",
			Detail: fmt.Sprintf("The root supervisor is already declared at %s; there can be only one top-level supervisor block. Nest this one inside it.",
				position(first.block.DefRange)),
			Subject: s.block.DefRange.Ptr(),
		})
	}
	for _, w := range m.workers {
		t.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Worker outside the root supervisor",
			Detail: fmt.Sprintf("The root supervisor is declared explicitly at %s, so every worker must be inside it. Move this worker into it, or remove the supervisor block so that top-level workers join an implicit root.",
				position(first.block.DefRange)),
			Subject: w.block.DefRange.Ptr(),
		})
	}
	m.f.root = t.supervisor(first.sc, first.block, "")
}

func defaultSupervisor(name, path string, r hcl.Range) Supervisor {
	return Supervisor{
		Name:      name,
		Path:      path,
		Strategy:  DefaultStrategy,
		Intensity: DefaultIntensity,
		Period:    DefaultPeriod,
		Range:     r,
	}
}

type treeBuilder struct {
	diags *hcl.Diagnostics
	names map[string]declared
}

type declared struct {
	kind     string // "worker" or "supervisor"
	at       hcl.Range
	implicit bool // the implicit root
}

func (t *treeBuilder) add(d ...*hcl.Diagnostic) { *t.diags = append(*t.diags, d...) }

// declare checks a name and that it is unique in the host.
func (t *treeBuilder) declare(kind, name string, r hcl.Range) {
	validate := ValidateName
	if kind == "worker" {
		validate = ValidateWorkerName
	}
	if err := validate(name); err != nil {
		t.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid " + kind + " name",
			Detail:   fmt.Sprintf("The name %q is not valid: %s.", name, err),
			Subject:  r.Ptr(),
		})
		return
	}
	prev, ok := t.names[name]
	if !ok {
		t.names[name] = declared{kind: kind, at: r}
		return
	}
	summary := "Duplicate name"
	if prev.kind == kind {
		summary = "Duplicate " + kind + " name"
	}
	where := "at " + position(prev.at)
	if prev.implicit {
		where = "implicitly: it is the root supervisor"
	}
	t.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail: fmt.Sprintf("A %s named %q is already declared %s. Worker and supervisor names must be unique in the host.",
			prev.kind, name, where),
		Subject: r.Ptr(),
	})
}

// supervisor decodes a supervisor block; parentPath is "" for the root.
func (t *treeBuilder) supervisor(sc *scope, b *hcl.Block, parentPath string) *rawSupervisor {
	name, nameRange := b.Labels[0], b.LabelRanges[0]
	path := parentPath + "/" + name
	if parentPath == "" {
		path = name
		if name != RootName {
			t.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid root supervisor name",
				Detail: fmt.Sprintf("The top-level supervisor is the host's root and must be named %q, not %q, so that paths such as %q mean the same on every host.",
					RootName, name, RootName+"/worker"),
				Subject: nameRange.Ptr(),
			})
			path = RootName
		}
	}
	t.declare("supervisor", name, nameRange)
	rs := &rawSupervisor{sup: defaultSupervisor(name, path, b.DefRange)}
	if tooDeep(path) {
		t.add(depthDiagnostic(path, nameRange))
		return rs // its children are not looked at: each would be too deep too
	}

	content, d := b.Body.Content(supervisorSchema)
	sc.add(d...)
	sc.enum(content.Attributes["strategy"], "strategy", Strategies, &rs.sup.Strategy)
	sc.wholeNumber(content.Attributes["intensity"], &rs.sup.Intensity)
	sc.duration(content.Attributes["period"], &rs.sup.Period)
	for _, cb := range content.Blocks {
		switch cb.Type {
		case "worker":
			rs.children = append(rs.children, rawNode{worker: t.worker(sc, cb, path)})
		case "supervisor":
			rs.children = append(rs.children, rawNode{sup: t.supervisor(sc, cb, path)})
		}
	}
	return rs
}

// worker decodes a worker block but its config body.
func (t *treeBuilder) worker(sc *scope, b *hcl.Block, parentPath string) *rawWorker {
	name := b.Labels[0]
	t.declare("worker", name, b.LabelRanges[0])
	rw := &rawWorker{
		w: Worker{
			Name:            name,
			Path:            parentPath + "/" + name,
			Restart:         DefaultRestart,
			StartTimeout:    DefaultStartTimeout,
			ShutdownTimeout: DefaultShutdownTimeout,
			HealthInterval:  DefaultHealthInterval,
			HealthTimeout:   DefaultHealthTimeout,
			Backoff:         Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax, ResetAfter: DefaultBackoffReset},
			Range:           b.DefRange,
		},
		ctx: sc.ctx,
	}

	content, d := b.Body.Content(workerSchema)
	for _, diag := range d {
		if diag.Summary == "Missing required argument" {
			diag.Subject = b.DefRange.Ptr()
		}
	}
	sc.add(d...)
	a := content.Attributes
	if attr := a["class"]; sc.str(attr, &rw.class) {
		rw.classRange = attr.Expr.Range()
		if rw.class == "" {
			sc.errorf(attr.Expr.Range(), "Invalid class", "The class must not be empty.")
		}
	}
	sc.enum(a["restart"], "restart policy", Restarts, &rw.w.Restart)
	sc.duration(a["start_timeout"], &rw.w.StartTimeout)
	sc.duration(a["shutdown_timeout"], &rw.w.ShutdownTimeout)
	sc.duration(a["health_interval"], &rw.w.HealthInterval)
	sc.duration(a["health_timeout"], &rw.w.HealthTimeout)

	var seen = map[string]*hcl.Block{}
	for _, cb := range content.Blocks {
		if prev := seen[cb.Type]; prev != nil {
			sc.errorf(cb.DefRange, "Duplicate "+cb.Type+" block",
				"A worker can have only one %s block; the first is at %s.", cb.Type, position(prev.DefRange))
			continue
		}
		seen[cb.Type] = cb
		switch cb.Type {
		case "backoff":
			decodeBackoff(sc, cb, &rw.w.Backoff)
		case "config":
			rw.config = cb
		case "limits":
			decodeLimits(sc, cb, &rw.w.Limits) // limits_worker.go
		}
	}
	return rw
}

func decodeBackoff(sc *scope, b *hcl.Block, bo *Backoff) {
	content, d := b.Body.Content(backoffSchema)
	sc.add(d...)
	a := content.Attributes
	before := len(*sc.diags)
	sc.duration(a["initial"], &bo.Initial)
	sc.duration(a["max"], &bo.Max)
	sc.duration(a["reset_after"], &bo.ResetAfter)
	if len(*sc.diags) > before || bo.Max >= bo.Initial {
		return
	}
	subject := b.DefRange
	if attr := a["max"]; attr != nil {
		subject = attr.Expr.Range()
	} else if attr := a["initial"]; attr != nil {
		subject = attr.Expr.Range()
	}
	sc.errorf(subject, "Invalid backoff", "The backoff max (%s) must not be smaller than its initial delay (%s).", bo.Max, bo.Initial)
}
