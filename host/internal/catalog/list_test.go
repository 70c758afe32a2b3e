package catalog

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// List reports every class with its binary, checksum and schema, and
// every broken file with its error; empty lists encode as [], not null.
func TestList(t *testing.T) {
	dir := t.TempDir()
	bin := install(t, "chaos", dir, "chaos")
	script := write(t, filepath.Join(dir, "script.sh"), "#!/bin/sh\necho hi\n", 0o755)
	c := scan(t, Options{Dir: dir})
	l := c.List()
	if len(l.Classes) != 1 || len(l.Broken) != 1 {
		t.Fatalf("List = %+v, want one class and one broken file", l)
	}
	cls, _ := c.Lookup("chaos")
	got := l.Classes[0]
	if got.Name != "chaos" || got.Version != cls.Version || got.Binary != bin || got.SHA256 != hex.EncodeToString(cls.Binary.SHA256) {
		t.Errorf("class = %+v, want chaos of %s", got, bin)
	}
	if len(got.Schema) != len(cls.Schema) {
		t.Fatalf("schema = %+v, want %d attributes", got.Schema, len(cls.Schema))
	}
	for i, a := range cls.Schema {
		g := got.Schema[i]
		if g.Name != a.Name || g.Type != string(a.Type) || g.Required != a.Required || g.Default != a.Default ||
			g.Sensitive != a.Sensitive || g.Description != a.Description {
			t.Errorf("attribute %d = %+v, want %+v", i, g, a)
		}
	}
	if b := l.Broken[0]; b.Path != script || !strings.Contains(b.Error, `printed "hi"`) {
		t.Errorf("broken = %+v, want %s with its error", b, script)
	}

	empty := scan(t, Options{Dir: t.TempDir()}).List()
	js, err := json.Marshal(empty)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"classes":[],"broken":[]}`; string(js) != want {
		t.Errorf("empty catalog encodes as %s, want %s", js, want)
	}
}
