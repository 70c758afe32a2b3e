package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// AMQPTLS is the amqp block's tls block: how the host checks the broker
// and proves who it is over amqps://. Paths are joined with the directory
// of the file that sets them.
//
//	amqp {
//	  url = "amqps://dynworkers@rabbit.example:5671/"
//	  tls {
//	    ca_file     = "/etc/dynworkers/tls/ca.pem"      # trust this CA, not the system's
//	    cert_file   = "/etc/dynworkers/tls/client.pem"  # the host's client certificate
//	    key_file    = "/etc/dynworkers/tls/client-key.pem"
//	    server_name = "rabbit.example"                  # default: the URL's host
//	  }
//	}
//
// The broker's certificate is always verified (chain and name); there is
// no way to turn that off.
type AMQPTLS struct {
	// CAFile holds the PEM certificates of the CAs the broker's certificate
	// must chain to; empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are the host's client certificate and its
	// private key (PEM); both or neither.
	CertFile, KeyFile string
	// ServerName is the name the broker's certificate must be valid for;
	// empty: the URL's host.
	ServerName string
}

var amqpTLSSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "ca_file"},
		{Name: "cert_file"},
		{Name: "key_file"},
		{Name: "server_name"},
		{Name: "insecure_skip_verify"},
	},
}

// uriTLSParams are the query parameters amqp091-go reads TLS settings
// from; the host passes its own tls.Config, which makes the library ignore
// them, so the loader refuses them rather than let them be silently unused.
var uriTLSParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}

// TLSConfig returns the crypto/tls configuration to dial the broker with:
// nil for an amqp:// URL, else one built from the tls block (the system's
// roots and no client certificate without one). Its error names the file
// and the setting at fault. The files are read at each call: the host
// reads them once, when it starts (a renewed certificate needs a restart
// of the host).
func (a *AMQPConfig) TLSConfig() (*tls.Config, error) {
	if a == nil || !strings.HasPrefix(strings.ToLower(a.URL), "amqps://") {
		return nil, nil
	}
	t := a.TLS
	if t == nil {
		t = &AMQPTLS{}
	}
	cfg, problems := t.load(nil)
	if cfg == nil {
		return nil, tlsErrors("amqp tls ", problems)
	}
	return cfg, nil
}

// ClientConfig builds the tls.Config of these settings (MinVersion TLS
// 1.2, verification on). Its error names the file and the setting at
// fault, by its HCL name, or by names[HCL name] when names has it: the
// CLI passes its flags (-amqp-ca for ca_file, ...).
func (t *AMQPTLS) ClientConfig(names map[string]string) (*tls.Config, error) {
	cfg, problems := t.load(names)
	if cfg == nil {
		for i := range problems {
			problems[i].attr = settingName(names, problems[i].attr)
		}
		return nil, tlsErrors("", problems)
	}
	return cfg, nil
}

// settingName is names[attr], or attr when names lacks it.
func settingName(names map[string]string, attr string) string {
	if n, ok := names[attr]; ok {
		return n
	}
	return attr
}

type tlsProblem struct {
	attr string // ca_file, cert_file, key_file
	msg  string
}

// load reads the files; any problem stops the configuration from being
// built. Messages name the settings by names (see ClientConfig).
func (t *AMQPTLS) load(names map[string]string) (*tls.Config, []tlsProblem) {
	var problems []tlsProblem
	fail := func(attr, format string, args ...any) {
		problems = append(problems, tlsProblem{attr: attr, msg: fmt.Sprintf(format, args...)})
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		switch {
		case err != nil:
			fail("ca_file", "cannot read the CA file %q: %v", t.CAFile, unwrapPathError(err))
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				fail("ca_file", "the CA file %q holds no PEM certificate: give the certificate of the CA that signed the broker's certificate (-----BEGIN CERTIFICATE-----)", t.CAFile)
			} else {
				cfg.RootCAs = pool
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		fail("cert_file", "%s is set without %s: give the client certificate's private key too", settingName(names, "cert_file"), settingName(names, "key_file"))
	case t.CertFile == "" && t.KeyFile != "":
		fail("key_file", "%s is set without %s: give the client certificate too", settingName(names, "key_file"), settingName(names, "cert_file"))
	case t.CertFile != "":
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			fail("cert_file", "cannot read the client certificate %q: %v", t.CertFile, unwrapPathError(err))
		}
		keyPEM, kerr := os.ReadFile(t.KeyFile)
		if kerr != nil {
			fail("key_file", "cannot read the private key %q: %v", t.KeyFile, unwrapPathError(kerr))
		}
		if err != nil || kerr != nil {
			break
		}
		// The messages of X509KeyPair name what is wrong, never key bytes.
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		switch {
		case err != nil && (strings.Contains(err.Error(), "certificate input") || strings.Contains(err.Error(), "parse certificate")):
			fail("cert_file", "the client certificate %q cannot be used: %v", t.CertFile, err)
		case err != nil:
			fail("key_file", "the private key %q cannot be used with the client certificate %q: %v", t.KeyFile, t.CertFile, err)
		default:
			cfg.Certificates = []tls.Certificate{pair}
		}
		// Refused, as the HTTP API's TLS key and every other secret file
		// the host reads are.
		if fi, err := os.Stat(t.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fail("key_file", "the private key %q is accessible to its group or to others (mode %04o): it holds a secret; run `chmod 600 %s`",
				t.KeyFile, fi.Mode().Perm(), t.KeyFile)
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return cfg, nil
}

// tlsErrors turns problems into one error, each prefixed with prefix and
// the setting's name.
func tlsErrors(prefix string, problems []tlsProblem) error {
	var errs []error
	for _, p := range problems {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, p.attr, p.msg))
	}
	return errors.Join(errs...)
}

// unwrapPathError drops the path of an *os.PathError, which the message
// already names.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// decodeAMQPTLS decodes the amqp block's tls blocks (at most one) for the
// url u, and checks that the files it names can be used: every problem is
// a diagnostic on the attribute that names the file.
func decodeAMQPTLS(sc *scope, blocks hcl.Blocks, urlAttr *hcl.Attribute, u *url.URL) *AMQPTLS {
	q := u.Query()
	for _, p := range uriTLSParams {
		if q.Has(p) {
			sc.errorf(urlAttr.Expr.Range(), "Invalid AMQP URL",
				"The url sets the TLS parameter %q, which the host does not read: set ca_file, cert_file, key_file and server_name in a tls block of the amqp block instead.", p)
		}
	}
	tb := sc.onlyBlock(blocks, "tls", "the amqp block")
	if tb == nil {
		return nil
	}
	if u.Scheme != "amqps" {
		sc.errorf(tb.DefRange, "TLS needs an amqps:// URL",
			"The amqp block has a tls block but its url starts with \"amqp://\", which does not use TLS: use \"amqps://\" (RabbitMQ's TLS port is 5671 by default), or remove the tls block.")
		return nil
	}
	content, d := tb.Body.Content(amqpTLSSchema)
	sc.add(d...)
	attrs := content.Attributes
	if attr := attrs["insecure_skip_verify"]; attr != nil {
		sc.errorf(attr.NameRange, "Unsupported argument",
			"The host always verifies the broker's certificate and name: insecure_skip_verify is not supported. Give the CA that signed the broker's certificate with ca_file, and the name in that certificate with server_name if it is not the url's host.")
	}
	t := &AMQPTLS{}
	files := []struct {
		name string
		dst  *string
	}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}}
	ok := true
	for _, f := range files {
		var p string
		if attr := attrs[f.name]; sc.str(attr, &p) {
			if p == "" {
				sc.errorf(attr.Expr.Range(), "Invalid file name", "The argument %q must not be empty; remove it instead.", f.name)
				ok = false
				continue
			}
			*f.dst = resolvePath(sc.dir, p)
		} else if attr != nil {
			ok = false
		}
	}
	if attr := attrs["server_name"]; sc.str(attr, &t.ServerName) && t.ServerName == "" {
		sc.errorf(attr.Expr.Range(), "Invalid server name", "The argument \"server_name\" must not be empty; remove it to check the url's host.")
		ok = false
	}
	if !ok {
		return nil
	}
	_, problems := t.load(nil)
	failed := false
	for _, p := range problems {
		r := tb.DefRange
		if attr := attrs[p.attr]; attr != nil {
			r = attr.Expr.Range()
		}
		failed = true
		sc.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unusable AMQP TLS setting", Detail: upperFirst(p.msg) + ".", Subject: r.Ptr()})
	}
	if failed {
		return nil
	}
	return t
}
