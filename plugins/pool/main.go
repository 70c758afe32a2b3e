// Command pool is a first-party dynworkers plugin offering the hybrid class
// "dynworkers.pool": a worker that keeps size child workers of one class
// running, each in its own plugin process under the host's supervision.
// See README.md.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dynworkers/dynworkers/sdk"
)

// Config is the pool's config block.
type Config struct {
	Class   string            `config:"class,required" help:"the children's class (a name or an alias)"`
	Size    int               `config:"size,required" help:"how many children to run, from 0 to 1000"`
	Config  map[string]string `config:"config" default:"{}" help:"the children's config; the host converts the values by the child class's schema"`
	Restart string            `config:"restart" default:"permanent" help:"the children's restart type: permanent, transient or temporary"`
}

// MaxSize is the largest size a pool accepts. Each child is a process of
// its own; the host bounds children further (input_limits.children_per_worker
// and input_limits.children), so a size the host would refuse fails the
// pool's start with the host's error.
const MaxSize = 1000

// Class is the pool class.
var Class = sdk.Class{
	Name:        "dynworkers.pool",
	Description: "Keeps size child workers of one class running (a hybrid worker).",
	Version:     "1.0.0",
	New:         sdk.Construct(newPool),
}

func main() { sdk.Serve(Class) }

func newPool(cfg Config) (sdk.Worker, error) {
	switch {
	case cfg.Class == "":
		return nil, sdk.InvalidConfig("class must name the children's class")
	case cfg.Size < 0:
		return nil, sdk.InvalidConfig("size must be 0 or more, got %d", cfg.Size)
	case cfg.Size > MaxSize:
		// Refused before any child is started: nothing is forked.
		return nil, sdk.InvalidConfig("size must be at most %d (the pool's limit), got %d", MaxSize, cfg.Size)
	}
	switch cfg.Restart {
	case "permanent", "transient", "temporary":
	default:
		return nil, sdk.InvalidConfig("restart %q is not one of permanent, transient, temporary", cfg.Restart)
	}
	if cfg.Config == nil {
		cfg.Config = map[string]string{}
	}
	return &Pool{cfg: cfg}, nil
}

// Pool is a worker of the pool class.
type Pool struct {
	cfg Config

	mu   sync.Mutex
	env  *sdk.Env
	last Report
}

// Report says what a reconcile did, by child name.
type Report struct {
	Started   []string `json:"started"`
	Unchanged []string `json:"unchanged"`
	Replaced  []string `json:"replaced"`
	Stopped   []string `json:"stopped"`
}

// Start makes the children match the config and returns once all of them
// have started, or with the first error (the host then treats the start as
// failed: for good if the host found the child class or config invalid).
func (p *Pool) Start(ctx context.Context, env *sdk.Env) error {
	p.mu.Lock()
	p.env = env
	p.mu.Unlock()
	r, err := reconcile(ctx, env.Children(), p.cfg)
	p.mu.Lock()
	p.last = r
	p.mu.Unlock()
	if err != nil {
		return err
	}
	env.Logger().Info("pool ready", "class", p.cfg.Class, "size", p.cfg.Size,
		"started", len(r.Started), "unchanged", len(r.Unchanged), "replaced", len(r.Replaced), "stopped", len(r.Stopped))
	return nil
}

// Stop does nothing: the host stops the children of a hybrid that ends.
func (p *Pool) Stop(context.Context) error { return nil }

// Status reports the pool's size and its children as the host sees them.
func (p *Pool) Status(ctx context.Context) (map[string]any, error) {
	p.mu.Lock()
	env, last := p.env, p.last
	p.mu.Unlock()
	out := map[string]any{
		"class":          p.cfg.Class,
		"size":           p.cfg.Size,
		"last_reconcile": last,
	}
	if env == nil {
		return out, nil
	}
	children, err := env.Children().ListChildren(ctx)
	if err != nil {
		out["children_error"] = err.Error()
		return out, nil
	}
	running := 0
	for _, c := range children {
		if c.State == "running" {
			running++
		}
	}
	out["children"] = children
	out["running"] = running
	return out, nil
}

// childName is the short name of the i-th child (1-based). The host derives
// the child's worker name from it and the pool's name.
func childName(i int) string { return strconv.Itoa(i) }

// reconcile stops the children the pool does not want (any name other than
// 1..size) and then starts 1..size in order. Starting a child that exists
// is left to the host, which leaves it alone when its class, config and
// restart are those asked for and replaces it otherwise; so a pool whose
// config changed replaces its children one by one. It stops at the first
// error.
func reconcile(ctx context.Context, c sdk.Children, cfg Config) (Report, error) {
	var r Report
	have, err := c.ListChildren(ctx)
	if err != nil {
		return r, fmt.Errorf("listing the pool's children: %w", err)
	}
	want := make(map[string]bool, cfg.Size)
	for i := 1; i <= cfg.Size; i++ {
		want[childName(i)] = true
	}
	var extra []string
	for _, ch := range have {
		if !want[ch.Name] {
			extra = append(extra, ch.Name)
		}
	}
	slices.SortFunc(extra, compareNames)
	for _, name := range extra {
		if err := c.StopChild(ctx, name); err != nil && !errors.Is(err, sdk.ErrChildNotFound) {
			return r, fmt.Errorf("stopping the pool's child %q: %w", name, err)
		}
		r.Stopped = append(r.Stopped, name)
	}
	for i := 1; i <= cfg.Size; i++ {
		name := childName(i)
		info, err := c.StartChild(ctx, sdk.ChildSpec{Name: name, Class: cfg.Class, Config: cfg.Config, Restart: cfg.Restart})
		if err != nil {
			return r, err
		}
		switch info.Outcome {
		case sdk.ChildUnchanged:
			r.Unchanged = append(r.Unchanged, name)
		case sdk.ChildReplaced:
			r.Replaced = append(r.Replaced, name)
		default:
			r.Started = append(r.Started, name)
		}
	}
	return r, nil
}

// compareNames orders child names numerically where both are numbers.
func compareNames(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(x, y)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}
