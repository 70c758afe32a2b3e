package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/auth"
)

func TestControlBlock(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.GenerateKeyFiles(filepath.Join(dir, "ops.key")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "deploy.secret"), strings.Repeat("k", 44)+"\n")
	if err := os.Chmod(filepath.Join(dir, "deploy.secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.hcl")
	writeFile(t, path, `
control {
  require       = true
  replay_window = "2m"
  principal "ops" {
    public_key_file = "ops.key.pub"
    broker_users    = ["ops"]
    operations      = ["*"]
  }
  principal "deploy" {
    key_id        = "deploy-2026"
    hmac_key_file = "deploy.secret"
    operations    = ["start_worker", "status"]
    classes       = ["smpp.*"]
    supervisors   = ["/campaigns"]
  }
  principal "monitor" {
    broker_users = ["nagios"]
    operations   = ["status", "list_classes"]
  }
  principal "inline" {
    public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    operations = ["reload"]
  }
}
worker "a" {
  class = "echo"
}
`)
	f, diags := Parse(path)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	c := f.Control
	if c == nil || !c.Require || c.ReplayWindow.String() != "2m0s" || c.NonceCache != auth.DefaultNonceCache || len(c.Principals) != 4 {
		t.Fatalf("control = %+v", c)
	}
	if p := c.Principals[0]; p.KeyID != "ops" || len(p.PublicKey) != 32 || p.Classes != nil {
		t.Errorf("ops = %+v", p)
	}
	if p := c.Principals[1]; p.KeyID != "deploy-2026" || len(p.Secret) != 44 || p.Supervisors[0] != "/campaigns" {
		t.Errorf("deploy = %+v", p)
	}
	if p := c.Principals[2]; p.KeyID != "" || p.BrokerUsers[0] != "nagios" {
		t.Errorf("monitor = %+v", p)
	}
	if p := c.Principals[3]; p.KeyID != "inline" || len(p.PublicKey) != 32 || p.PublicKey[0] != 0xd7 {
		t.Errorf("inline = %+v", p)
	}
	if _, err := auth.NewPolicy(c.PolicyOptions()); err != nil {
		t.Fatal(err)
	}
	cfg, diags := f.Decode(testClasses())
	if diags.HasErrors() || cfg.Control != c {
		t.Fatalf("Decode: %v %s", cfg, diags.Error())
	}
}

func TestControlBlockErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.GenerateKeyFiles(filepath.Join(dir, "ops.key")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "open.secret"), strings.Repeat("k", 44))
	if err := os.Chmod(filepath.Join(dir, "open.secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ body, want string }{
		{`principal "a" {
  broker_users = ["a"]
  operations = ["stop"]
}`, `"stop" is not an operation`},
		{`principal "a" {
  public_key_file = "missing.pub"
  operations = ["*"]
}`, filepath.Join(dir, "missing.pub")},
		{`principal "a" {
  public_key_file = "ops.key"
  operations = ["*"]
}`, `not a PEM "PUBLIC KEY" block`},
		{`principal "a" {
  hmac_key_file = "open.secret"
  operations = ["*"]
}`, "chmod 600 " + filepath.Join(dir, "open.secret")},
		{`principal "a" {
  operations = ["*"]
}`, "neither a key"},
		{`principal "a" {
  broker_users = ["a"]
}`, "needs operations"},
		{`principal "a" {
  public_key = "bm90IGEga2V5"
  operations = ["*"]
}`, "Not an Ed25519 public key"},
		{`principal "a" {
  public_key_file = "ops.key.pub"
  hmac_key_file = "open.secret"
  operations = ["*"]
}`, "Conflicting keys"},
		{`principal "a" {
  broker_users = ["a"]
  operations = ["*"]
  classes = ["[x"]
}`, "not a class pattern"},
		{`principal "a" {
  broker_users = ["a"]
  operations = ["*"]
  supervisors = ["/a/../b"]
}`, "not a supervisor path"},
		{`principal "a" {
  broker_users = ["u"]
  operations = ["*"]
}
principal "b" {
  broker_users = ["u"]
  operations = ["*"]
}`, "both identify broker user"},
		{`principal "a" {
  public_key_file = "ops.key.pub"
  operations = ["*"]
}
principal "b" {
  key_id = "a"
  public_key_file = "ops.key.pub"
  operations = ["*"]
}`, "same key_id"},
		{`replay_window = "2h"`, "at most 1h0m0s"},
		{`nonce_cache = 0`, "nonce_cache"},
		{`require = "yes"`, "require"},
	}
	for i, tc := range cases {
		path := filepath.Join(dir, "c.hcl")
		writeFile(t, path, "control {\n"+tc.body+"\n}\n")
		f, diags := Parse(path)
		if !diags.HasErrors() {
			t.Errorf("case %d: no error, want %q", i, tc.want)
			continue
		}
		if f != nil && f.Control != nil {
			t.Errorf("case %d: a control block with errors was kept", i)
		}
		if msg := diags.Error(); !strings.Contains(msg, tc.want) {
			t.Errorf("case %d: %s\nwant %q", i, msg, tc.want)
		}
	}
}

// The operations of cluster mode can be granted by name; a misspelt one
// gets a suggestion.
func TestControlBlockClusterOperations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	writeFile(t, path, "control {\n  principal \"maint\" {\n    broker_users = [\"maint\"]\n    operations = [\"drain\", \"undrain\", \"cluster_status\"]\n  }\n}\n")
	f, diags := Parse(path)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got := f.Control.Principals[0].Operations; strings.Join(got, ",") != "drain,undrain,cluster_status" {
		t.Errorf("operations = %q", got)
	}
	writeFile(t, path, "control {\n  principal \"maint\" {\n    broker_users = [\"maint\"]\n    operations = [\"drian\"]\n  }\n}\n")
	if _, diags := Parse(path); !strings.Contains(diags.Error(), `Did you mean "drain"?`) || !strings.Contains(diags.Error(), "c.hcl:4") {
		t.Errorf("misspelt drain: %v", diags)
	}
}
