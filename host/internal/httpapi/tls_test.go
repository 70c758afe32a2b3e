package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// testPKI is a CA and certificates it signed, written as PEM files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dynworkers test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for 127.0.0.1 (a server's or a client's) and
// returns its certificate and key files.
func (p *testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func (p *testPKI) client(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	pool, err := LoadCertPool(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: testTimeout}
}

// The API over TLS: a client that trusts the CA gets its answers (a
// mutating request with the https Origin included), a plain-HTTP client
// and one that does not trust the CA get none.
func TestTLSRoundTrip(t *testing.T) {
	pki := newTestPKI(t)
	cert, key := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		return control.Reply{OK: true, Result: map[string]string{"op": r.Operation}}
	}}
	s := New(Options{Addr: "127.0.0.1:0", Doer: d, TLS: &TLSFiles{CertFile: cert, KeyFile: key}})
	stop := started(t, s)
	defer stop()
	base := "https://" + s.Addr()

	c := pki.client(t, "", "")
	resp, err := c.Get(base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK     bool
		Result struct{ Op string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != 200 || !rep.OK || rep.Result.Op != control.OpStatus || resp.TLS == nil || resp.ProtoMajor != 1 {
		t.Fatalf("GET over TLS: %d %+v (proto %s)", resp.StatusCode, rep, resp.Proto)
	}

	// The API's origin is https now: the https Origin passes, http not.
	for origin, want := range map[string]int{base: 200, "http://" + s.Addr(): 403} {
		req, _ := http.NewRequest("POST", base+"/v1/workers/w/restart", nil)
		req.Header.Set(RequestHeader, "1")
		req.Header.Set("Origin", origin)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST with Origin %s: %d, want %d", origin, resp.StatusCode, want)
		}
	}

	// Plain HTTP on the TLS port, and a client without the CA: no answer.
	if resp, err := http.Get("http://" + s.Addr() + "/v1/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP got an answer from the TLS port")
		}
	}
	if _, err := http.Get(base + "/v1/status"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the CA: %v", err)
	}
	if n := len(d.requests()); n != 2 {
		t.Errorf("the Doer got %d requests, want 2", n)
	}
}

// With a client CA, only clients with a certificate it signed get in.
func TestTLSClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	cert, key := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	ccert, ckey := pki.issue(t, "client", x509.ExtKeyUsageClientAuth)
	other := newTestPKI(t)
	ocert, okey := other.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	s := New(Options{Addr: "127.0.0.1:0", Doer: &fakeDoer{},
		TLS: &TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: pki.CAFile}})
	stop := started(t, s)
	defer stop()
	url := "https://" + s.Addr() + "/v1/status"

	resp, err := pki.client(t, ccert, ckey).Get(url)
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with a client certificate: %d", resp.StatusCode)
	}
	for name, c := range map[string]*http.Client{"no certificate": pki.client(t, "", ""), "another CA's": pki.client(t, ocert, okey)} {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("%s: got %d", name, resp.StatusCode)
		}
	}
}

// Files that cannot be used stop ListenAndServe with an error naming them.
func TestTLSBadFiles(t *testing.T) {
	pki := newTestPKI(t)
	cert, _ := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	for _, f := range []TLSFiles{{CertFile: cert, KeyFile: missing}, {CertFile: cert, KeyFile: pki.CAFile}} {
		err := New(Options{Addr: "127.0.0.1:0", Doer: &fakeDoer{}, TLS: &f}).ListenAndServe(t.Context())
		if err == nil || !strings.Contains(err.Error(), f.KeyFile) {
			t.Errorf("%+v: %v", f, err)
		}
	}
}
