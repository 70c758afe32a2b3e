package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// fakeChildren is an sdk.Children that keeps children in memory, with the
// host's semantics: StartChild of an existing child with the same spec is
// "unchanged", with another spec "replaced".
type fakeChildren struct {
	mu       sync.Mutex
	children map[string]sdk.ChildSpec
	calls    []string // "start 1", "stop 3", "list"
	failOn   string   // StartChild of this name fails
	failErr  error
}

func newFake(existing map[string]sdk.ChildSpec) *fakeChildren {
	if existing == nil {
		existing = map[string]sdk.ChildSpec{}
	}
	return &fakeChildren{children: existing}
}

func (f *fakeChildren) StartChild(_ context.Context, spec sdk.ChildSpec) (sdk.ChildInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start "+spec.Name)
	if spec.Name == f.failOn {
		return sdk.ChildInfo{}, f.failErr
	}
	outcome := sdk.ChildStarted
	if old, ok := f.children[spec.Name]; ok {
		outcome = sdk.ChildReplaced
		if old.Class == spec.Class && fmt.Sprint(old.Config) == fmt.Sprint(spec.Config) && old.Restart == spec.Restart {
			outcome = sdk.ChildUnchanged
		}
	}
	f.children[spec.Name] = spec
	return sdk.ChildInfo{Name: spec.Name, Class: spec.Class, State: "running", Pid: 100, Outcome: outcome}, nil
}

func (f *fakeChildren) StopChild(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+name)
	if _, ok := f.children[name]; !ok {
		return fmt.Errorf("StopChild %q: no child %s: %w", name, name, sdk.ErrChildNotFound)
	}
	delete(f.children, name)
	return nil
}

func (f *fakeChildren) ListChildren(context.Context) ([]sdk.ChildInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "list")
	var out []sdk.ChildInfo
	for name, spec := range f.children {
		out = append(out, sdk.ChildInfo{Name: name, Class: spec.Class, State: "running"})
	}
	slices.SortFunc(out, func(a, b sdk.ChildInfo) int { return compareNames(a.Name, b.Name) })
	return out, nil
}

func (f *fakeChildren) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.children {
		out = append(out, n)
	}
	slices.SortFunc(out, compareNames)
	return out
}

func spec(name, class string, cfg map[string]string) sdk.ChildSpec {
	return sdk.ChildSpec{Name: name, Class: class, Config: cfg, Restart: "permanent"}
}

func TestReconcile(t *testing.T) {
	cfgA := map[string]string{"interval": "1h"}
	cfgB := map[string]string{"interval": "2h"}
	tests := []struct {
		name      string
		existing  map[string]sdk.ChildSpec
		size      int
		calls     []string
		want      Report
		remaining []string
	}{
		{
			name:      "fresh",
			size:      3,
			calls:     []string{"list", "start 1", "start 2", "start 3"},
			want:      Report{Started: []string{"1", "2", "3"}},
			remaining: []string{"1", "2", "3"},
		},
		{
			name:      "restart finds its children",
			existing:  map[string]sdk.ChildSpec{"1": spec("1", "echo", cfgA), "2": spec("2", "echo", cfgA)},
			size:      2,
			calls:     []string{"list", "start 1", "start 2"},
			want:      Report{Unchanged: []string{"1", "2"}},
			remaining: []string{"1", "2"},
		},
		{
			name: "shrink and grow",
			existing: map[string]sdk.ChildSpec{
				"1": spec("1", "echo", cfgA), "2": spec("2", "echo", cfgB), "10": spec("10", "echo", cfgA),
				"4": spec("4", "echo", cfgA), "stray": spec("stray", "other", nil),
			},
			size:      3,
			calls:     []string{"list", "stop 4", "stop 10", "stop stray", "start 1", "start 2", "start 3"},
			want:      Report{Started: []string{"3"}, Unchanged: []string{"1"}, Replaced: []string{"2"}, Stopped: []string{"4", "10", "stray"}},
			remaining: []string{"1", "2", "3"},
		},
		{
			name:     "size 0 stops all",
			existing: map[string]sdk.ChildSpec{"1": spec("1", "echo", cfgA), "2": spec("2", "other", cfgA)},
			size:     0,
			calls:    []string{"list", "stop 1", "stop 2"},
			want:     Report{Stopped: []string{"1", "2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.existing)
			r, err := reconcile(context.Background(), f, Config{Class: "echo", Size: tt.size, Config: cfgA, Restart: "permanent"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.calls, tt.calls) {
				t.Errorf("calls %v, want %v", f.calls, tt.calls)
			}
			if fmt.Sprint(r) != fmt.Sprint(tt.want) {
				t.Errorf("report %+v, want %+v", r, tt.want)
			}
			if got := f.names(); !slices.Equal(got, tt.remaining) {
				t.Errorf("children %v, want %v", got, tt.remaining)
			}
			for _, n := range f.names() {
				if s := f.children[n]; s.Class != "echo" || fmt.Sprint(s.Config) != fmt.Sprint(cfgA) || s.Restart != "permanent" {
					t.Errorf("child %s runs %+v", n, s)
				}
			}
		})
	}
}

func TestReconcileStopsAtFirstError(t *testing.T) {
	f := newFake(nil)
	f.failOn = "2"
	f.failErr = fmt.Errorf(`StartChild "2": unknown class "nope": %w`, sdk.ErrInvalidConfig)
	_, err := reconcile(context.Background(), f, Config{Class: "nope", Size: 3, Restart: "permanent"})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), `unknown class "nope"`) {
		t.Errorf("reconcile = %v, want the host's invalid-config error", err)
	}
	if want := []string{"list", "start 1", "start 2"}; !slices.Equal(f.calls, want) {
		t.Errorf("calls %v, want %v", f.calls, want)
	}
}

func TestReconcileIgnoresChildGoneMeanwhile(t *testing.T) {
	f := &goneChildren{fakeChildren: newFake(nil)}
	r, err := reconcile(context.Background(), f, Config{Class: "echo", Size: 1, Restart: "permanent"})
	if err != nil || !slices.Equal(r.Stopped, []string{"7"}) || !slices.Equal(r.Started, []string{"1"}) {
		t.Errorf("reconcile = %+v, %v", r, err)
	}
}

// goneChildren lists a child "7" that is gone by the time it is stopped.
type goneChildren struct{ *fakeChildren }

func (g *goneChildren) ListChildren(ctx context.Context) ([]sdk.ChildInfo, error) {
	return []sdk.ChildInfo{{Name: "7", Class: "echo"}}, nil
}

func TestConfig(t *testing.T) {
	w, err := sdktest.NewWorker(Class, `{"class":"echo","size":2}`)
	if err != nil {
		t.Fatal(err)
	}
	p := w.(*Pool)
	if p.cfg.Restart != "permanent" || p.cfg.Config == nil || len(p.cfg.Config) != 0 || p.cfg.Size != 2 {
		t.Errorf("defaults: %+v", p.cfg)
	}
	for cfg, want := range map[string]string{
		`{"class":"echo","size":-1}`:                           "size must be 0 or more",
		`{"class":"echo","size":1000000}`:                      "size must be at most 1000 (the pool's limit), got 1000000",
		`{"class":"echo"}`:                                     `"size" is required`,
		`{"size":1}`:                                           `"class" is required`,
		`{"class":"","size":1}`:                                "class must name",
		`{"class":"echo","size":1,"restart":"sometimes"}`:      `restart "sometimes"`,
		`{"class":"echo","size":1,"config":{"a":1}}`:           "",
		`{"class":"echo","size":1,"config":{"a":"1"},"x":"y"}`: `unsupported attribute "x"`,
	} {
		_, err := sdktest.NewWorker(Class, cfg)
		if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: %v, want an invalid config error with %q", cfg, err, want)
		}
	}
	if err := Class.Validate(); err != nil {
		t.Error(err)
	}
}

// testEnv is the Env of a pool whose Children is c.
func testEnv(t *testing.T, c sdk.Children) *sdk.Env {
	return sdktest.NewEnv(t, sdktest.WorkerName("pool-a"), sdktest.ClassName("dynworkers.pool"), sdktest.WithChildren(c)).SDK()
}

func TestStartAndStatus(t *testing.T) {
	w, err := sdktest.NewWorker(Class, `{"class":"echo","size":2,"config":{"interval":"1h"}}`)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(map[string]sdk.ChildSpec{"3": spec("3", "echo", nil)})
	ctx := context.Background()
	if err := w.Start(ctx, testEnv(t, f)); err != nil {
		t.Fatal(err)
	}
	st, err := w.(sdk.StatusReporter).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	var got struct {
		Class    string
		Size     int
		Running  int
		Children []sdk.ChildInfo
		Last     Report `json:"last_reconcile"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Class != "echo" || got.Size != 2 || got.Running != 2 || len(got.Children) != 2 ||
		!slices.Equal(got.Last.Started, []string{"1", "2"}) || !slices.Equal(got.Last.Stopped, []string{"3"}) {
		t.Errorf("status %s", b)
	}
	if err := w.Stop(ctx); err != nil {
		t.Error(err)
	}

	// Without a Host service the pool cannot start.
	w, _ = sdktest.NewWorker(Class, `{"class":"echo","size":1}`)
	if err := w.Start(ctx, testEnv(t, sdk.NoChildren())); !errors.Is(err, sdk.ErrNoHostService) {
		t.Errorf("Start without a Host service = %v", err)
	}
}
