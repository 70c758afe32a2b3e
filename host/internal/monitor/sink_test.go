package monitor

import (
	"errors"
	"reflect"
	"testing"
)

// A Sink records under its prefix; a new process's sink may spell a name
// differently from its predecessor's, but not from its own earlier
// spelling.
func TestSinkRecordsUnderPrefixAndClaimsNamesAnew(t *testing.T) {
	r, _ := newTestRegistry(0)
	first := r.Sink("w1")
	if err := first.Metric("Messages Sent", 2, []string{AggSum}); err != nil {
		t.Fatal(err)
	}
	if err := first.Metric("messages-sent", 1, []string{AggSum}); !errors.Is(err, ErrNameCollision) {
		t.Errorf("another spelling in the same process: %v, want ErrNameCollision", err)
	}
	next := r.Sink("w1")
	if err := next.Metric("messages-sent", 3, []string{AggSum}); err != nil {
		t.Errorf("another spelling in the next process: %v", err)
	}
	if err := next.Metric("Messages Sent", 1, []string{AggSum}); !errors.Is(err, ErrNameCollision) {
		t.Errorf("the old spelling after the new one: %v, want ErrNameCollision", err)
	}
	if got, want := r.Values("w1"), []MetricValue{{"messages_sent", AggSum, 5}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Values = %v, want %v", got, want)
	}
	if got := r.Values("w2"); len(got) != 0 {
		t.Errorf("another prefix has %v", got)
	}
}
