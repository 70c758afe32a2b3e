package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// fakeInstance is a started instance whose pid the test's Pid func knows.
type fakeInstance struct {
	supervise.Instance
	pid int
}

var when = time.Date(2026, 3, 4, 12, 31, 7, 120453000, time.FixedZone("CET", 3600))

func info(child string, meta map[string]string) supervise.EventInfo {
	return supervise.EventInfo{Supervisor: "root", Child: child, Meta: meta, Time: when}
}

var (
	worker = map[string]string{"class": "echo"}
	subSup = map[string]string{MetaKind: KindSupervisor, MetaPath: "root/campaign-a"}
)

// The wire form of each event type: the JSON as published, with the fields
// an event does not have left out (not null), the time in UTC, and the
// events about a child supervisor renamed supervisor_* with child instead of
// worker.
func TestMapWireForm(t *testing.T) {
	m := Mapper{SystemID: "global", Host: "host-1", Pid: func(i supervise.Instance) int { return i.(fakeInstance).pid }}
	const common = `"time":"2026-03-04T11:31:07.120453Z","system_id":"global","host":"host-1","supervisor":"root"`
	boom := errors.New("exit status 1")
	for _, tc := range []struct {
		ev   supervise.Event
		want string
	}{
		{supervise.ChildStarting{EventInfo: info("w", worker), Attempt: 1},
			`{"event":"worker_starting",` + common + `,"worker":"w","meta":{"class":"echo"},"attempt":1}`},
		{supervise.ChildStarted{EventInfo: info("w", worker), Attempt: 2, Instance: fakeInstance{pid: 4242}},
			`{"event":"worker_started",` + common + `,"worker":"w","meta":{"class":"echo"},"pid":4242,"attempt":2}`},
		{supervise.ChildStartFailed{EventInfo: info("w", nil), Attempt: 3, Err: boom, Permanent: true},
			`{"event":"worker_start_failed",` + common + `,"worker":"w","meta":{},"attempt":3,"error":"exit status 1","permanent":true}`},
		{supervise.ChildExited{EventInfo: info("w", worker), Uptime: 1500 * time.Millisecond},
			`{"event":"worker_exited",` + common + `,"worker":"w","meta":{"class":"echo"},"uptime_seconds":1.5}`},
		{supervise.ChildRestarting{EventInfo: info("w", worker), Attempt: 2, Restarts: 1},
			`{"event":"worker_restarting",` + common + `,"worker":"w","meta":{"class":"echo"},"attempt":2,"delay_seconds":0,"restarts":1}`},
		{supervise.ChildFailed{EventInfo: info("w", worker), Reason: supervise.ReasonIntensity, Err: boom, Restarts: 5},
			`{"event":"worker_failed",` + common + `,"worker":"w","meta":{"class":"echo"},"error":"exit status 1","reason":"intensity_exceeded","restarts":5}`},
		{supervise.ChildStopping{EventInfo: info("w", worker)},
			`{"event":"worker_stopping",` + common + `,"worker":"w","meta":{"class":"echo"}}`},
		{supervise.ChildStopped{EventInfo: info("w", worker), Err: boom, Reason: `restart of "b" (one_for_all)`},
			`{"event":"worker_stopped",` + common + `,"worker":"w","meta":{"class":"echo"},"error":"exit status 1","reason":"restart of \"b\" (one_for_all)"}`},
		{supervise.ChildRemoved{EventInfo: info("w", worker)},
			`{"event":"worker_removed",` + common + `,"worker":"w","meta":{"class":"echo"}}`},
		{supervise.SupervisorEscalated{EventInfo: info("a1", nil), Err: boom, Intensity: 5, Period: 30 * time.Second},
			`{"event":"supervisor_escalated",` + common + `,"worker":"a1","meta":{},"error":"exit status 1","intensity":5,"period":30}`},
		{supervise.ChildStarted{EventInfo: info("campaign-a", subSup), Attempt: 1},
			`{"event":"supervisor_started",` + common + `,"child":"root/campaign-a","meta":{"kind":"supervisor","path":"root/campaign-a"},"attempt":1}`},
		{supervise.ChildExited{EventInfo: info("campaign-a", subSup), Err: boom, Uptime: time.Second},
			`{"event":"supervisor_exited",` + common + `,"child":"root/campaign-a","meta":{"kind":"supervisor","path":"root/campaign-a"},"error":"exit status 1","uptime_seconds":1}`},
	} {
		t.Run(string(tc.ev.Type()), func(t *testing.T) {
			b, err := json.Marshal(m.Map(tc.ev))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("wire form\n got %s\nwant %s", b, tc.want)
			}
		})
	}
}

// The event's Meta is a copy: changing the wire form's does not change the
// emitted event's.
func TestMapCopiesMeta(t *testing.T) {
	meta := map[string]string{"class": "echo"}
	ev := Mapper{}.Map(supervise.ChildStopping{EventInfo: info("w", meta)})
	ev.Meta["class"] = "changed"
	if meta["class"] != "echo" {
		t.Fatal("Map shares Meta with the emitted event")
	}
}

// unknownEvent is an event type Map does not know.
type unknownEvent struct{ supervise.ChildRemoved }

func (unknownEvent) Type() supervise.EventType { return "worker_teleported" }
func (e unknownEvent) Map() map[string]any {
	m := e.ChildRemoved.Map()
	m["event"], m["error"] = "worker_teleported", "somewhere else"
	return m
}

// An event type added to supervise later still gets its name, worker,
// supervisor, time and error.
func TestMapUnknownEventType(t *testing.T) {
	got := Mapper{}.Map(unknownEvent{supervise.ChildRemoved{EventInfo: info("w", worker)}})
	if got.Event != "worker_teleported" || got.Worker != "w" || got.Supervisor != "root" ||
		!got.Time.Equal(when) || got.Error != "somewhere else" || got.Meta["class"] != "echo" {
		t.Fatalf("unknown event mapped to %+v", got)
	}
}

// Log lines name the worker (or child) first, then the fields the event
// has; a worker_started of a Pid-less mapper has no pid.
func TestLogArgs(t *testing.T) {
	m := Mapper{}
	for _, tc := range []struct {
		ev   supervise.Event
		want string
	}{
		{supervise.ChildStarted{EventInfo: info("w", worker), Attempt: 1, Instance: fakeInstance{pid: 7}},
			"[worker w supervisor root class echo attempt 1]"},
		{supervise.ChildRestarting{EventInfo: info("w", nil), Attempt: 2, Restarts: 1, Delay: time.Second, Err: errors.New("boom")},
			"[worker w supervisor root attempt 2 delay_seconds 1 error boom restarts 1]"},
		{supervise.ChildStopping{EventInfo: info("campaign-a", subSup)},
			"[child root/campaign-a supervisor root]"},
		// A stop on request has no reason: no empty reason="".
		{supervise.ChildStopping{EventInfo: info("w", worker)},
			"[worker w supervisor root class echo]"},
		{supervise.ChildStopped{EventInfo: info("w", worker)},
			"[worker w supervisor root class echo]"},
		{supervise.ChildStopped{EventInfo: info("w", worker), Reason: `restart of "b" (one_for_all)`},
			`[worker w supervisor root class echo reason restart of "b" (one_for_all)]`},
	} {
		if got := fmt.Sprint(LogArgs(m.Map(tc.ev))); got != tc.want {
			t.Errorf("LogArgs(%s) = %s, want %s", tc.ev.Type(), got, tc.want)
		}
	}
}

// Durations are in seconds to the millisecond on the wire: no nanoseconds,
// no float noise.
func TestMapDurationsToTheMillisecond(t *testing.T) {
	m := Mapper{}
	for _, tc := range []struct {
		ev   supervise.Event
		want string
	}{
		{supervise.ChildExited{EventInfo: info("w", nil), Uptime: 1500212047 * time.Nanosecond}, `"uptime_seconds":1.5}`},
		{supervise.ChildExited{EventInfo: info("w", nil), Uptime: 140 * time.Millisecond}, `"uptime_seconds":0.14}`},
		{supervise.ChildRestarting{EventInfo: info("w", nil), Attempt: 2, Delay: 123456789 * time.Nanosecond}, `"delay_seconds":0.123,`},
	} {
		raw, err := json.Marshal(m.Map(tc.ev))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), tc.want) {
			t.Errorf("%s: %s lacks %s", tc.ev.Type(), raw, tc.want)
		}
	}
}
