package sdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/dynworkers/dynworkers/sdk"
)

// ChildCall is one call a worker made to its Children.
type ChildCall struct {
	// Op is "start", "stop" or "list".
	Op string
	// Name is the child's name (start, stop).
	Name string
	// Spec is the spec of a start.
	Spec sdk.ChildSpec
}

// Children is the sdk.Children of an Env: it records the calls and keeps
// the children in memory, answering as the host does: a start of a child
// of the same name and spec is "unchanged", of another spec "replaced";
// stopping a child that does not exist fails with sdk.ErrChildNotFound.
// Children never run. Fail makes the calls fail.
type Children struct {
	mu      sync.Mutex
	calls   []ChildCall
	running map[string]sdk.ChildSpec
	order   []string
	pids    map[string]int
	lastPid int
	fail    func(ChildCall) error
}

func newChildren() *Children {
	return &Children{running: map[string]sdk.ChildSpec{}, pids: map[string]int{}, lastPid: 10000}
}

// Fail makes every later call for which f returns an error fail with it
// (nil f: no more failures). The call is recorded either way.
func (c *Children) Fail(f func(ChildCall) error) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

// Calls returns the calls made so far, in order.
func (c *Children) Calls() []ChildCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Running returns the specs of the children that run, by name.
func (c *Children) Running() map[string]sdk.ChildSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.running)
}

func (c *Children) call(call ChildCall) error {
	c.calls = append(c.calls, call)
	if c.fail != nil {
		return c.fail(call)
	}
	return nil
}

func (c *Children) StartChild(_ context.Context, spec sdk.ChildSpec) (sdk.ChildInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.call(ChildCall{Op: "start", Name: spec.Name, Spec: spec}); err != nil {
		return sdk.ChildInfo{}, err
	}
	if spec.Name == "" || spec.Class == "" {
		return sdk.ChildInfo{}, fmt.Errorf("StartChild %q: %w: a child needs a name and a class", spec.Name, sdk.ErrInvalidConfig)
	}
	outcome := sdk.ChildStarted
	if old, ok := c.running[spec.Name]; ok {
		outcome = sdk.ChildReplaced
		if sameSpec(old, spec) {
			outcome = sdk.ChildUnchanged
		}
	} else {
		c.order = append(c.order, spec.Name)
	}
	if outcome != sdk.ChildUnchanged {
		c.lastPid++
		c.pids[spec.Name] = c.lastPid
	}
	c.running[spec.Name] = spec
	info := c.info(spec.Name)
	info.Outcome = outcome
	return info, nil
}

func (c *Children) info(name string) sdk.ChildInfo {
	spec := c.running[name]
	return sdk.ChildInfo{Name: name, Class: spec.Class, State: "running", Pid: c.pids[name]}
}

// childConfigJSON is a child's config as the SDK sends it, compacted.
func childConfigJSON(cfg any) string {
	var b []byte
	switch v := cfg.(type) {
	case nil:
		return "{}"
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return string(b)
	}
	out, _ := json.Marshal(m) // sorted keys
	return string(out)
}

func sameSpec(a, b sdk.ChildSpec) bool {
	ja, jb := childConfigJSON(a.Config), childConfigJSON(b.Config)
	ra, rb := a.Restart, b.Restart
	if ra == "" {
		ra = "permanent"
	}
	if rb == "" {
		rb = "permanent"
	}
	return a.Class == b.Class && ra == rb && ja == jb
}

func (c *Children) StopChild(_ context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.call(ChildCall{Op: "stop", Name: name}); err != nil {
		return err
	}
	if _, ok := c.running[name]; !ok {
		return fmt.Errorf("StopChild %q: %w", name, sdk.ErrChildNotFound)
	}
	delete(c.running, name)
	delete(c.pids, name)
	c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == name })
	return nil
}

func (c *Children) ListChildren(context.Context) ([]sdk.ChildInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.call(ChildCall{Op: "list"}); err != nil {
		return nil, err
	}
	out := make([]sdk.ChildInfo, 0, len(c.order))
	for _, n := range c.order {
		out = append(out, c.info(n))
	}
	return out, nil
}
