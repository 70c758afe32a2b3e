package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/httpapi"
)

// selfSignedCert writes a self-signed certificate for 127.0.0.1, usable as
// a server's, a client's and as its own CA, and its key (mode 0600).
func selfSignedCert(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, k
}

// tlsAPI runs the real API over TLS in front of d and returns its address.
func tlsAPI(t *testing.T, d httpapi.Doer, token string, files httpapi.TLSFiles) string {
	t.Helper()
	s := httpapi.New(httpapi.Options{Addr: "127.0.0.1:0", Doer: d, Token: token, TLS: &files})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Listening():
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("the API did not listen")
	}
	return s.Addr()
}

func TestTokenFileFlagAndEnv(t *testing.T) {
	const token = "client-file-token-0123456789"
	d := &fakeDoer{}
	url := apiServer(t, d, token)
	t.Setenv(TokenEnv, "")
	t.Setenv(TokenFileEnv, "")
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	open := filepath.Join(dir, "open")
	os.WriteFile(good, []byte(token+"\n"), 0o600)
	os.WriteFile(open, []byte(token+"\n"), 0o600)
	os.Chmod(open, 0o644)

	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token-file", good); rc != 0 {
		t.Errorf("-token-file: rc %d\n%s", rc, stderr)
	}
	_, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token-file", open)
	if rc != exitUnreachable || !strings.Contains(stderr, "chmod 600 "+open) || strings.Contains(stderr, token) {
		t.Errorf("a token file others can read: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token-file", good, "-token", token); rc != exitUsage ||
		!strings.Contains(stderr, "-token or -token-file") {
		t.Errorf("both: rc %d\n%s", rc, stderr)
	}
	t.Setenv(TokenFileEnv, good)
	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url); rc != 0 {
		t.Errorf("$%s: rc %d\n%s", TokenFileEnv, rc, stderr)
	}
	t.Setenv(TokenFileEnv, "")
	cfg := filepath.Join(dir, "host.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf("host {\n  http_addr = %q\n  http_token_file = \"token\"\n}\n", strings.TrimPrefix(url, "http://"))), 0o644)
	if _, stderr, rc := runCLI(t, "restart", "w", "-config", cfg); rc != 0 {
		t.Errorf("http_token_file of -config: rc %d\n%s", rc, stderr)
	}
	if n := len(d.requests()); n != 3 {
		t.Errorf("the host got %d requests, want 3", n)
	}
}

func TestHTTPSClient(t *testing.T) {
	const token = "client-tls-token-0123456789"
	t.Setenv(TokenEnv, "")
	t.Setenv(TokenFileEnv, "")
	t.Setenv(TLSCAEnv, "")
	dir := t.TempDir()
	cert, key := selfSignedCert(t, dir, "server")
	d := &fakeDoer{}
	addr := tlsAPI(t, d, token, httpapi.TLSFiles{CertFile: cert, KeyFile: key})
	url := "https://" + addr

	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token", token, "-tls-ca", cert); rc != 0 {
		t.Errorf("-tls-ca: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token", token); rc != exitUnreachable || !strings.Contains(stderr, "certificate") {
		t.Errorf("without the CA: rc %d\n%s", rc, stderr)
	}
	t.Setenv(TLSCAEnv, cert)
	if _, stderr, rc := runCLI(t, "restart", "w", "-http", url, "-token", token); rc != 0 {
		t.Errorf("$%s: rc %d\n%s", TLSCAEnv, rc, stderr)
	}
	t.Setenv(TLSCAEnv, "")
	// A -config with http_tls: https, trusting the host's own certificate.
	os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o600)
	cfg := filepath.Join(dir, "host.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`host {
  http_addr       = %q
  http_token_file = "token"
  http_tls {
    cert_file = "server.pem"
    key_file  = "server-key.pem"
  }
}
`, addr)), 0o644)
	if _, stderr, rc := runCLI(t, "restart", "w", "-config", cfg); rc != 0 {
		t.Errorf("-config with http_tls: rc %d\n%s", rc, stderr)
	}
	if n := len(d.requests()); n != 3 {
		t.Errorf("the host got %d requests, want 3", n)
	}
}

func TestHTTPSClientCertificate(t *testing.T) {
	t.Setenv(TLSCAEnv, "")
	dir := t.TempDir()
	cert, key := selfSignedCert(t, dir, "server")
	ccert, ckey := selfSignedCert(t, dir, "client")
	addr := tlsAPI(t, &fakeDoer{}, "", httpapi.TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: ccert})
	url := "https://" + addr
	if _, stderr, rc := runCLI(t, "status", "-json", "-http", url, "-tls-ca", cert, "-tls-cert", ccert, "-tls-key", ckey); rc != 0 {
		t.Errorf("with the client certificate: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "status", "-json", "-http", url, "-tls-ca", cert); rc != exitUnreachable {
		t.Errorf("without a client certificate: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "status", "-http", url, "-tls-cert", ccert); rc != exitUsage || !strings.Contains(stderr, "go together") {
		t.Errorf("-tls-cert alone: rc %d\n%s", rc, stderr)
	}
}

// A real host with http_tls serves its API over HTTPS only.
func TestServeOverTLS(t *testing.T) {
	cfg := writeConfig(t, "")
	dir := filepath.Dir(cfg)
	cert, _ := selfSignedCert(t, dir, "server")
	replaceInFile(t, cfg, "  http_addr = \"127.0.0.1:0\"\n", `  http_addr = "127.0.0.1:0"
  http_tls {
    cert_file = "server.pem"
    key_file  = "server-key.pem"
  }
`)
	h := startServe(t, "-config", cfg)
	addr := h.apiAddr()
	if line := h.waitLine("HTTP API listening"); !strings.Contains(line, "tls=true") {
		t.Errorf("the log does not say TLS: %s", line)
	}
	h.waitLine("host running")
	out, stderr, rc := runCLI(t, "status", "-json", "-http", "https://"+addr, "-tls-ca", cert)
	if rc != 0 || !strings.Contains(out, `"host"`) {
		t.Fatalf("status over TLS: rc %d\n%s%s", rc, out, stderr)
	}
	if _, stderr, rc := runCLI(t, "status", "-http", "http://"+addr); rc == 0 {
		t.Errorf("plain HTTP to the TLS port succeeded\n%s", stderr)
	}
}
