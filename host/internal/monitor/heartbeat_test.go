package monitor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestHeartbeatGolden(t *testing.T) {
	hb := NewHeartbeat("sys-1", "echo", "host-a", 4242, time.Unix(1700000000, 250_000_999))
	if hb.WorkerID != "sys-1:echo" || hb.Version != "20130319" || hb.Timestamp != 1700000000.25 {
		t.Errorf("NewHeartbeat: %+v", hb)
	}
	got, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "heartbeat.json", got)
	if err := hb.Validate(); err != nil {
		t.Error(err)
	}

	// A whole second is still written as a float, as time.time() would be.
	hb = NewHeartbeat("sys-1", "echo", "host-a", 4242, time.Unix(1700000000, 0))
	got, _ = json.Marshal(hb)
	if !strings.Contains(string(got), `"timestamp":1700000000.0,`) {
		t.Errorf("whole-second timestamp: %s", got)
	}
}

// Vumi's own heartbeat (Python's json.dumps of the worker's attributes,
// keys in any order) decodes to the same Heartbeat.
func TestDecodeVumiHeartbeat(t *testing.T) {
	const body = `{"pid": 345, "hostname": "test-host-1", "worker_name": "twitter_transport", ` +
		`"timestamp": 1363700000.123456, "system_id": "system-1", "version": "20130319", ` +
		`"worker_id": "system-1:twitter_transport", "custom": {"x": 1}}`
	var hb Heartbeat
	if err := json.Unmarshal([]byte(body), &hb); err != nil {
		t.Fatal(err)
	}
	want := Heartbeat{Version: "20130319", SystemID: "system-1", WorkerID: "system-1:twitter_transport",
		WorkerName: "twitter_transport", Hostname: "test-host-1", Timestamp: 1363700000.123456, PID: 345}
	if hb != want {
		t.Errorf("got  %+v\nwant %+v", hb, want)
	}
	if err := hb.Validate(); err != nil {
		t.Error(err)
	}
}

func TestHeartbeatValidate(t *testing.T) {
	good := NewHeartbeat("s", "w", "h", 1, time.Unix(1, 0))
	for _, tc := range []struct {
		name string
		edit func(*Heartbeat)
		want string
	}{
		{"missing", func(h *Heartbeat) { h.SystemID, h.PID = "", 0 }, "missing system_id, pid"},
		{"version", func(h *Heartbeat) { h.Version = "20110818" }, `version "20110818"`},
		{"worker id", func(h *Heartbeat) { h.WorkerID = "w" }, `worker_id "w" is not "s:w"`},
	} {
		h := good
		tc.edit(&h)
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}
