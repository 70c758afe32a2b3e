package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

func TestDecodeWorkerConfigJSON(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want is the expected config as JSON when there is no error.
		want string
		// errs are substrings of the formatted diagnostics, in order.
		errs []string
	}{
		{
			name: "string converts to number",
			src:  `{"host": "smsc", "port": "2773"}`,
			want: `{"host":"smsc","interval":"5s","labels":null,"password":null,"port":2773,"system_id":null,"tags":null,"username":null}`,
		},
		{
			name: "all types",
			src:  `{"host": "h", "port": 1, "password": "pw", "interval": "1m", "tags": ["a"], "labels": {"k": "v"}, "username": 7}`,
			want: `{"host":"h","interval":"1m","labels":{"k":"v"},"password":"pw","port":1,"system_id":null,"tags":["a"],"username":"7"}`,
		},
		{
			name: "unknown attribute with suggestion",
			src:  `{"host": "h", "prot": 1}`,
			errs: []string{`control message:1:15: error: Unsupported argument`, `An argument named "prot" is not expected here. Did you mean "port"?`},
		},
		{
			name: "missing required",
			src:  `{"port": 1}`,
			errs: []string{`control message:1:1: error: Missing required argument`, `The argument "host" is required, but no definition was found.`},
		},
		{
			name: "empty input is an empty object",
			src:  ``,
			errs: []string{`The argument "host" is required`},
		},
		{
			name: "required null",
			src:  `{"host": null}`,
			errs: []string{`control message:1:10: error: Invalid value`, `The argument "host" is required and must not be null.`},
		},
		{
			name: "wrong type",
			src:  `{"host": "h", "port": "abc"}`,
			errs: []string{`control message:1:23: error: Incorrect attribute value type`, `Inappropriate value for attribute "port": a number is required.`},
		},
		{
			name: "bad duration",
			src:  `{"host": "h", "interval": "5 seconds"}`,
			errs: []string{`error: Invalid duration`, `"5 seconds" is not a duration`},
		},
		{
			name: "several errors at once",
			src:  `{"port": "abc", "interval": "x", "nope": 1}`,
			errs: []string{`Missing required argument`, `"port": a number is required`, `"x" is not a duration`, `"nope" is not expected`},
		},
		{
			name: "templates are not evaluated",
			src:  `{"host": "${env(\"HOME\")}"}`,
			want: `{"host":"${env(\"HOME\")}","interval":"5s","labels":null,"password":null,"port":2773,"system_id":null,"tags":null,"username":null}`,
		},
		{
			name: "not an object",
			src:  `[1]`,
			errs: []string{`error:`},
		},
		{
			name: "syntax error",
			src:  `{"host": `,
			errs: []string{`error:`},
		},
		{
			// HCL's JSON parser puts this one past the end of the
			// input; it is reported at the end.
			name: "unterminated string at the end",
			src:  "{\n \"",
			errs: []string{`control message:2:3: error: Invalid JSON string`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, diags := DecodeWorkerConfigJSON(smppSchema, []byte(tt.src), "control message")
			var b bytes.Buffer
			FormatDiagnostics(&b, diags, nil)
			out := b.String()
			if tt.errs == nil {
				if diags.HasErrors() {
					t.Fatalf("unexpected errors:\n%s", out)
				}
				got, err := configJSON(v)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Errorf("got  %s\nwant %s", got, tt.want)
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatalf("no error; value %#v", v)
			}
			if v != cty.NilVal {
				t.Errorf("value after errors = %#v, want cty.NilVal", v)
			}
			rest := out
			for _, e := range tt.errs {
				i := strings.Index(rest, e)
				if i < 0 {
					t.Fatalf("diagnostics lack %q (in order):\n%s", e, out)
				}
				rest = rest[i+len(e):]
			}
		})
	}
}

// TestDecodeWorkerConfigJSONSensitive checks that no sensitive value is
// repeated in diagnostics, whatever is wrong with it.
func TestDecodeWorkerConfigJSONSensitive(t *testing.T) {
	for _, src := range []string{
		`{"token": ["tok-SeKrEt"]}`,
		`{"token": {"a": "tok-SeKrEt"}}`,
		`{"token": "t", "pin": "pin-SeKrEt"}`,
		`{"token": "t", "rotate": "rot-SeKrEt"}`,
		`{"token": "t", "rotate": "-1s", "pin": "SeKrEt"}`,
		`{"token": "t", "enabled": "bool-SeKrEt"}`, // not sensitive, but converts without repeating it
	} {
		_, diags := DecodeWorkerConfigJSON(vaultSchema, []byte(src), "control message")
		if !diags.HasErrors() {
			t.Errorf("%s: no error", src)
		}
		var b bytes.Buffer
		FormatDiagnostics(&b, diags, nil)
		if strings.Contains(b.String(), secretMarker) {
			t.Errorf("%s: diagnostics leak the secret:\n%s", src, b.String())
		}
		for _, d := range diags {
			if d.Expression != nil || d.EvalContext != nil {
				t.Errorf("%s: diagnostic %q keeps its expression", src, d.Summary)
			}
		}
	}
}

// TestSameDiagnosticsHCLAndJSON checks that HCL and JSON report the same
// problems with the same words.
func TestSameDiagnosticsHCLAndJSON(t *testing.T) {
	_, jd := DecodeWorkerConfigJSON(smppSchema, []byte(`{"prot": 1, "port": "abc", "interval": "x"}`), "msg")
	dir := t.TempDir()
	writeFile(t, dir+"/w.hcl", "worker \"w\" {\n  class = \"smpp\"\n  config {\n    prot = 1\n    port = \"abc\"\n    interval = \"x\"\n  }\n}\n")
	_, hd := Load(dir+"/w.hcl", testClasses())
	summaries := func(ds []string) string { return strings.Join(ds, " | ") }
	var js, hs []string
	for _, d := range jd {
		js = append(js, d.Summary+": "+d.Detail)
	}
	for _, d := range hd {
		hs = append(hs, d.Summary+": "+d.Detail)
	}
	if summaries(js) != summaries(hs) {
		t.Errorf("JSON and HCL differ:\njson: %s\nhcl:  %s", summaries(js), summaries(hs))
	}
}
