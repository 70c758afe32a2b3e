package config

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func smppWorker(t *testing.T, cfg string) *Worker {
	t.Helper()
	v, diags := DecodeWorkerConfigJSON(smppSchema, []byte(cfg), "test")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return &Worker{
		Name: "w", Path: "root/w", Class: "smpp", Restart: RestartPermanent,
		StartTimeout: DefaultStartTimeout, ShutdownTimeout: DefaultShutdownTimeout,
		HealthInterval: DefaultHealthInterval, HealthTimeout: DefaultHealthTimeout,
		Backoff: Backoff{DefaultBackoffInitial, DefaultBackoffMax, DefaultBackoffReset},
		Config:  v, Schema: smppSchema,
	}
}

func TestConfigJSONAndRedacted(t *testing.T) {
	w := smppWorker(t, `{"host": "smsc", "password": "pw-SeKrEt", "tags": ["a", "b"], "labels": {"k": "v"}}`)
	got, err := w.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"host":"smsc","interval":"5s","labels":{"k":"v"},"password":"pw-SeKrEt","port":2773,"system_id":null,"tags":["a","b"],"username":null}`
	if string(got) != want {
		t.Errorf("ConfigJSON\ngot  %s\nwant %s", got, want)
	}
	red := w.RedactedConfig()
	wantRed := map[string]any{
		"host": "smsc", "interval": "5s", "labels": map[string]any{"k": "v"}, "password": RedactedValue,
		"port": 2773.0, "system_id": nil, "tags": []any{"a", "b"}, "username": nil,
	}
	if !reflect.DeepEqual(red, wantRed) {
		t.Errorf("RedactedConfig\ngot  %#v\nwant %#v", red, wantRed)
	}
	b, _ := json.Marshal(red)
	if string(b) == string(got) {
		t.Error("redacted JSON equals the real one")
	}

	// An unset sensitive attribute stays null: there is nothing to hide.
	w = smppWorker(t, `{"host": "smsc"}`)
	if v := w.RedactedConfig()["password"]; v != nil {
		t.Errorf("unset password redacted as %#v, want nil", v)
	}
	// A worker without config (zero value) has an empty object.
	empty := &Worker{}
	if b, _ := empty.ConfigJSON(); string(b) != "{}" {
		t.Errorf("empty ConfigJSON = %s", b)
	}
	if len(empty.RedactedConfig()) != 0 {
		t.Error("empty RedactedConfig not empty")
	}
}

func TestSpecHash(t *testing.T) {
	base := smppWorker(t, `{"host": "smsc", "port": 2773, "password": "a"}`)
	h := base.SpecHash()
	if len(h) != 64 {
		t.Fatalf("hash %q is not hex SHA-256", h)
	}
	same := smppWorker(t, `{"password": "a", "port": "2773", "host": "smsc"}`)
	same.Name, same.Path = "other", "root/x/other" // name and place are not part of the spec
	if got := same.SpecHash(); got != h {
		t.Errorf("equal specs hash differently: %s != %s", got, h)
	}
	if base.SpecHash() != h {
		t.Error("hash is not stable")
	}
	changes := map[string]func(w *Worker){
		"class":            func(w *Worker) { w.Class = "echo" },
		"restart":          func(w *Worker) { w.Restart = RestartTemporary },
		"start_timeout":    func(w *Worker) { w.StartTimeout++ },
		"shutdown_timeout": func(w *Worker) { w.ShutdownTimeout = time.Second },
		"health_interval":  func(w *Worker) { w.HealthInterval++ },
		"health_timeout":   func(w *Worker) { w.HealthTimeout++ },
		"backoff initial":  func(w *Worker) { w.Backoff.Initial++ },
		"backoff max":      func(w *Worker) { w.Backoff.Max++ },
		"backoff reset":    func(w *Worker) { w.Backoff.ResetAfter++ },
		"config":           func(w *Worker) { w.Config = smppWorker(t, `{"host": "smsc", "port": 2774, "password": "a"}`).Config },
		"sensitive config": func(w *Worker) { w.Config = smppWorker(t, `{"host": "smsc", "password": "b"}`).Config },
	}
	for name, change := range changes {
		w := smppWorker(t, `{"host": "smsc", "password": "a"}`)
		change(w)
		if w.SpecHash() == h {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
}

func TestSpecHashFromHCLMatchesJSON(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/w.hcl", "worker \"w\" {\n  class = \"vumi.transports.smpp.SmppTransport\"\n  config {\n    host = \"smsc\"\n    port = 2773\n    password = \"a\"\n  }\n}\n")
	cfg, diags := Load(dir+"/w.hcl", testClasses())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	w := cfg.Root.Children[0].Worker
	if w.Class != "smpp" {
		t.Errorf("class = %q, want the canonical name", w.Class)
	}
	if got, want := w.SpecHash(), smppWorker(t, `{"host": "smsc", "password": "a"}`).SpecHash(); got != want {
		t.Errorf("HCL and JSON of the same spec hash differently")
	}
	if !w.Config.GetAttr("port").RawEquals(cty.NumberIntVal(2773)) {
		t.Errorf("port = %#v", w.Config.GetAttr("port"))
	}
}
