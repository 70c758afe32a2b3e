package tree

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// fakeInstance runs until stopped.
type fakeInstance struct{ done chan struct{} }

func (f *fakeInstance) Done() <-chan struct{} { return f.done }
func (f *fakeInstance) ExitErr() error        { return nil }
func (f *fakeInstance) Stop(context.Context) error {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	return nil
}

// newFakeTree makes a Tree over the configuration root whose workers are
// fake instances, with a real state store in a temporary directory.
func newFakeTree(t *testing.T, root *config.Supervisor) (*Tree, *state.Store) {
	t.Helper()
	tr, store := newFakeTreeFrom(t, root, nil)
	tr.Start(context.Background())
	return tr, store
}

// newFakeTreeFrom is newFakeTree restoring st, not started yet.
func newFakeTreeFrom(t *testing.T, root *config.Supervisor, st *state.State) (*Tree, *state.Store) {
	t.Helper()
	store, err := state.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st != nil {
		if err := store.Save(st); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := New(Options{
		Store: store,
		State: st,
		Launch: func(context.Context, *config.Worker, pluginproc.ChildHost) (supervise.Instance, error) {
			return &fakeInstance{done: make(chan struct{})}, nil
		},
		Resolve: func(name, class string, _ json.RawMessage, sup string) (*config.Worker, *control.Error) {
			if class != "echo" {
				return nil, control.Errorf(control.CodeUnknownClass, "no class %q", class)
			}
			return config.NewWorker(name, sup, class, nil, cty.EmptyObjectVal), nil
		},
	}, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Stop(context.Background()) })
	return tr, store
}

func persistedNames(t *testing.T, store *state.Store) []string {
	t.Helper()
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range st.Workers {
		out = append(out, w.Name)
	}
	return out
}

func workerNames(tr *Tree) []string {
	var out []string
	for _, w := range tr.Workers() {
		out = append(out, w.Name)
	}
	return out
}

// A start or stop whose state file cannot be written fails and changes
// nothing: not the tree, not the file, not what runs.
func TestFailedPersistChangesNothing(t *testing.T) {
	tr, store := newFakeTree(t, sup("root", w("hcl")))
	ctx := context.Background()
	echo := func(name string) control.WorkerSpec {
		return control.WorkerSpec{Name: name, Class: "echo"}
	}
	if r, err := tr.StartWorker(ctx, echo("a")); err != nil || r.Action != "started" || r.State != "running" {
		t.Fatalf("start a = %+v, %v", r, err)
	}
	before := tr.Sizes()

	// A directory where the state file goes: every write fails.
	if err := os.Remove(store.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(store.Path(), "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.StartWorker(ctx, echo("b")); err == nil {
		t.Fatal("start b succeeded with an unwritable state file")
	}
	if err := tr.StopWorker(ctx, "a"); err == nil {
		t.Fatal("stop a succeeded with an unwritable state file")
	}
	if _, err := tr.StartSupervisor(ctx, control.SupervisorSpec{Name: "s"}); err == nil {
		t.Fatal("start_supervisor succeeded with an unwritable state file")
	}
	if got := workerNames(tr); !slices.Equal(got, []string{"hcl", "a"}) {
		t.Errorf("workers = %v, want hcl and a", got)
	}
	if wi, _ := tr.Worker("a"); wi.State != "running" {
		t.Errorf("a = %+v, want it still running", wi.Worker)
	}
	if after := tr.Sizes(); !mapsEqual(after, before) {
		t.Errorf("sizes = %v, want %v", after, before)
	}

	// The disk is back: the same requests succeed.
	if err := os.RemoveAll(store.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.StartWorker(ctx, echo("b")); err != nil {
		t.Fatal(err)
	}
	if got := persistedNames(t, store); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("persisted %v, want a and b", got)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A bad start (unknown class, bad name, supervisor missing) is refused
// with its code and changes nothing.
func TestBadStartChangesNothing(t *testing.T) {
	tr, store := newFakeTree(t, sup("root", w("hcl")))
	ctx := context.Background()
	before := tr.Sizes()
	cases := []struct {
		spec control.WorkerSpec
		code control.Code
	}{
		{control.WorkerSpec{Name: "x", Class: "nope"}, control.CodeUnknownClass},
		{control.WorkerSpec{Name: "../../bin/sh", Class: "echo"}, control.CodeInvalidConfig},
		{control.WorkerSpec{Name: "x", Class: "echo", Supervisor: "missing"}, control.CodeNotFound},
		{control.WorkerSpec{Name: "hcl", Class: "echo", Replace: true}, control.CodeConflict},
		{control.WorkerSpec{Name: "root", Class: "echo"}, control.CodeInvalidConfig}, // reserved, whatever exists
	}
	for _, c := range cases {
		_, err := tr.StartWorker(ctx, c.spec)
		var cerr *control.Error
		if !errors.As(err, &cerr) || cerr.Code != c.code {
			t.Errorf("StartWorker(%+v) = %v, want %s", c.spec, err, c.code)
		}
	}
	if after := tr.Sizes(); !mapsEqual(after, before) {
		t.Errorf("sizes = %v, want %v", after, before)
	}
	if got := persistedNames(t, store); len(got) != 0 {
		t.Errorf("persisted %v", got)
	}
}

// A hybrid's children: started through its ChildHost, refused to control
// messages, and gone with the incarnation they belong to.
func TestHybridChildrenBelongToTheirOwner(t *testing.T) {
	tr, _ := newFakeTree(t, sup("root", w("owner")))
	ctx := context.Background()
	before := tr.Sizes()
	ch, ok := tr.ChildHost("owner")
	if !ok {
		t.Fatal("no ChildHost")
	}
	if _, outcome, err := ch.StartChild(ctx, pluginproc.ChildRequest{Name: "k", Class: "echo"}); err != nil || outcome != pluginproc.ChildStarted {
		t.Fatalf("StartChild = %s, %v", outcome, err)
	}
	wi, ok := tr.Worker("owner.k")
	if !ok || wi.Owner != "owner" || wi.Supervisor != "root/owner" || wi.State != "running" {
		t.Fatalf("owner.k = %+v", wi.Worker)
	}
	for what, err := range map[string]error{
		"replace": func() error {
			_, err := tr.StartWorker(ctx, control.WorkerSpec{Name: "owner.k", Class: "echo", Replace: true})
			return err
		}(),
		"stop":    tr.StopWorker(ctx, "owner.k"),
		"restart": tr.RestartWorker(ctx, "owner.k"),
		"start under its supervisor": func() error {
			_, err := tr.StartWorker(ctx, control.WorkerSpec{Name: "intruder", Class: "echo", Supervisor: "root/owner"})
			return err
		}(),
	} {
		var cerr *control.Error
		if !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
			t.Errorf("%s = %v, want a conflict", what, err)
		}
	}
	// The owner's restart ends its incarnation: the child goes with it.
	if err := tr.RestartWorker(ctx, "owner"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Worker("owner.k"); ok {
		t.Error("owner.k outlived its owner's incarnation")
	}
	if after := tr.Sizes(); !mapsEqual(after, before) {
		t.Errorf("sizes = %v, want %v", after, before)
	}
}

// Restoring the persisted workers leaves alone those that control messages
// changed meanwhile: one replaced is not started a second time, one
// stopped is not started again.
func TestRestoreLeavesWhatControlChanged(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &state.State{Version: state.Version, Workers: []state.Worker{
		{Name: "replaced", Class: "echo", Supervisor: "root", Config: json.RawMessage(`{}`), CreatedAt: created},
		{Name: "kept", Class: "echo", Supervisor: "root", Config: json.RawMessage(`{}`), CreatedAt: created},
	}}
	st.Workers = append(st.Workers, state.Worker{Name: "stopped", Class: "echo", Supervisor: "root", CreatedAt: created},
		state.Worker{Name: "orphan", Class: "gone", Supervisor: "root", CreatedAt: created})
	tr, store := newFakeTreeFrom(t, sup("root", w("hcl")), st)
	ctx := context.Background()
	// A stop of a persisted worker before the host restored it forgets
	// it: it is not started afterwards.
	if err := tr.StopWorker(ctx, "stopped"); err != nil {
		t.Fatalf("stop before restore = %v", err)
	}
	// A control start of a persisted name before the host restored it:
	// that start wins.
	if r, err := tr.StartWorker(ctx, control.WorkerSpec{Name: "replaced", Class: "echo"}); err != nil || r.Action != "started" {
		t.Fatalf("start = %+v, %v", r, err)
	}
	if n := tr.Start(ctx); n != 2 { // hcl and kept
		t.Errorf("Start started %d workers, want 2", n)
	}
	if got := workerNames(tr); !slices.Equal(got, []string{"hcl", "replaced", "kept"}) {
		t.Errorf("workers = %v", got)
	}
	if got := persistedNames(t, store); !slices.Equal(got, []string{"replaced", "kept", "orphan"}) {
		t.Errorf("persisted = %v, want the orphan (class gone) kept", got)
	}
	// A stop of the record that could not be restored removes it.
	if err := tr.StopWorker(ctx, "orphan"); err != nil {
		t.Fatalf("stop of the orphan = %v", err)
	}
	if got := persistedNames(t, store); !slices.Equal(got, []string{"replaced", "kept"}) {
		t.Errorf("persisted = %v", got)
	}
	var cerr *control.Error
	if err := tr.StopWorker(ctx, "orphan"); !errors.As(err, &cerr) || cerr.Code != control.CodeNotFound {
		t.Errorf("second stop = %v, want not_found", err)
	}
}
