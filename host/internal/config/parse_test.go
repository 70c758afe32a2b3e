package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/sdk"
)

func TestParseThenDecode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	writeFile(t, path, "worker \"a\" {\n  class = \"echo\"\n}\nworker \"b\" {\n  class = \"smpp\"\n  config {\n    host = \"h\"\n  }\n}\n")
	f, diags := Parse(path)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if f.SystemID != DefaultSystemID || f.Host.PluginDir != filepath.Join(dir, "bin/plugins") || f.Host.StateDir != filepath.Join(dir, "var") {
		t.Errorf("defaults: %+v %+v", f.SystemID, f.Host)
	}
	if f.AMQP != nil {
		t.Errorf("AMQP = %v, want nil without a block", f.AMQP)
	}
	if f.Sources()[path] == nil {
		t.Error("Sources lacks the file")
	}

	// Decode with a catalog that lacks smpp, then again with a full one:
	// the File is reusable.
	onlyEcho := fakeClasses{classes: map[string]sdk.Schema{"echo": nil}}
	cfg, diags := f.Decode(onlyEcho)
	if cfg != nil || len(diags) != 1 || !strings.Contains(diags[0].Detail, `unknown class "smpp"`) {
		t.Fatalf("Decode with echo only: %v, %s", cfg, diags.Error())
	}
	cfg, diags = f.Decode(testClasses())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if len(cfg.Root.Children) != 2 || cfg.Root.Children[1].Worker.Path != "root/b" {
		t.Errorf("tree: %+v", cfg.Root.Children)
	}
	var names []string
	cfg.Root.Walk(func(w *Worker) { names = append(names, w.Name) })
	if strings.Join(names, ",") != "a,b" {
		t.Errorf("Walk = %v", names)
	}

	if _, diags := f.Decode(nil); !diags.HasErrors() {
		t.Error("Decode(nil) does not report the classes")
	}
}

func TestLoadMissingPath(t *testing.T) {
	cfg, diags := Load(filepath.Join(t.TempDir(), "nope.hcl"), testClasses())
	if cfg != nil || !diags.HasErrors() || diags[0].Summary != "Cannot read configuration" {
		t.Errorf("got %v, %v", cfg, diags)
	}
}

func TestParseErrorsMakeDecodeNil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hcl")
	writeFile(t, path, "worker \"a\" {\n  class = \"echo\"\n  restart = \"never\"\n}\n")
	f, diags := Parse(path)
	if !diags.HasErrors() || f == nil {
		t.Fatalf("Parse: %v, %v", f, diags)
	}
	cfg, more := f.Decode(testClasses())
	if cfg != nil || more.HasErrors() {
		t.Errorf("Decode after Parse errors = %v, %v; want nil and no new errors", cfg, more)
	}
}
