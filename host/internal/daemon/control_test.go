package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// designNoteStart is the start request of the "Dynamic Workers" design note.
var designNoteStart = control.WorkerSpec{
	Name:  "SMPP Transport for account1",
	Class: "vumi.workers.smpp.transport.SMPPTransport",
	Config: json.RawMessage(`{"host": "smpp.host.com", "port": "2773", "username": "account1",
		"password": "password", "system_id": "abc"}`),
}

func wantCode(t *testing.T, err error, code control.Code) *control.Error {
	t.Helper()
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
	return ce
}

func TestStartWorkerIsIdempotentAndPersisted(t *testing.T) {
	h := startHost(t, `
worker "from-hcl" {
  class = "chaos"
}
`)
	h.waitStarted("from-hcl")
	ctx := context.Background()
	res, err := h.d.StartWorker(ctx, designNoteStart)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != "started" || res.State != "running" || res.Pid == 0 {
		t.Fatalf("result = %+v", res)
	}
	// "port": "2773" (a string) converted to the schema's number, as HCL
	// would; the plugin got it.
	ws, _ := h.d.Worker(designNoteStart.Name)
	st, err := h.processOf(designNoteStart.Name).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The password of the design note is "password": the host scrubs it
	// wherever it occurs in what the worker says, so its "password_set" key
	// shows as "(sensitive)_set".
	if !strings.Contains(string(st), `"port":2773`) || !strings.Contains(string(st), `"(sensitive)_set":true`) {
		t.Errorf("plugin status %s: want port 2773 and the password delivered", st)
	}
	// Same name, same spec: no-op.
	again, err := h.d.StartWorker(ctx, designNoteStart)
	if err != nil || again.Action != "unchanged" || again.Pid != ws.Pid {
		t.Errorf("second start = %+v, %v; want unchanged with pid %d", again, err, ws.Pid)
	}
	// Same name, different spec: conflict, unless replace.
	other := designNoteStart
	other.Config = json.RawMessage(`{"host": "other.host.com"}`)
	wantCode(t, errOnly(h.d.StartWorker(ctx, other)), control.CodeConflict)
	other.Replace = true
	rep, err := h.d.StartWorker(ctx, other)
	if err != nil || rep.Action != "replaced" || rep.Pid == ws.Pid {
		t.Errorf("replace = %+v, %v", rep, err)
	}
	// A dynamic worker cannot take an HCL worker's name.
	wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "from-hcl", Class: "chaos"})), control.CodeConflict)

	// Persisted, with the decoded config.
	st2 := h.loadState()
	if len(st2.Workers) != 1 || st2.Workers[0].Class != "smpp" || !strings.Contains(string(st2.Workers[0].Config), "other.host.com") {
		t.Errorf("state = %+v", st2)
	}
}

func errOnly(_ api.StartResult, err error) error { return err }

func TestStartWorkerErrors(t *testing.T) {
	h := startHost(t, "")
	ctx := context.Background()
	ce := wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "w", Class: "smtp"})), control.CodeUnknownClass)
	if !strings.Contains(ce.Message, `"smtp"`) {
		t.Errorf("message %q does not name the class", ce.Message)
	}
	ce = wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "w", Class: "smpp",
		Config: json.RawMessage(`{"prot": 1, "port": "abc", "password": "hunter2-secret"}`)})), control.CodeInvalidConfig)
	b, _ := json.Marshal(ce)
	for _, want := range []string{`"attribute":"prot"`, `"attribute":"host"`, "port"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("error %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), "hunter2-secret") {
		t.Errorf("error %s shows the sensitive value", b)
	}
	wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "../../bin/sh", Class: "chaos"})), control.CodeInvalidConfig)
	wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "w", Class: "chaos", Supervisor: "nope"})), control.CodeNotFound)
	wantCode(t, h.d.StopWorker(ctx, "nope"), control.CodeNotFound)
	wantCode(t, h.d.RestartWorker(ctx, "nope"), control.CodeNotFound)
	if len(h.d.Workers()) != 0 {
		t.Errorf("bad requests changed the workers: %+v", h.d.Workers())
	}
	if _, err := os.Stat(filepath.Join(h.dir, "var", state.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad requests wrote the state file: %v", err)
	}
}

func TestStopDynamicForgetsItStopHCLKeepsIt(t *testing.T) {
	h := startHost(t, `
worker "from-hcl" {
  class = "chaos"
}
`)
	h.waitStarted("from-hcl")
	ctx := context.Background()
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "dyn", Class: "chaos"}); err != nil {
		t.Fatal(err)
	}
	pid := h.pid("dyn")
	if err := h.d.StopWorker(ctx, "dyn"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.d.Worker("dyn"); ok {
		t.Error("a stopped dynamic worker is still listed")
	}
	waitGone(t, waitTimeout, pid)
	if st := h.loadState(); len(st.Workers) != 0 {
		t.Errorf("state still has %+v", st.Workers)
	}
	if err := h.d.StopWorker(ctx, "from-hcl"); err != nil {
		t.Fatal(err)
	}
	ws, _ := h.d.Worker("from-hcl")
	if ws.State != string(supervise.StateStopped) {
		t.Errorf("HCL worker state %s, want stopped", ws.State)
	}
	if err := h.d.RestartWorker(ctx, "from-hcl"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := h.d.Worker("from-hcl"); ws.State != "running" {
		t.Errorf("HCL worker state %s after restart, want running", ws.State)
	}
}

// A dynamic worker survives a restart of the host: a new daemon on the same
// state_dir starts it again.
func TestDynamicWorkersAreRestored(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "smpp")
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	h := startHostIn(t, dir, "")
	if _, err := h.d.StartWorker(context.Background(), designNoteStart); err != nil {
		t.Fatal(err)
	}
	h.stop()

	h2 := startHostIn(t, dir, "")
	h2.waitStarted(designNoteStart.Name)
	st, err := h2.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	if !strings.Contains(string(b), `"source":"control"`) || strings.Contains(string(b), `"password":"password"`) {
		t.Errorf("status %s: want the restored worker, source control, password redacted", b)
	}
}

// A corrupt state file is kept aside, reported, and the host still runs.
func TestCorruptStateIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "var", state.FileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHostIn(t, dir, `
worker "w" {
  class = "chaos"
}
`)
	h.waitStarted("w")
	aside, _ := filepath.Glob(filepath.Join(dir, "var", state.FileName+".corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("kept aside: %v, want one file", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != "{not json" {
		t.Errorf("kept-aside content %q", b)
	}
}
