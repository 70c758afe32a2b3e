package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/httpapi"
)

// Environment variables the client commands read when the flags are not
// given (TokenEnv is the token itself).
const (
	TokenFileEnv = "DYNWORKERS_HTTP_TOKEN_FILE" // -token-file
	TLSCAEnv     = "DYNWORKERS_HTTP_CA_FILE"    // -tls-ca
)

// maxTokenFileBytes bounds a token file.
const maxTokenFileBytes = 4096

// readClientTokenFile reads a token file as the host reads http_token_file:
// a regular file that its group and others cannot read, holding the token.
// Errors never hold the token.
func readClientTokenFile(path string) (string, error) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("token file: %w", err)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("token file %s is not a regular file", path)
	case st.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("token file %s is accessible to its group or to others (mode %04o): it holds a secret; run `chmod 600 %s`",
			path, st.Mode().Perm(), path)
	case st.Size() > maxTokenFileBytes:
		return "", fmt.Errorf("token file %s is larger than %d bytes: it must hold the token alone", path, maxTokenFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// httpToken returns the token to send: -token, -token-file,
// $DYNWORKERS_HTTP_TOKEN, $DYNWORKERS_HTTP_TOKEN_FILE, else the config's
// http_token or http_token_file (when this user can read it).
func (o *clientOptions) httpToken() (string, error) {
	switch {
	case o.token != "":
		return o.token, nil
	case o.tokenFile != "":
		return readClientTokenFile(o.tokenFile)
	}
	if t := os.Getenv(TokenEnv); t != "" {
		return t, nil
	}
	if p := os.Getenv(TokenFileEnv); p != "" {
		return readClientTokenFile(p)
	}
	if f, _ := o.config(); f != nil {
		return f.Host.HTTPToken, nil
	}
	return "", nil
}

// configTLS reports whether the -config host serves HTTPS (an http_tls
// block), and its certificate file.
func (o *clientOptions) configTLS() (bool, string) {
	if o.httpURL != "" {
		return false, ""
	}
	if f, _ := o.config(); f != nil && f.Host.HTTP.TLS != nil {
		return true, f.Host.HTTP.TLS.CertFile
	}
	return false, ""
}

// httpClient returns the client for the API: the system's roots, plus
// -tls-ca (or $DYNWORKERS_HTTP_CA_FILE), plus the host's own certificate
// when the address comes from a -config with http_tls; and -tls-cert and
// -tls-key as the client certificate, for a host with client_ca_file.
func (o *clientOptions) httpClient() (*http.Client, error) {
	caFile := o.tlsCA
	if caFile == "" {
		caFile = os.Getenv(TLSCAEnv)
	}
	_, hostCert := o.configTLS()
	if caFile == "" && hostCert == "" && o.tlsCert == "" {
		return http.DefaultClient, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" || hostCert != "" {
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		for _, f := range []string{caFile, hostCert} {
			if f == "" {
				continue
			}
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading the CA file: %w", err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, errors.New("the CA file " + f + " holds no PEM certificate")
			}
		}
		cfg.RootCAs = roots
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate %s and key %s: %w", o.tlsCert, o.tlsKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.ForceAttemptHTTP2 = false
	tr.IdleConnTimeout = 10 * time.Second
	return &http.Client{Transport: tr}, nil
}

// setAPIHeaders sets what every request to the API carries: the header
// that tells the API a program sent it (httpapi.RequestHeader) and the
// token.
func setAPIHeaders(req *http.Request, token string) {
	req.Header.Set(httpapi.RequestHeader, "1")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
