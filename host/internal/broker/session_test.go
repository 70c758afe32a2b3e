package broker

import (
	"testing"
	"time"
)

func TestBackoffDoublesIsCappedAndJittered(t *testing.T) {
	min, max := 100*time.Millisecond, 10*time.Second
	for n, want := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		8: 10 * time.Second, 100: 10 * time.Second,
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(min, max, n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("backoff(%d) is not jittered: %d distinct values in 200", n, len(seen))
		}
	}
}
