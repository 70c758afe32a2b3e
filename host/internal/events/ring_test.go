package events

import (
	"slices"
	"strconv"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// The ring stays at its size however many events come, and lists the most
// recent ones oldest first, in both forms.
func TestRingKeepsTheMostRecent(t *testing.T) {
	r := NewRing(3)
	if got := r.List(); len(got) != 0 {
		t.Fatalf("empty ring lists %v", got)
	}
	var m Mapper
	for i := range 10 {
		ev := supervise.ChildStarting{EventInfo: info("w"+strconv.Itoa(i), nil), Attempt: 1}
		r.Add(m.Map(ev), ev)
		if want := min(i+1, 3); r.Len() != want {
			t.Fatalf("after %d events Len() = %d, want %d", i+1, r.Len(), want)
		}
		var wire, emitted []string
		for _, e := range r.List() {
			wire = append(wire, e.Worker)
		}
		for _, e := range r.Emitted() {
			emitted = append(emitted, e.(supervise.ChildStarting).Child)
		}
		var want []string
		for j := max(0, i-2); j <= i; j++ {
			want = append(want, "w"+strconv.Itoa(j))
		}
		if !slices.Equal(wire, want) || !slices.Equal(emitted, want) {
			t.Fatalf("after %d events: List %v, Emitted %v, want %v", i+1, wire, emitted, want)
		}
	}
	if NewRing(0).buf == nil || len(NewRing(0).buf) != DefaultRingSize {
		t.Fatal("NewRing(0) is not of DefaultRingSize")
	}
}
