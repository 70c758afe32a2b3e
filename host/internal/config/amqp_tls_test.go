package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

// The tls block: paths relative to the file, every file read and checked
// when the configuration is loaded, each problem a diagnostic on the
// attribute that names the file.
func TestAMQPTLSBlock(t *testing.T) {
	dir := t.TempDir()
	ca := brokertest.NewCA(t, dir, "ca")
	client := ca.Client(t, dir, "client")
	other := brokertest.NewCA(t, dir, "other").Client(t, dir, "other-client")
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, "hello\n")
	readable := filepath.Join(dir, "readable-key.pem")
	key, err := os.ReadFile(client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, readable, string(key))
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}

	load := func(t *testing.T, amqp string) (*Config, string) {
		t.Helper()
		path := filepath.Join(dir, "c.hcl")
		writeFile(t, path, amqp)
		cfg, diags := Load(path, testClasses())
		var b strings.Builder
		for _, d := range diags {
			fmt.Fprintf(&b, "%s: %s: %s\n", d.Subject, d.Summary, d.Detail)
		}
		return cfg, b.String()
	}
	block := func(url string, attrs ...string) string {
		return fmt.Sprintf("amqp {\n  url = %q\n  tls {\n    %s\n  }\n}\n", url, strings.Join(attrs, "\n    "))
	}
	const url = "amqps://u:pw@rabbit.example:5671/"

	t.Run("good", func(t *testing.T) {
		cfg, diags := load(t, block(url, `ca_file = "ca-ca.pem"`, `cert_file = "client.pem"`, `key_file = "client-key.pem"`, `server_name = "rabbit.internal"`))
		if cfg == nil || diags != "" {
			t.Fatalf("load: %s", diags)
		}
		want := AMQPTLS{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "rabbit.internal"}
		if cfg.AMQP.TLS == nil || *cfg.AMQP.TLS != want {
			t.Errorf("TLS = %+v, want %+v", cfg.AMQP.TLS, want)
		}
		c, err := cfg.AMQP.TLSConfig()
		if err != nil || c.MinVersion != tls.VersionTLS12 || c.InsecureSkipVerify || c.RootCAs == nil ||
			len(c.Certificates) != 1 || c.ServerName != "rabbit.internal" {
			t.Errorf("TLSConfig = %+v, %v", c, err)
		}
	})
	t.Run("amqps without a tls block: the system's roots, verification on", func(t *testing.T) {
		cfg, diags := load(t, fmt.Sprintf("amqp {\n  url = %q\n}\n", url))
		if cfg == nil || diags != "" {
			t.Fatalf("load: %s", diags)
		}
		c, err := cfg.AMQP.TLSConfig()
		if err != nil || c == nil || c.RootCAs != nil || c.InsecureSkipVerify || c.MinVersion != tls.VersionTLS12 {
			t.Errorf("TLSConfig = %+v, %v", c, err)
		}
		cfg, _ = load(t, "amqp {\n  url = \"amqp://h/\"\n}\n")
		if c, err := cfg.AMQP.TLSConfig(); c != nil || err != nil {
			t.Errorf("amqp:// TLSConfig = %+v, %v; want nil", c, err)
		}
	})
	for _, c := range []struct {
		name string
		src  string
		want []string
	}{
		{"missing CA", block(url, `ca_file = "nope.pem"`),
			[]string{"c.hcl:4,15-25", "Cannot read the CA file \"" + filepath.Join(dir, "nope.pem") + "\": no such file or directory"}},
		{"CA file without a certificate", block(url, `ca_file = "not.pem"`),
			[]string{"The CA file \"" + notPEM + "\" holds no PEM certificate"}},
		{"key without certificate", block(url, `key_file = "client-key.pem"`),
			[]string{"c.hcl:4,16-", "Key_file is set without cert_file"}},
		{"unreadable key", block(url, `cert_file = "client.pem"`, `key_file = "gone-key.pem"`),
			[]string{"c.hcl:5,16-", "Cannot read the private key \"" + filepath.Join(dir, "gone-key.pem") + "\""}},
		{"key of another certificate", block(url, `cert_file = "client.pem"`, fmt.Sprintf("key_file = %q", other.KeyFile)),
			[]string{"c.hcl:5,16-", "cannot be used with the client certificate \"" + client.CertFile + "\""}},
		{"certificate file that is a key", block(url, `cert_file = "client-key.pem"`, `key_file = "client-key.pem"`),
			[]string{"The client certificate \"" + client.KeyFile + "\" cannot be used"}},
		{"insecure_skip_verify", block(url, `insecure_skip_verify = true`),
			[]string{"Unsupported argument", "insecure_skip_verify is not supported"}},
		{"tls with amqp://", block("amqp://h:5672/", `ca_file = "ca-ca.pem"`),
			[]string{"TLS needs an amqps:// URL"}},
		{"TLS parameters in the url", fmt.Sprintf("amqp {\n  url = %q\n}\n", url+"?cacertfile=/x.pem"),
			[]string{`sets the TLS parameter "cacertfile"`, "in a tls block"}},
		{"empty server name", block(url, `server_name = ""`),
			[]string{`"server_name" must not be empty`}},
		{"two tls blocks", "amqp {\n  url = \"" + url + "\"\n  tls {}\n  tls {}\n}\n",
			[]string{"Duplicate tls block"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, diags := load(t, c.src)
			if cfg != nil {
				t.Errorf("loaded a config with %s", c.name)
			}
			for _, w := range c.want {
				if !strings.Contains(diags, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, diags)
				}
			}
			if strings.Contains(diags, "pw") {
				t.Errorf("a diagnostic repeats the url's password:\n%s", diags)
			}
		})
	}
	t.Run("key readable by others: refused", func(t *testing.T) {
		cfg, diags := load(t, block(url, `cert_file = "client.pem"`, `key_file = "readable-key.pem"`))
		if cfg != nil || !strings.Contains(diags, "accessible to its group or to others") || !strings.Contains(diags, "chmod 600") {
			t.Errorf("cfg %v, diagnostics:\n%s", cfg, diags)
		}
	})
	t.Run("a file gone after loading: TLSConfig names it", func(t *testing.T) {
		gone := filepath.Join(t.TempDir(), "ca.pem")
		a := &AMQPConfig{URL: url, TLS: &AMQPTLS{CAFile: gone}}
		if _, err := a.TLSConfig(); err == nil || !strings.Contains(err.Error(), "amqp tls ca_file: cannot read the CA file \""+gone+"\"") {
			t.Errorf("TLSConfig: %v", err)
		}
	})
}
