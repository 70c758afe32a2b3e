package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// killWorkerHost is a locatingHost that implements KillHost: it records the
// kill and answers with pid 4242, or err.
type killWorkerHost struct{ locatingHost }

var _ KillHost = (*killWorkerHost)(nil)

func (h *killWorkerHost) KillWorker(_ context.Context, name string) (api.KillResult, error) {
	if err := h.record("kill " + name); err != nil {
		return api.KillResult{}, err
	}
	return api.KillResult{Worker: name, PID: 4242, Signal: "SIGKILL"}, nil
}

// kill_worker reaches the Host's KillWorker with the name and answers
// with its result.
func TestDispatcherKillWorker(t *testing.T) {
	h := &killWorkerHost{}
	d, _ := newTestDispatcher(h)
	rep := d.Handle(context.Background(), []byte(`{"operation": "kill_worker", "worker_name": "w-root", "request_id": "k1"}`))
	if !rep.OK || rep.RequestID != "k1" {
		t.Fatalf("kill: %+v", rep)
	}
	got, _ := json.Marshal(rep.Result)
	if want := `{"worker":"w-root","pid":4242,"signal":"SIGKILL"}`; string(got) != want {
		t.Errorf("result %s, want %s", got, want)
	}
	if calls := h.Calls(); !slices.Equal(calls, []string{"kill w-root"}) {
		t.Errorf("host calls %v", calls)
	}
}

// kill_worker needs a valid worker_name; the host is not called.
func TestDispatcherKillWorkerValidates(t *testing.T) {
	h := &killWorkerHost{}
	d, _ := newTestDispatcher(h)
	for _, body := range []string{
		`{"operation": "kill_worker"}`,
		`{"operation": "kill_worker", "worker_name": ""}`,
		`{"operation": "kill_worker", "worker_name": "a/b"}`,
		`{"operation": "kill_worker", "worker_name": "` + strings.Repeat("x", 300) + `"}`,
	} {
		rep := d.Handle(context.Background(), []byte(body))
		if rep.OK || rep.Error.Code != CodeInvalidConfig || len(rep.Error.Details) == 0 || rep.Error.Details[0].Attribute != "worker_name" {
			t.Errorf("%.80s: %+v, want invalid_config naming worker_name", body, rep.Error)
		}
	}
	if rep := d.Handle(context.Background(), []byte(`{"operation": "kill_worker", "worker_name": 3}`)); rep.OK || rep.Error.Code != CodeMalformed {
		t.Errorf("a number as worker_name: %+v, want malformed", rep.Error)
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("host called: %v", calls)
	}
}

// A Host without KillHost answers kill_worker with a conflict that says
// so; the host's own errors come back as they are.
func TestDispatcherKillWorkerHostErrors(t *testing.T) {
	d, _ := newTestDispatcher(&fakeHost{})
	rep := d.Handle(context.Background(), []byte(`{"operation": "kill_worker", "worker_name": "a"}`))
	if rep.OK || rep.Error.Code != CodeConflict || !strings.Contains(rep.Error.Message, "kill_worker") {
		t.Errorf("host without KillHost: %+v, want a conflict naming kill_worker", rep.Error)
	}

	h := &killWorkerHost{}
	h.err = Errorf(CodeNotFound, `no worker named "a"`)
	d, _ = newTestDispatcher(h)
	rep = d.Handle(context.Background(), []byte(`{"operation": "kill_worker", "worker_name": "a"}`))
	if rep.OK || rep.Error.Code != CodeNotFound || !strings.Contains(rep.Error.Message, `"a"`) {
		t.Errorf("not found: %+v", rep.Error)
	}
}

// kill_worker changes the host: a stopping host refuses it.
func TestDispatcherKillWorkerRefused(t *testing.T) {
	h := &killWorkerHost{}
	d, _ := newTestDispatcher(h)
	d.Refuse(Errorf(CodeConflict, "the host is shutting down"))
	rep := d.Handle(context.Background(), []byte(`{"operation": "kill_worker", "worker_name": "a"}`))
	if rep.OK || rep.Error.Code != CodeConflict || !strings.Contains(rep.Error.Message, "shutting down") {
		t.Errorf("kill while stopping: %+v, want the refusal", rep.Error)
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("host called: %v", calls)
	}
}

// kill_worker is authorised as restart_worker is: the principal needs the
// operation itself, the worker's class and its supervisor's subtree.
func TestDispatcherKillWorkerAuthorization(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	p, err := auth.NewPolicy(auth.Options{Require: true, Principals: []auth.PrincipalConfig{
		{Name: "chaos", KeyID: "chaos", PublicKey: pub, Operations: []string{"kill_worker", "restart_worker"},
			Classes: []string{"smpp"}, Supervisors: []string{"/campaigns"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewEd25519Signer("chaos", priv)
	if err != nil {
		t.Fatal(err)
	}
	h := &killWorkerHost{}
	d, _ := newTestDispatcher(h)
	d.SetPolicy(p)
	cases := []struct {
		body string
		code Code
		msg  string
	}{
		{`{"operation": "kill_worker", "worker_name": "w-camp"}`, "", ""},
		{`{"operation": "kill_worker", "worker_name": "w-root"}`, CodeForbidden, `supervisor "root"`},
		{`{"operation": "kill_worker", "worker_name": "unknown"}`, CodeForbidden, "class is not known"},
	}
	for _, tc := range cases {
		rep := d.Handle(signedCtx(s, tc.body), []byte(tc.body))
		got := Code("")
		if rep.Error != nil {
			got = rep.Error.Code
		}
		if got != tc.code || (tc.msg != "" && !strings.Contains(rep.Error.Message, tc.msg)) {
			t.Errorf("%s: %+v, want code %q with %q", tc.body, rep.Error, tc.code, tc.msg)
		}
	}
	if calls := h.Calls(); !slices.Equal(calls, []string{"kill w-camp"}) {
		t.Errorf("host calls %v, want only the allowed kill", calls)
	}

	// restart_worker does not imply kill_worker.
	p2, err := auth.NewPolicy(auth.Options{Require: true, Principals: []auth.PrincipalConfig{
		{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"restart_worker"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := auth.NewEd25519Signer("ops", priv)
	d.SetPolicy(p2)
	body := `{"operation": "kill_worker", "worker_name": "w-camp"}`
	if rep := d.Handle(signedCtx(s2, body), []byte(body)); rep.OK || rep.Error.Code != CodeForbidden || !strings.Contains(rep.Error.Message, "kill_worker") {
		t.Errorf("a principal without kill_worker: %+v, want forbidden naming the operation", rep.Error)
	}
}
