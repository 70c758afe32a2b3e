package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDidYouMeanIsStable: HCL's own hint depended on map order ("hoyt"
// got "port" or "host"; found by FuzzLoad); the hint is now the closest
// name, in HCL and in JSON alike, and never one the body sets already.
func TestDidYouMeanIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hcl")
	writeFile(t, path, "worker \"w\" {\n  class = \"smpp\"\n  config {\n    hoyt = \"smsc\"\n  }\n}\nworker \"v\" {\n  class = \"smpp\"\n  config {\n    host = \"h\"\n    hoyt = \"smsc\"\n  }\n}\n")
	for range 50 {
		_, all := Load(path, testClasses())
		var diags []string
		for _, d := range all {
			if d.Summary == "Unsupported argument" {
				diags = append(diags, d.Detail)
			}
		}
		if len(diags) != 2 {
			t.Fatalf("diagnostics: %s", all.Error())
		}
		if want := `An argument named "hoyt" is not expected here. Did you mean "host"?`; diags[0] != want {
			t.Fatalf("detail = %q, want %q", diags[0], want)
		}
		if strings.Contains(diags[1], `"host"?`) {
			t.Fatalf("detail = %q suggests an attribute that is set", diags[1])
		}
		_, jd := DecodeWorkerConfigJSON(smppSchema, []byte(`{"hoyt": "smsc"}`), "msg")
		var unsupported []string
		for _, d := range jd {
			if d.Summary == "Unsupported argument" {
				unsupported = append(unsupported, d.Detail)
			}
		}
		if len(unsupported) != 1 || unsupported[0] != `An argument named "hoyt" is not expected here. Did you mean "host"?` {
			t.Fatalf("JSON diagnostics: %q", unsupported)
		}
	}
}

// TestDidYouMeanFunctionIsStable: HCL's hint for an unknown function
// depended on map order too ("Xn" got "min" or "env"; found by FuzzLoad); ties now go to the
// name that sorts first.
func TestDidYouMeanFunctionIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hcl")
	writeFile(t, path, "host {\n  name = Xn()\n  log_level = uper(\"info\")\n}\n")
	for range 50 {
		_, diags := Load(path, testClasses())
		var got []string
		for _, d := range diags {
			got = append(got, d.Detail)
		}
		want := []string{`There is no function named "Xn". Did you mean "env"?`, `There is no function named "uper". Did you mean "upper"?`}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("details = %q, want %q", got, want)
		}
	}
}
