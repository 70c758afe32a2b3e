package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
)

// checkTLS refuses TLS settings that cannot work with url, or that would
// not check the broker.
func checkTLS(url string, c *tls.Config) error {
	amqps := strings.HasPrefix(strings.ToLower(url), "amqps://")
	switch {
	case c == nil:
		return nil
	case !amqps:
		return fmt.Errorf("broker url %s: TLS settings are given but the url starts with amqp://, which does not use TLS: use amqps://", amqpurl.Redact(url))
	case c.InsecureSkipVerify:
		return errors.New("broker TLS: InsecureSkipVerify is refused: the broker's certificate and name are always verified")
	}
	return nil
}

// tlsConfig returns a copy of Options.TLS for one connection (amqp091-go
// writes the server name into the one it is given), or for amqps:// with
// no Options.TLS, the defaults with TLS 1.2 at least; nil for amqp://.
// The CertRequest tells explainTLS whether the broker asked for a client
// certificate.
func (c *Conn) tlsConfig() (*tls.Config, *CertRequest) {
	if c.o.TLS != nil {
		return WatchCertRequest(c.o.TLS)
	}
	if strings.HasPrefix(strings.ToLower(c.url), "amqps://") {
		return WatchCertRequest(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	return nil, nil
}

// explainTLS adds what to check to the errors of a TLS handshake, in the
// words of the amqp block's tls settings.
func explainTLS(err error, cr *CertRequest) error {
	if hint := TLSHint(err, cr, TLSSettingNames{CA: "ca_file", Cert: "cert_file", Key: "key_file", ServerName: "server_name"}); hint != "" {
		return fmt.Errorf("TLS: %s: %w", hint, err)
	}
	return err
}

// TLSSettingNames name the TLS settings in TLSHint's words: the HCL
// attributes for the host, the flags for the CLI.
type TLSSettingNames struct{ CA, Cert, Key, ServerName string }

// TLSHint says what to check after a failed connection over TLS, which
// crypto/tls words for protocol experts, or "" when err is not a TLS
// failure. cr is the CertRequest of the connection's config
// (WatchCertRequest), or nil.
func TLSHint(err error, cr *CertRequest, n TLSSettingNames) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("the broker's certificate is not signed by a trusted CA (%s must hold the CA that signed it)", n.CA)
	case errors.As(err, &hostname):
		return fmt.Sprintf("the broker's certificate is not valid for this name (set %s to a name in the certificate, or connect by that name)", n.ServerName)
	case errors.As(err, &invalid):
		return "the broker's certificate is not valid (expired, not yet valid or not for a server)"
	case cr.refused(err) && cr.had && !cr.sent.Load():
		return fmt.Sprintf("the broker asked for a client certificate signed by a CA it trusts, and %s is not: none was sent, and the broker closed the connection", n.Cert)
	case cr.refused(err) && !cr.sent.Load():
		return fmt.Sprintf("the broker asked for a client certificate and closed the connection: none was sent (set %s and %s)", n.Cert, n.Key)
	case cr.refused(err):
		return fmt.Sprintf("the broker closed the connection after it received the client certificate: it refused it (is %s signed by a CA the broker trusts, and valid?)", n.Cert)
	case strings.Contains(err.Error(), "remote error: tls: "):
		// An alert from the broker (crypto/tls does not export its type).
		return "the broker refused the TLS handshake"
	case errors.As(err, &record):
		return "the server did not answer in TLS (is this the broker's TLS port, usually 5671?)"
	}
	return ""
}

// CertRequest records whether the broker asked for a client certificate
// during a TLS handshake, and whether one was sent. In TLS 1.3 the client's
// handshake ends before the server checks the client's certificate, so a
// broker that refuses it shows only as a connection closed afterwards;
// this tells why.
type CertRequest struct {
	asked, sent atomic.Bool
	had         bool // a client certificate was configured
}

// WatchCertRequest returns a copy of c that records in the returned
// CertRequest what the handshake did, choosing the client certificate as
// crypto/tls does by default (the first of c.Certificates the server
// accepts, else none). A nil c gives a nil config.
func WatchCertRequest(c *tls.Config) (*tls.Config, *CertRequest) {
	r := &CertRequest{}
	if c == nil {
		return nil, r
	}
	c = c.Clone()
	certs, get := c.Certificates, c.GetClientCertificate
	r.had = len(certs) > 0 || get != nil
	c.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		r.asked.Store(true)
		if get != nil {
			cert, err := get(cri)
			r.sent.Store(err == nil && cert != nil && len(cert.Certificate) > 0)
			return cert, err
		}
		for i := range certs {
			if cri.SupportsCertificate(&certs[i]) == nil {
				r.sent.Store(true)
				return &certs[i], nil
			}
		}
		return &tls.Certificate{}, nil
	}
	return c, r
}

// refused reports whether err, a failure to connect, is the broker closing
// the connection after it asked for a client certificate: it refused the
// one sent, or the lack of one.
func (r *CertRequest) refused(err error) bool {
	if r == nil || !r.asked.Load() {
		return false
	}
	// amqp091-go reports a connection closed while it reads the broker's
	// first frame as an *amqp.Error of code 501 (the read's error as text)
	// or 504 (ErrClosed); a refused login is 403 and a wrong vhost 402,
	// which are not this.
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return ae.Code == amqp.FrameError || ae.Code == amqp.ChannelError
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "remote error: tls: ")
}
