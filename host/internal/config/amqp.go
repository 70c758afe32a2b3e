package config

import (
	"encoding/json"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
)

// AMQPConfig is the amqp block. URL may hold a password: print it with
// Redacted (String, GoString and MarshalJSON already do).
type AMQPConfig struct {
	URL string
	// TLS is the tls block (amqps:// only), nil without one; TLSConfig
	// makes the crypto/tls configuration of it (amqp_tls.go).
	TLS *AMQPTLS
}

// Redacted returns the URL with its password replaced by "xxxxx", or
// amqpurl.Invalid when it cannot be taken apart safely (see
// amqpurl.Redact).
func (a *AMQPConfig) Redacted() string {
	if a == nil {
		return ""
	}
	return amqpurl.Redact(a.URL)
}

// String returns the redacted URL, so that logging the config is safe.
func (a *AMQPConfig) String() string { return a.Redacted() }

// GoString returns the redacted form for %#v.
func (a *AMQPConfig) GoString() string { return "&config.AMQPConfig{URL:" + a.Redacted() + "}" }

// MarshalJSON writes the redacted URL, so a status dump never holds the
// password.
func (a *AMQPConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		URL string `json:"url"`
	}{a.Redacted()})
}
