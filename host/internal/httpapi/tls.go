package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles are the files of the API's TLS setup (host.http_tls), read when
// the server starts listening.
type TLSFiles struct {
	// CertFile is the server's certificate chain (PEM), leaf first;
	// KeyFile its private key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CA certificates (PEM) that client
	// certificates must chain to: every client must then present one.
	ClientCAFile string
}

// config loads the files into a server TLS configuration: TLS 1.2 at
// least, HTTP/1.1 only.
func (f *TLSFiles) config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	if f.ClientCAFile != "" {
		pool, err := LoadCertPool(f.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// LoadCertPool reads a PEM file of CA certificates into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the CA file " + path + " holds no PEM certificate")
	}
	return pool, nil
}
