package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// GET /v1/events lists the events as published on vumi.events, oldest
// first: fields an event does not have are left out, never null, and an
// empty log is an empty list.
func TestEventsRoute(t *testing.T) {
	var list []api.Event
	s := New(Options{Doer: &fakeDoer{}, Events: func() []api.Event { return list }})

	w, rep := serve(t, s, "GET", "/v1/events", "")
	if w.Code != 200 || !rep.OK || !strings.Contains(w.Body.String(), `"result":{"events":[]}`) {
		t.Fatalf("empty log: %d %s", w.Code, w.Body)
	}

	at := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	restarts := 0
	list = []api.Event{
		{Event: "worker_stopping", Time: at, SystemID: "global", Host: "h1", Supervisor: "root", Worker: "w1",
			Meta: map[string]string{"class": "echo"}},
		{Event: "supervisor_failed", Time: at, SystemID: "global", Host: "h1", Supervisor: "root", Child: "root/a",
			Meta: map[string]string{}, Reason: "intensity_exceeded", Restarts: &restarts},
	}
	w, rep = serve(t, s, "GET", "/v1/events", "")
	want := `"result":{"events":[` +
		`{"event":"worker_stopping","time":"2026-03-04T12:00:00Z","system_id":"global","host":"h1","supervisor":"root","worker":"w1","meta":{"class":"echo"}},` +
		`{"event":"supervisor_failed","time":"2026-03-04T12:00:00Z","system_id":"global","host":"h1","supervisor":"root","child":"root/a","meta":{},"reason":"intensity_exceeded","restarts":0}]}`
	if w.Code != 200 || !rep.OK || !strings.Contains(w.Body.String(), want) {
		t.Fatalf("GET /v1/events: %d\n%s\nwant it to contain\n%s", w.Code, w.Body, want)
	}
	if strings.Contains(w.Body.String(), "null") {
		t.Fatalf("GET /v1/events has a null field: %s", w.Body)
	}
}
