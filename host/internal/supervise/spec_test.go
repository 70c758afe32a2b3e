package supervise

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b, err := Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for n, w := range want {
		if w > 0 {
			w *= time.Millisecond
		}
		if got := b.delay(n, nil); got != w {
			t.Errorf("delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := b.delay(1000, nil); got != time.Second {
		t.Errorf("delay(1000) = %v, want the cap", got)
	}
	huge := Backoff{Initial: time.Duration(1 << 61), Max: time.Duration(1<<63 - 1)}
	if got := huge.delay(5, nil); got != huge.Max {
		t.Errorf("no overflow: delay = %v, want %v", got, huge.Max)
	}

	j, _ := Backoff{Initial: 100 * time.Millisecond}.withDefaults()
	for r, w := range map[float64]time.Duration{0: 80 * time.Millisecond, 0.5: 100 * time.Millisecond, 0.75: 110 * time.Millisecond} {
		if got := j.delay(1, func() float64 { return r }); got != w {
			t.Errorf("jitter with rand %v: %v, want %v", r, got, w)
		}
	}
	if got := j.delay(0, func() float64 { return 0.9 }); got != 0 {
		t.Errorf("an immediate restart is not jittered: %v", got)
	}
}

// Delay is the schedule for retries outside a supervisor: it takes the
// defaults of zero fields itself and is the same as a supervisor's.
func TestBackoffDelayExported(t *testing.T) {
	exact := Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: -1}
	b, err := exact.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for n := -1; n < 12; n++ {
		if got, want := exact.Delay(n, nil), b.delay(n, nil); got != want {
			t.Errorf("Delay(%d) = %v, the supervisor's delay is %v", n, got, want)
		}
	}
	// The zero Backoff is the default one, jitter included.
	half := func() float64 { return 0.5 }
	if got := (Backoff{}).Delay(1, half); got != DefaultBackoffInitial {
		t.Errorf("zero Backoff: Delay(1) = %v, want %v", got, DefaultBackoffInitial)
	}
	if got, want := (Backoff{}).Delay(1, func() float64 { return 0 }), DefaultBackoffInitial*8/10; got != want {
		t.Errorf("zero Backoff, lowest jitter: Delay(1) = %v, want %v", got, want)
	}
	if got := (Backoff{}).Delay(100, half); got != DefaultBackoffMax {
		t.Errorf("zero Backoff: Delay(100) = %v, want the default cap %v", got, DefaultBackoffMax)
	}
	// nil draws from math/rand/v2: every delay within ±Jitter, not all
	// the same.
	j := Backoff{Initial: time.Second, Jitter: 0.5}
	seen := map[time.Duration]bool{}
	for range 100 {
		d := j.Delay(1, nil)
		if d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("Delay(1) = %v, want within [0.5s, 1.5s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("nil rnd: %d distinct delays in 100, want jitter", len(seen))
	}
	// What a Spec would reject still gives a delay in [0, Max].
	if got := (Backoff{Initial: time.Minute, Max: time.Second, Jitter: -1}).Delay(3, nil); got != time.Second {
		t.Errorf("Max below Initial: %v, want Max", got)
	}
	if got := (Backoff{Initial: -time.Second, Jitter: -1}).Delay(3, nil); got != 0 {
		t.Errorf("negative Initial: %v, want 0", got)
	}
}

func TestDefaults(t *testing.T) {
	b, err := Backoff{}.withDefaults()
	if err != nil || b != (Backoff{DefaultBackoffInitial, DefaultBackoffMax, DefaultBackoffResetAfter, DefaultBackoffJitter}) {
		t.Errorf("backoff defaults = %+v, %v", b, err)
	}
	sp, err := Spec{}.withDefaults()
	if err != nil || sp.Name != "supervisor" || sp.Strategy != StrategyOneForOne || sp.Intensity != DefaultIntensity ||
		sp.Period != DefaultPeriod || sp.Clock == nil || sp.Rand == nil {
		t.Errorf("spec defaults = %+v, %v", sp, err)
	}
	if sp, _ := (Spec{Intensity: -1}).withDefaults(); sp.Intensity != 0 {
		t.Errorf("negative intensity = %d, want 0", sp.Intensity)
	}
	cs, err := ChildSpec{Name: "w", Service: ServiceFunc(nil)}.withDefaults()
	if err != nil || cs.StartTimeout != DefaultStartTimeout || cs.ShutdownTimeout != DefaultShutdownTimeout || cs.Restart != Permanent {
		t.Errorf("child defaults = %+v, %v", cs, err)
	}
}

func TestNewStrategies(t *testing.T) {
	for _, st := range []Strategy{StrategyOneForOne, StrategyOneForAll, StrategyRestForOne} {
		sup, err := New(Spec{Strategy: st})
		if err != nil {
			t.Errorf("New(%s) = %v", st, err)
			continue
		}
		if err := sup.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	if _, err := New(Spec{Strategy: "one_for_none"}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("unknown strategy: %v", err)
	}
	if _, err := New(Spec{Period: -time.Second}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("negative period: %v", err)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]RestartType{"permanent": Permanent, "Transient": Transient, " temporary ": Temporary} {
		got, err := ParseRestartType(in)
		if err != nil || got != want || got.String() != want.String() {
			t.Errorf("ParseRestartType(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "always", "permanentx"} {
		if _, err := ParseRestartType(in); err == nil {
			t.Errorf("ParseRestartType(%q) accepted", in)
		}
	}
	var r RestartType
	if err := r.UnmarshalText([]byte("transient")); err != nil || r != Transient {
		t.Errorf("UnmarshalText = %v, %v", r, err)
	}
	if b, err := Temporary.MarshalText(); err != nil || string(b) != "temporary" {
		t.Errorf("MarshalText = %s, %v", b, err)
	}
	if s := RestartType(9).String(); s != "RestartType(9)" {
		t.Errorf("String = %s", s)
	}
	for _, in := range []string{"one_for_one", "one_for_all", "REST_FOR_ONE"} {
		if _, err := ParseStrategy(in); err != nil {
			t.Errorf("ParseStrategy(%q): %v", in, err)
		}
	}
	if _, err := ParseStrategy("simple_one_for_one"); err == nil {
		t.Error("ParseStrategy accepted simple_one_for_one")
	}
}

func TestWithTimeoutOnRealClock(t *testing.T) {
	ctx, cancel := withTimeout(context.Background(), RealClock(), time.Hour)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
		t.Fatalf("deadline = %v, %v", dl, ok)
	}
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("err = %v", ctx.Err())
	}
}
