package config

import (
	"os"
	"strings"
	"testing"
)

// The name of an environment variable is not a secret, its value is: with
// the amqp block's url = env("AMQP_URL") (a sensitive attribute) and
// AMQP_URL unset, the error names AMQP_URL; when it is set, its value
// appears nowhere, and a default given to env() is hidden too.
func TestEnvErrorNamesTheVariableOfASensitiveAttribute(t *testing.T) {
	t.Setenv("AMQP_URL", "")
	os.Unsetenv("AMQP_URL")
	diags := loadSrc(t, "amqp {\n  url = env(\"AMQP_URL\")\n}\n")
	var b strings.Builder
	FormatDiagnostics(&b, diags, nil)
	out := b.String()
	if !strings.Contains(out, `environment variable "AMQP_URL" is not set`) || strings.Contains(out, RedactedValue) {
		t.Errorf("the error does not name AMQP_URL:\n%s", out)
	}
	if !strings.Contains(out, "host.hcl:2:9") {
		t.Errorf("the error has no position:\n%s", out)
	}

	// A default is a value: hidden wherever it would show.
	diags = loadSrc(t, "amqp {\n  url = env(\"AMQP_URL\", \"amqp://u:dEfAuLtPw@nowhere\")\n  tls { ca_file = \"/nonexistent-ca\" }\n}\n")
	b.Reset()
	FormatDiagnostics(&b, diags, nil)
	if strings.Contains(b.String(), "dEfAuLtPw") {
		t.Errorf("the default's value leaks:\n%s", b.String())
	}

	// Set, and in error (not an amqp URL): the value is hidden, the name
	// is not needed.
	t.Setenv("AMQP_URL", "ftp://guest:sEcReTpw@host/")
	diags = loadSrc(t, "amqp {\n  url = env(\"AMQP_URL\")\n}\n")
	b.Reset()
	FormatDiagnostics(&b, diags, nil)
	if !diags.HasErrors() || strings.Contains(b.String(), "sEcReTpw") {
		t.Errorf("a bad AMQP_URL: %s", b.String())
	}
}
