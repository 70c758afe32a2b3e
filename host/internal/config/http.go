package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// HTTPSettings are the HTTP API's settings of the host block besides
// http_addr and http_token: where the token comes from, the names the Host
// header may carry, TLS and timeouts.
type HTTPSettings struct {
	// TokenFile is the file http_token_file names (its content is
	// HostConfig.HTTPToken); "" when the token is inline or unset.
	TokenFile string
	// AllowedHosts are the further names the Host header may carry
	// (http_allowed_hosts): exact names, or "*.example.com".
	AllowedHosts []string
	// TLS is the http_tls block, nil without one: the API then serves
	// plain HTTP.
	TLS *HTTPTLS
	// The http_timeouts block, with defaults applied.
	ReadHeaderTimeout time.Duration
	BodyTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
}

// HTTPTLS is the http_tls block; paths are resolved like plugin_dir.
type HTTPTLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string // "" when client certificates are not required
}

// Defaults of the http_timeouts block.
const (
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	DefaultHTTPBodyTimeout       = 30 * time.Second
	DefaultHTTPWriteTimeout      = 30 * time.Second
	DefaultHTTPIdleTimeout       = 2 * time.Minute
)

func defaultHTTPSettings() HTTPSettings {
	return HTTPSettings{
		ReadHeaderTimeout: DefaultHTTPReadHeaderTimeout,
		BodyTimeout:       DefaultHTTPBodyTimeout,
		WriteTimeout:      DefaultHTTPWriteTimeout,
		IdleTimeout:       DefaultHTTPIdleTimeout,
	}
}

// The nested blocks of the host block that decodeHTTP decodes.
var hostHTTPBlocks = []hcl.BlockHeaderSchema{{Type: "http_tls"}, {Type: "http_timeouts"}}

var httpTLSSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "cert_file", Required: true},
	{Name: "key_file", Required: true},
	{Name: "client_ca_file"},
}}

var httpTimeoutsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "read_header"}, {Name: "body"}, {Name: "write"}, {Name: "idle"},
}}

// maxHTTPTimeout bounds each HTTP timeout: a day is already no limit.
const maxHTTPTimeout = 24 * time.Hour

// maxTokenFileSize bounds http_token_file.
const maxTokenFileSize = 4096

// decodeHTTP decodes http_token_file, http_allowed_hosts and the http_tls
// and http_timeouts blocks of a host block.
func (m *merger) decodeHTTP(sc *scope, content *hcl.BodyContent, h *HostConfig) {
	attrs := content.Attributes
	if attr := attrs["http_token_file"]; attr != nil {
		var p string
		switch {
		case !sc.str(attr, &p):
		case attrs["http_token"] != nil:
			sc.errorf(attr.NameRange, "Conflicting HTTP token settings",
				"Set either http_token or http_token_file, not both.")
		case p == "":
			sc.errorf(attr.Expr.Range(), "Invalid HTTP token file", "The argument \"http_token_file\" must not be empty.")
		default:
			path := resolvePath(sc.dir, p)
			if tok, problem := readTokenFile(path); problem != "" {
				sc.errorf(attr.Expr.Range(), "Invalid HTTP token file", "%s", problem)
			} else {
				h.HTTPToken = tok
				h.HTTP.TokenFile = path
			}
		}
	}
	if attr := attrs["http_allowed_hosts"]; attr != nil {
		if v, ok := sc.value(attr, cty.List(cty.String)); ok {
			var hosts []string
			for i, e := range v.AsValueSlice() {
				if e.IsNull() {
					sc.errorf(attr.Expr.Range(), "Invalid allowed host", "Element %d of http_allowed_hosts is null: give a host name.", i)
					continue
				}
				name := e.AsString()
				if err := checkAllowedHost(name); err != "" {
					sc.errorf(attr.Expr.Range(), "Invalid allowed host", "Element %d of http_allowed_hosts, %q, %s.", i, name, err)
					continue
				}
				hosts = append(hosts, strings.ToLower(name))
			}
			h.HTTP.AllowedHosts = hosts
		}
	}
	seen := map[string]*hcl.Range{}
	for _, b := range content.Blocks {
		if first := seen[b.Type]; first != nil {
			sc.errorf(b.DefRange, "Duplicate "+b.Type+" block", "Only one %q block is allowed in the host block; the first is at %s.", b.Type, first)
			continue
		}
		seen[b.Type] = b.DefRange.Ptr()
		switch b.Type {
		case "http_tls":
			h.HTTP.TLS = decodeHTTPTLS(sc, b)
		case "http_timeouts":
			decodeHTTPTimeouts(sc, b, &h.HTTP)
		}
	}
}

// checkAllowedHost returns why name cannot be an http_allowed_hosts entry,
// or "".
func checkAllowedHost(name string) string {
	bare := strings.TrimPrefix(name, "*.")
	switch {
	case bare == "" || bare == "*":
		return "is empty: give a host name such as \"dynworkers.example.com\" or \"*.example.com\""
	case strings.ContainsAny(bare, ":/[] *"):
		return "is not a host name: give the name alone, without a scheme, port or path (such as \"dynworkers.example.com\")"
	case len(bare) > 253:
		return "is longer than 253 characters"
	}
	return ""
}

// readTokenFile reads an http_token_file: a regular file readable by its
// owner only, holding the token (surrounding white space is dropped). It
// returns the token, or why it cannot be used; the message never holds the
// token.
func readTokenFile(path string) (string, string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Sprintf("Cannot read the token file: %v.", err)
	case !st.Mode().IsRegular():
		return "", fmt.Sprintf("The token file %s is not a regular file.", path)
	case st.Mode().Perm()&0o077 != 0:
		return "", fmt.Sprintf("The token file %s is accessible to its group or to others (mode %04o): it holds a secret; run `chmod 600 %s`.",
			path, st.Mode().Perm(), path)
	case st.Size() > maxTokenFileSize:
		return "", fmt.Sprintf("The token file %s is larger than %d bytes: it must hold the token alone.", path, maxTokenFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Sprintf("Cannot read the token file: %v.", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(tok) < minTokenLen:
		return "", fmt.Sprintf("The token in %s must be at least %d characters long.", path, minTokenLen)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Sprintf("The token file %s must hold one token on one line, without spaces.", path)
	}
	return tok, ""
}

func decodeHTTPTLS(sc *scope, b *hcl.Block) *HTTPTLS {
	content, d := b.Body.Content(httpTLSSchema)
	for _, diag := range d {
		if diag.Summary == "Missing required argument" {
			diag.Subject = b.DefRange.Ptr()
		}
	}
	sc.add(d...)
	attrs := content.Attributes
	var t HTTPTLS
	ok := true
	for _, f := range []struct {
		name string
		dst  *string
	}{{"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}, {"client_ca_file", &t.ClientCAFile}} {
		attr := attrs[f.name]
		if attr == nil {
			continue
		}
		var p string
		if !sc.str(attr, &p) {
			ok = false
			continue
		}
		if p == "" {
			sc.errorf(attr.Expr.Range(), "Invalid TLS file", "The argument %q must not be empty.", f.name)
			ok = false
			continue
		}
		*f.dst = resolvePath(sc.dir, p)
	}
	if !ok || t.CertFile == "" || t.KeyFile == "" {
		return nil
	}
	if st, err := os.Stat(t.KeyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		sc.errorf(attrs["key_file"].Expr.Range(), "Invalid TLS key file",
			"The key file %s is accessible to its group or to others (mode %04o): it holds a secret; run `chmod 600 %s`.",
			t.KeyFile, st.Mode().Perm(), t.KeyFile)
		return nil
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		sc.errorf(attrs["cert_file"].Expr.Range(), "Invalid TLS certificate",
			"Cannot load the certificate %s with the key %s: %v.", t.CertFile, t.KeyFile, err)
		return nil
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			err = fmt.Errorf("it holds no PEM certificate")
		}
		if err != nil {
			sc.errorf(attrs["client_ca_file"].Expr.Range(), "Invalid client CA file", "Cannot use %s as the client CA file: %v.", t.ClientCAFile, err)
			return nil
		}
	}
	return &t
}

func decodeHTTPTimeouts(sc *scope, b *hcl.Block, h *HTTPSettings) {
	content, d := b.Body.Content(httpTimeoutsSchema)
	sc.add(d...)
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"read_header", &h.ReadHeaderTimeout}, {"body", &h.BodyTimeout}, {"write", &h.WriteTimeout}, {"idle", &h.IdleTimeout}} {
		attr := content.Attributes[f.name]
		v := *f.dst
		sc.duration(attr, &v)
		if v > maxHTTPTimeout {
			sc.errorf(attr.Expr.Range(), "Invalid timeout", "The argument %q must be at most %s: a longer timeout is no limit at all.", f.name, "24h")
			continue
		}
		*f.dst = v
	}
}
