package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/sdk"
)

// addGoldenSeeds adds every HCL file of testdata (and of its *.d
// directories) to f's seed corpus.
func addGoldenSeeds(f *testing.F) {
	f.Helper()
	files, _ := filepath.Glob("testdata/*.hcl")
	more, _ := filepath.Glob("testdata/*.d/*.hcl")
	if len(files) == 0 {
		f.Fatal("no testdata/*.hcl")
	}
	for _, name := range append(files, more...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzLoad loads any file content with the tests' classes and checks what
// Load promises: it never panics; the Config is nil exactly when there is
// an error; every diagnostic has a summary and its ranges lie within the
// file, on the line their byte offset is on; formatting the diagnostics
// works; a second Load gives the same diagnostics; and a Config's tree has
// valid, unique names, consistent paths, and worker configs that the JSON
// path (a control message, the state file) decodes to the same value.
func FuzzLoad(f *testing.F) {
	addGoldenSeeds(f)
	f.Add([]byte("worker \"a\" {\n  class = \"echo\"\n}\n"))
	f.Add([]byte("worker \"a\" {\n  class = \"smpp\"\n  config {\n    host = \"h\"\n    port = 1e400\n    tags = [\"\\u00e9\", \"\"]\n  }\n}\n"))
	f.Add([]byte("worker \"a\" {\n  class = \"vault\"\n  config {\n    token = file(\"/dev/zero\")\n  }\n}\n"))
	f.Add([]byte("worker \"a\" { class = \"smpp\"\n config { host = format(\"%09999d\", 1) } }\n"))
	f.Add([]byte("supervisor \"root\" {\n supervisor \"s\" {\n  supervisor \"s\" { worker \"s\" { class = \"echo\" } }\n }\n}\n"))
	f.Add([]byte("\xef\xbb\xbfsystem_id = \"\\u202e\"\r\nhost {\r\n  name = \"h\\r\"\r\n}\r\n"))
	f.Add([]byte("cluster {\n  endpoints = [\"https://etcd:2379\", \"etcd-2:2379\"]\n  prefix = \"/d/\"\n  lease_ttl = \"3s\"\n  labels = { zone = \"a\" }\n  tls { server_name = \"etcd\" }\n}\n"))
	// What the golden files read, so that they load.
	f.Setenv("SMPP_PASSWORD", "hunter2-"+secretMarker)
	f.Setenv("AMQP_URL", "amqp://guest:amqp-"+secretMarker+"@127.0.0.1:5672/")
	classes := testClasses()
	f.Fuzz(func(t *testing.T, src []byte) {
		defer hangGuard(src)()
		path := filepath.Join(t.TempDir(), "c.hcl")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(path, classes)
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("Load = %v with errors %v", cfg != nil, diags.HasErrors())
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without a summary: %+v", d)
			}
			for _, r := range []*hcl.Range{d.Subject, d.Context} {
				checkRange(t, d, r, path, src)
			}
		}
		var out bytes.Buffer
		FormatDiagnostics(&out, diags, nil)
		if !bytes.Equal(out.Bytes(), formatLoad(path, classes)) {
			t.Fatalf("a second Load differs:\n%s\n---\n%s", out.Bytes(), formatLoad(path, classes))
		}
		if cfg != nil {
			checkTree(t, cfg)
		}
	})
}

// hangGuard crashes the process, which makes the fuzzer keep the input,
// when the input takes more than 20 s; the fuzzer does not time inputs
// out. Call the function it returns when done.
func hangGuard(input []byte) func() {
	tm := time.AfterFunc(20*time.Second, func() {
		panic(fmt.Sprintf("the input took more than 20s: %q", input))
	})
	return func() { tm.Stop() }
}

func formatLoad(path string, classes ClassResolver) []byte {
	_, diags := Load(path, classes)
	var b bytes.Buffer
	FormatDiagnostics(&b, diags, nil)
	return b.Bytes()
}

// checkRange checks that r, if set, is a range of the file path, whose
// content is src, and that its line numbers match its byte offsets (in a
// UTF-8 file).
func checkRange(t *testing.T, d *hcl.Diagnostic, r *hcl.Range, path string, src []byte) {
	t.Helper()
	if r == nil {
		return
	}
	if r.Filename != path {
		t.Fatalf("%q: range in file %q, want %q", d.Summary, r.Filename, path)
	}
	if r.Start.Byte < 0 || r.Start.Byte > r.End.Byte || r.End.Byte > len(src) {
		t.Fatalf("%q: range %d..%d outside the file's %d bytes", d.Summary, r.Start.Byte, r.End.Byte, len(src))
	}
	for _, p := range []hcl.Pos{r.Start, r.End} {
		if p.Line < 1 || p.Column < 1 {
			t.Fatalf("%q: position %+v has no line or column", d.Summary, p)
		}
		// HCL counts lines wrongly after bytes that are not UTF-8 (a
		// file must be UTF-8: such a file always has an error).
		if want := 1 + bytes.Count(src[:p.Byte], []byte("\n")); p.Line != want && utf8.Valid(src) {
			t.Fatalf("%q: position %+v is on line %d", d.Summary, p, want)
		}
	}
}

// checkTree checks a loaded Config's tree.
func checkTree(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Root == nil || cfg.Root.Name != RootName || cfg.Root.Path != RootName {
		t.Fatalf("root = %+v", cfg.Root)
	}
	workers, sups := map[string]bool{}, map[string]bool{}
	var walk func(s *Supervisor)
	walk = func(s *Supervisor) {
		for _, c := range s.Children {
			if (c.Worker == nil) == (c.Supervisor == nil) {
				t.Fatalf("node of %s with both or neither of worker and supervisor", s.Path)
			}
			name := c.Name()
			if err := ValidateName(name); err != nil {
				t.Fatalf("invalid name %q accepted: %v", name, err)
			}
			if c.Supervisor != nil {
				if sups[name] || c.Supervisor.Path != s.Path+"/"+name {
					t.Fatalf("supervisor %q: duplicate or path %q under %q", name, c.Supervisor.Path, s.Path)
				}
				sups[name] = true
				walk(c.Supervisor)
				continue
			}
			w := c.Worker
			if workers[name] || w.Path != s.Path+"/"+name {
				t.Fatalf("worker %q: duplicate or path %q under %q", name, w.Path, s.Path)
			}
			workers[name] = true
			checkJSONRoundTrip(t, w)
		}
	}
	walk(cfg.Root)
}

// checkJSONRoundTrip checks that a worker's config, as the JSON sent to
// the plugin and stored in the state file, decodes with the worker's
// schema to the value HCL gave.
func checkJSONRoundTrip(t *testing.T, w *Worker) {
	t.Helper()
	js, err := w.ConfigJSON()
	if err != nil {
		t.Fatalf("worker %q: ConfigJSON: %v", w.Name, err)
	}
	v, diags := DecodeWorkerConfigJSON(w.Schema, js, "state")
	if diags.HasErrors() {
		t.Fatalf("worker %q: its config %s does not decode again: %s", w.Name, js, diags.Error())
	}
	if !v.RawEquals(w.Config) {
		t.Fatalf("worker %q: config %s decodes to %#v, not %#v", w.Name, js, v, w.Config)
	}
}

// FuzzDecodeWorkerConfigJSON decodes any worker_config with the tests'
// schemas and checks: no panic; a value exactly when there is no error,
// with every schema attribute; diagnostics with ranges inside the input;
// no sensitive string of the input in the formatted diagnostics; and the
// round trip of the JSON the plugin gets (and the state file stores): it
// decodes again to the same value and encodes to the same bytes.
func FuzzDecodeWorkerConfigJSON(f *testing.F) {
	for _, s := range []string{
		`{"host": "smsc", "port": "2773"}`,
		`{"host": "h", "port": 1, "password": "pw", "interval": "1m", "tags": ["a"], "labels": {"k": "v"}, "username": 7}`,
		`{"host": "h", "prot": 1}`, `{"port": 1}`, ``, `null`, `{"host": null}`, `{"host": "h", "port": "abc"}`,
		`{"host": "h", "interval": "5 seconds"}`, `{"port": "abc", "interval": "x", "nope": 1}`,
		`{"host": "${env(\"HOME\")}"}`, `[1]`, `{"host": `,
		`{"token": ["tok-SeKrEt"]}`, `{"token": {"a": "tok-SeKrEt"}}`, `{"token": "t", "pin": "pin-SeKrEt"}`,
		`{"token": "t", "rotate": "rot-SeKrEt"}`, `{"token": "t", "rotate": "-1s", "pin": "SeKrEt"}`,
		`{"token": "t", "enabled": "bool-SeKrEt"}`, `{"token": "%{if true}x%{endif}", "pin": 1e400, "enabled": "true"}`,
		`{"host": "h", "port": 0.1, "tags": null, "labels": {"": "\u0000", "a\"b": "\ud800"}}`,
		`{"host": "h", "host": "i", "port": -0, "tags": [null], "labels": null}`,
		`{"prefix": "echo: ", "//": "a comment"}`,
	} {
		for i := range 3 {
			f.Add(uint8(i), []byte(s))
		}
	}
	classes := testClasses()
	names := []string{"smpp", "vault", "echo"}
	f.Fuzz(func(t *testing.T, which uint8, src []byte) {
		schema := classes.classes[names[int(which)%len(names)]]
		v, diags := DecodeWorkerConfigJSON(schema, src, "control message")
		if (v == cty.NilVal) != diags.HasErrors() {
			t.Fatalf("value %#v with errors %v", v, diags.HasErrors())
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without a summary: %+v", d)
			}
			for _, r := range []*hcl.Range{d.Subject, d.Context} {
				if r != nil && (r.Filename != "control message" || r.Start.Byte < 0 || r.Start.Byte > r.End.Byte || r.End.Byte > max(len(src), len("{}"))) {
					t.Fatalf("%q: range %+v outside the input of %d bytes", d.Summary, *r, len(src))
				}
			}
		}
		var out bytes.Buffer
		FormatDiagnostics(&out, diags, nil)
		checkNoSensitiveString(t, schema, src, out.String())
		if diags.HasErrors() {
			return
		}
		if !v.Type().IsObjectType() || len(v.Type().AttributeTypes()) != len(schema) {
			t.Fatalf("value of type %#v for %d attributes", v.Type(), len(schema))
		}
		js, err := configJSON(v)
		if err != nil {
			t.Fatalf("configJSON: %v", err)
		}
		v2, diags := DecodeWorkerConfigJSON(schema, js, "state")
		if diags.HasErrors() {
			t.Fatalf("%s does not decode again: %s", js, diags.Error())
		}
		if !v2.RawEquals(v) {
			t.Fatalf("%s decodes to %#v, not %#v", js, v2, v)
		}
		if js2, err := configJSON(v2); err != nil || !bytes.Equal(js, js2) {
			t.Fatalf("second encoding %s (%v), first %s", js2, err, js)
		}
	})
}

// checkNoSensitiveString checks that out shows no string given to a
// sensitive attribute of schema in src (a key or a value, of at least
// minSecretLen bytes) unless it is also an attribute name or in the value
// of a non-sensitive attribute, or out shows it too for the input with
// those strings replaced (then it comes from the message's fixed text).
func checkNoSensitiveString(t *testing.T, schema sdk.Schema, src []byte, out string) {
	t.Helper()
	secrets, public, ok := splitStrings(schema, src)
	if !ok {
		return
	}
	var redacted *string
	for _, s := range secrets {
		if len(s) < minSecretLen || !strings.Contains(out, s) || strings.Contains(public, s) {
			continue
		}
		if redacted == nil {
			var doc map[string]any
			if err := json.Unmarshal(src, &doc); err != nil {
				return
			}
			for k, v := range doc {
				if a, ok := schema.Lookup(k); ok && a.Sensitive {
					doc[k] = replaceStrings(v)
				}
			}
			b, err := json.Marshal(doc)
			if err != nil {
				return
			}
			_, diags := DecodeWorkerConfigJSON(schema, b, "control message")
			var buf bytes.Buffer
			FormatDiagnostics(&buf, diags, nil)
			r := buf.String()
			redacted = &r
		}
		if !strings.Contains(*redacted, s) {
			t.Fatalf("diagnostics show %q of a sensitive attribute:\n%s", s, out)
		}
	}
}

// splitStrings reads src, a JSON object, token by token and returns the
// strings under its sensitive members and, joined, the others and every
// member name. ok is false if src is not a JSON object or has a member
// twice.
func splitStrings(schema sdk.Schema, src []byte) (secrets []string, public string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, "", false
	}
	var pub []string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey || seen[key] {
			return nil, "", false
		}
		seen[key] = true
		pub = append(pub, key)
		a, found := schema.Lookup(key)
		sensitive := found && a.Sensitive
		depth := 0
		for {
			tok, err := dec.Token()
			if err != nil {
				return nil, "", false
			}
			switch x := tok.(type) {
			case json.Delim:
				if x == '{' || x == '[' {
					depth++
				} else {
					depth--
				}
			case string:
				if sensitive {
					secrets = append(secrets, x)
				} else {
					pub = append(pub, x)
				}
			}
			if depth == 0 {
				break
			}
		}
	}
	return secrets, strings.Join(pub, "\x00"), true
}

// replaceStrings returns v with every string, map key included, replaced
// by "x".
func replaceStrings(v any) any {
	switch x := v.(type) {
	case string:
		return "x"
	case []any:
		for i, e := range x {
			x[i] = replaceStrings(e)
		}
	case map[string]any:
		m := map[string]any{}
		for _, e := range x {
			m["x"] = replaceStrings(e)
		}
		return m
	}
	return v
}
