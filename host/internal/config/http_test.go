package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseHost writes a config whose host block is body into dir and parses
// it; it returns the host settings and the diagnostics as text.
func parseHost(t *testing.T, dir, body string) (HostConfig, string) {
	t.Helper()
	path := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(path, []byte("host {\n"+body+"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, diags := Parse(path)
	if f == nil {
		t.Fatalf("Parse: %v", diags)
	}
	var msgs []string
	for _, d := range diags {
		msgs = append(msgs, d.Summary+": "+d.Detail)
	}
	return f.Host, strings.Join(msgs, "\n")
}

func writeModeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func TestHTTPTokenFile(t *testing.T) {
	dir := t.TempDir()
	const token = "file-token-0123456789abcdef"
	writeModeFile(t, filepath.Join(dir, "token"), token+"\n", 0o600)
	writeModeFile(t, filepath.Join(dir, "open"), token, 0o644)
	writeModeFile(t, filepath.Join(dir, "group"), token, 0o640)
	writeModeFile(t, filepath.Join(dir, "short"), "short", 0o600)
	writeModeFile(t, filepath.Join(dir, "two"), token+" "+token, 0o600)
	writeModeFile(t, filepath.Join(dir, "big"), strings.Repeat("x", 5000), 0o600)

	h, msgs := parseHost(t, dir, `http_token_file = "token"
http_addr = "0.0.0.0:7780"`)
	if msgs != "" || h.HTTPToken != token || h.HTTP.TokenFile != filepath.Join(dir, "token") {
		t.Fatalf("a good token file: token set %v, file %q, diagnostics %q", h.HTTPToken == token, h.HTTP.TokenFile, msgs)
	}
	tests := []struct{ body, want string }{
		{`http_token_file = "open"`, "accessible to its group or to others (mode 0644): it holds a secret; run `chmod 600 " + filepath.Join(dir, "open") + "`"},
		{`http_token_file = "group"`, "chmod 600 " + filepath.Join(dir, "group")},
		{`http_token_file = "nope"`, "Cannot read the token file"},
		{`http_token_file = "short"`, "at least 16 characters"},
		{`http_token_file = "two"`, "one token on one line"},
		{`http_token_file = "big"`, "larger than 4096 bytes"},
		{`http_token_file = "."`, "not a regular file"},
		{`http_token_file = ""`, "must not be empty"},
		{"http_token_file = \"token\"\nhttp_token = \"inline-token-0123456789\"", "either http_token or http_token_file"},
		{`http_addr = "0.0.0.0:7780"`, "set http_token_file"},
	}
	for _, tt := range tests {
		h, msgs := parseHost(t, dir, tt.body)
		if !strings.Contains(msgs, tt.want) {
			t.Errorf("%s:\n%s\nwant %q", tt.body, msgs, tt.want)
		}
		if strings.Contains(msgs, token) {
			t.Errorf("%s: a diagnostic holds the token: %s", tt.body, msgs)
		}
		if h.HTTPToken == token && !strings.Contains(tt.body, "http_token =") {
			t.Errorf("%s: the token was taken", tt.body)
		}
	}
}

func TestHTTPAllowedHosts(t *testing.T) {
	dir := t.TempDir()
	h, msgs := parseHost(t, dir, `http_allowed_hosts = ["Dyn.Example.com", "*.corp.example"]`)
	if msgs != "" || !reflect.DeepEqual(h.HTTP.AllowedHosts, []string{"dyn.example.com", "*.corp.example"}) {
		t.Errorf("good list: %q %s", h.HTTP.AllowedHosts, msgs)
	}
	for body, want := range map[string]string{
		`http_allowed_hosts = ["http://dyn.example.com"]`:    `Element 0 of http_allowed_hosts, "http://dyn.example.com", is not a host name`,
		`http_allowed_hosts = ["a", "dyn.example.com:7780"]`: `Element 1 of http_allowed_hosts, "dyn.example.com:7780", is not a host name`,
		`http_allowed_hosts = [""]`:                          "is empty",
		`http_allowed_hosts = ["*."]`:                        "is empty",
		`http_allowed_hosts = "dyn.example.com"`:             "list of string required",
	} {
		if _, msgs := parseHost(t, dir, body); !strings.Contains(msgs, want) {
			t.Errorf("%s:\n%s\nwant %q", body, msgs, want)
		}
	}
}

func TestHTTPTimeouts(t *testing.T) {
	dir := t.TempDir()
	h, msgs := parseHost(t, dir, "")
	want := HTTPSettings{ReadHeaderTimeout: 10 * time.Second, BodyTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	if msgs != "" || !reflect.DeepEqual(h.HTTP, want) {
		t.Errorf("defaults: %+v %s", h.HTTP, msgs)
	}
	h, msgs = parseHost(t, dir, `http_timeouts {
  read_header = "1s"
  body        = "2s"
  write       = "3s"
  idle        = "4s"
}`)
	want = HTTPSettings{ReadHeaderTimeout: time.Second, BodyTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second}
	if msgs != "" || !reflect.DeepEqual(h.HTTP, want) {
		t.Errorf("set: %+v %s", h.HTTP, msgs)
	}
	for body, want := range map[string]string{
		"http_timeouts {\n body = \"0s\"\n}":               `"body" must be a duration greater than zero`,
		"http_timeouts {\n idle = \"48h\"\n}":              `"idle" must be at most 24h`,
		"http_timeouts {\n read = \"1s\"\n}":               `An argument named "read" is not expected here`,
		"http_timeouts {\n}\nhttp_timeouts {\n}":           "Only one \"http_timeouts\" block is allowed",
		"http_timeouts {\n read_header = \"soon\"\n}":      `"soon" is not a duration`,
		"http_timeouts {\n read_header = \"1s\"\n}\nx = 1": `An argument named "x" is not expected here`,
	} {
		if _, msgs := parseHost(t, dir, body); !strings.Contains(msgs, want) {
			t.Errorf("%s:\n%s\nwant %q", body, msgs, want)
		}
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert := writeModeFile(t, filepath.Join(dir, "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	k := writeModeFile(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), 0o600)
	return cert, k
}

func TestHTTPTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	h, msgs := parseHost(t, dir, `http_tls {
  cert_file      = "cert.pem"
  key_file       = "key.pem"
  client_ca_file = "cert.pem"
}`)
	if msgs != "" || h.HTTP.TLS == nil || *h.HTTP.TLS != (HTTPTLS{CertFile: cert, KeyFile: key, ClientCAFile: cert}) {
		t.Fatalf("good block: %+v %s", h.HTTP.TLS, msgs)
	}
	writeModeFile(t, filepath.Join(dir, "open-key.pem"), mustRead(t, key), 0o644)
	writeModeFile(t, filepath.Join(dir, "junk.pem"), "not a certificate", 0o600)
	for body, want := range map[string]string{
		"http_tls {\n cert_file = \"cert.pem\"\n}":                                                          `The argument "key_file" is required`,
		"http_tls {\n cert_file = \"cert.pem\"\n key_file = \"open-key.pem\"\n}":                            "run `chmod 600 " + filepath.Join(dir, "open-key.pem") + "`",
		"http_tls {\n cert_file = \"junk.pem\"\n key_file = \"key.pem\"\n}":                                 "Cannot load the certificate " + filepath.Join(dir, "junk.pem"),
		"http_tls {\n cert_file = \"cert.pem\"\n key_file = \"nope.pem\"\n}":                                "nope.pem",
		"http_tls {\n cert_file = \"cert.pem\"\n key_file = \"key.pem\"\n client_ca_file = \"junk.pem\"\n}": "holds no PEM certificate",
		"http_tls {\n cert_file = \"\"\n key_file = \"key.pem\"\n}":                                         `"cert_file" must not be empty`,
	} {
		h, msgs := parseHost(t, dir, body)
		if !strings.Contains(msgs, want) {
			t.Errorf("%s:\n%s\nwant %q", body, msgs, want)
		}
		if h.HTTP.TLS != nil {
			t.Errorf("%s: the block was taken", body)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
