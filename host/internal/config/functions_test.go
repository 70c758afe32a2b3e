package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
)

func eval(t *testing.T, dir, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "expr.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", src, diags.Error())
	}
	return expr.Value(evalContext(dir))
}

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token.txt"), "tok\n")
	writeFile(t, filepath.Join(dir, "latin1.txt"), "\xff\xfe")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DW_SET", "value")
	t.Setenv("DW_EMPTY", "")
	t.Setenv("DW_UNSET", "")
	os.Unsetenv("DW_UNSET")

	tests := []struct {
		expr string
		want cty.Value
		err  string // substring of the diagnostic detail
	}{
		{expr: `env("DW_SET")`, want: cty.StringVal("value")},
		{expr: `env("DW_EMPTY")`, want: cty.StringVal("")},
		{expr: `env("DW_EMPTY", "default")`, want: cty.StringVal("")},
		{expr: `env("DW_UNSET", "default")`, want: cty.StringVal("default")},
		{expr: `env("DW_UNSET")`, err: `environment variable "DW_UNSET" is not set`},
		{expr: `env("")`, err: `the variable name must not be empty`},
		{expr: `env("A", "b", "c")`, err: `too many arguments`},
		{expr: `file("token.txt")`, want: cty.StringVal("tok\n")},
		{expr: `trimspace(file("token.txt"))`, want: cty.StringVal("tok")},
		{expr: `file("` + filepath.Join(dir, "token.txt") + `")`, want: cty.StringVal("tok\n")},
		{expr: `file("missing.txt")`, err: `file "missing.txt" does not exist (looked for "` + filepath.Join(dir, "missing.txt") + `")`},
		{expr: `file("sub")`, err: `reading file "sub": it is a directory`},
		{expr: `file("latin1.txt")`, err: `file "latin1.txt" is not UTF-8 text`},
		// A device reports a size of 0 and never ends; it is refused
		// rather than read until memory runs out.
		{expr: `file("/dev/zero")`, err: `reading file "/dev/zero": it is not a regular file`},
		{expr: `upper("a")`, want: cty.StringVal("A")},
		{expr: `format("%s:%d", "h", 5)`, want: cty.StringVal("h:5")},
		{expr: `join(",", split(" ", "a b"))`, want: cty.StringVal("a,b")},
		{expr: `replace("a-b", "-", "_")`, want: cty.StringVal("a_b")},
		{expr: `max(1, 3) + min(2, 4) + abs(-1) + ceil(0.5) + floor(1.5)`, want: cty.NumberIntVal(8)},
		{expr: `tonumber("12")`, want: cty.NumberIntVal(12)},
		{expr: `tostring(12)`, want: cty.StringVal("12")},
		{expr: `length(concat(["a"], ["b"]))`, want: cty.NumberIntVal(2)},
		{expr: `jsondecode(jsonencode({a = 1})).a`, want: cty.NumberIntVal(1)},
		{expr: `nosuch(1)`, err: `no function named "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			v, diags := eval(t, dir, tt.expr)
			if tt.err != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.err) {
					t.Fatalf("diagnostics %q, want one containing %q", diags.Error(), tt.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if !v.RawEquals(tt.want) && !(v.Type() == cty.Number && v.Equals(tt.want).True()) {
				t.Errorf("= %#v, want %#v", v, tt.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"SMPP Transport for account1": true,
		"a1":                          true,
		"café":                        true,
		"":                            false,
		"../../bin/sh":                false,
		"a/b":                         false,
		".":                           false,
		"..":                          false,
		"bell\a":                      false,
		"new\nline":                   false,
		" lead":                       false,
		"trail ":                      false,
		"\xff":                        false,
		strings.Repeat("x", 201):      false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestAMQPRedacted(t *testing.T) {
	a := &AMQPConfig{URL: "amqp://guest:pw-SeKrEt@127.0.0.1:5672/vhost"}
	for _, s := range []string{a.Redacted(), a.String(), a.GoString()} {
		if strings.Contains(s, secretMarker) || !strings.Contains(s, "amqp://guest:xxxxx@127.0.0.1:5672/vhost") {
			t.Errorf("redacted form %q", s)
		}
	}
	b, err := a.MarshalJSON()
	if err != nil || strings.Contains(string(b), secretMarker) {
		t.Errorf("MarshalJSON = %s, %v", b, err)
	}
	if got := (&AMQPConfig{URL: "amqp://h/"}).Redacted(); got != "amqp://h/" {
		t.Errorf("no password: %q", got)
	}
	if got := (&AMQPConfig{URL: "amqp://u:p%zz@h/"}).Redacted(); got != amqpurl.Invalid {
		t.Errorf("invalid url: %q", got)
	}
}

func TestFormatDiagnostics(t *testing.T) {
	src := []byte("a {\n\tb = \"x\x1b[31m\"\n}\n")
	files := map[string]*hcl.File{"f.hcl": {Bytes: src}}
	subject := hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 2, Column: 6, Byte: 9}, End: hcl.Pos{Line: 2, Column: 14, Byte: 17}}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagWarning, Summary: "No subject", Detail: "line one\nline two"},
		{Severity: hcl.DiagError, Summary: "Shown", Detail: "d", Subject: &subject},
		{Severity: hcl.DiagError, Summary: "Hidden", Subject: &subject, Extra: sensitiveExtra{}},
	}
	var b strings.Builder
	FormatDiagnostics(&b, diags, files)
	want := "warning: No subject\n  line one\n  line two\n\n" +
		"f.hcl:2:6: error: Shown\n  d\n     2 | \tb = \"x?[31m\"\n       | \t    ^^^^^^^^\n\n" +
		"f.hcl:2:6: error: Hidden\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
