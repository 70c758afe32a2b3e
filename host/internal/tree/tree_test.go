package tree

import (
	"context"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/events"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// The marks a sub-supervisor's child spec carries are those the event
// mapping renames supervisor_* by.
func TestSupervisorChildMarksMatchEvents(t *testing.T) {
	tr, err := New(Options{}, sup("root", sup("a")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Stop(context.Background()) }()
	a := tr.nodes["a"]
	spec := supChildSpec(a)
	if !events.IsSupervisor(spec.Meta) || spec.Meta[events.MetaPath] != "root/a" {
		t.Fatalf("sub-supervisor meta %v is not what events.Mapper renames by", spec.Meta)
	}
	ev := events.Mapper{SystemID: "s", Host: "h"}.
		Map(supervise.ChildStopped{EventInfo: supervise.EventInfo{Supervisor: "root", Child: "a", Meta: spec.Meta}})
	if ev.Event != "supervisor_stopped" || ev.Child != "root/a" || ev.Worker != "" {
		t.Fatalf("stop of a sub-supervisor maps to %+v", ev)
	}
	if got := tr.Supervisors(); len(got) != 2 || got[1].Path != "root/a" || got[1].Source != api.SourceHCL {
		t.Fatalf("supervisors = %+v", got)
	}
}
