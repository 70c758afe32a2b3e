package supervise_test

import (
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// A stop on request has no reason: its map has no "reason" key (not an
// empty one); a stop by a group restart has it.
func TestStopEventMapOmitsEmptyReason(t *testing.T) {
	info := supervise.EventInfo{Supervisor: "root", Child: "w"}
	for _, ev := range []supervise.Event{supervise.ChildStopping{EventInfo: info}, supervise.ChildStopped{EventInfo: info}} {
		if r, ok := ev.Map()["reason"]; ok {
			t.Errorf("%s: Map has reason %q, want none", ev.Type(), r)
		}
	}
	const why = `restart of "b" (one_for_all)`
	for _, ev := range []supervise.Event{supervise.ChildStopping{EventInfo: info, Reason: why}, supervise.ChildStopped{EventInfo: info, Reason: why}} {
		if r := ev.Map()["reason"]; r != why {
			t.Errorf("%s: Map has reason %v, want %q", ev.Type(), r, why)
		}
	}
}
