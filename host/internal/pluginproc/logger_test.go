package pluginproc

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestRetargetLogger(t *testing.T) {
	var a, b bytes.Buffer
	la := hclog.New(&hclog.LoggerOptions{Name: "a", Output: &a, Level: hclog.Debug})
	lb := hclog.New(&hclog.LoggerOptions{Name: "b", Output: &b, Level: hclog.Warn})
	r := newRetargetLogger(la)
	// Derived before the retarget, as go-plugin derives its stderr logger.
	derived := r.Named("x").With("k", "v")
	reset := r.ResetNamed("y")
	derived.Info("one")
	r.retarget(lb)
	derived.Info("dropped: below b's level")
	derived.Warn("two")
	reset.Error("three")
	r.Named("z").Error("four")
	if got := a.String(); !strings.Contains(got, "a.x: one: k=v") || strings.Contains(got, "two") {
		t.Errorf("first target got:\n%s", got)
	}
	got := b.String()
	for _, want := range []string{"b.x: two: k=v", "y: three", "b.z: four"} {
		if !strings.Contains(got, want) {
			t.Errorf("second target lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dropped") || strings.Contains(got, "one") {
		t.Errorf("second target got:\n%s", got)
	}
	if derived.GetLevel() != hclog.Warn || derived.IsInfo() || !derived.IsWarn() || derived.Name() != "b.x" {
		t.Errorf("level %v, name %q: want those of the new target", derived.GetLevel(), derived.Name())
	}
	r.retarget(la)
	derived.StandardLogger(nil).Print("five")
	if !strings.Contains(a.String(), "a.x: five: k=v") {
		t.Errorf("standard logger output missing:\n%s", a.String())
	}
}

func TestRetargetLoggerConcurrent(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	out := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	l1 := hclog.New(&hclog.LoggerOptions{Name: "one", Output: out})
	l2 := hclog.New(&hclog.LoggerOptions{Name: "two", Output: out})
	r := newRetargetLogger(l1)
	d := r.Named("n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				d.Info("hi")
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			r.retarget(l2)
		} else {
			r.retarget(l1)
		}
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "hi"); n != 800 {
		t.Errorf("%d lines, want 800", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
