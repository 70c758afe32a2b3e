package broker

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
)

// TLS settings that cannot work, or would not check the broker, are
// refused by Dial; an amqps:// Conn without settings still verifies.
func TestDialTLSOptions(t *testing.T) {
	for _, c := range []struct {
		url  string
		tls  *tls.Config
		want string
	}{
		{"amqp://u:secret@h:5672/", &tls.Config{}, "TLS settings are given but the url starts with amqp://"},
		{"amqps://u:secret@h:5671/", &tls.Config{InsecureSkipVerify: true}, "InsecureSkipVerify is refused"},
	} {
		_, err := Dial(context.Background(), Options{URL: c.url, TLS: c.tls})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("Dial(%s): %v, want an error with %q and no password", RedactURL(c.url), err, c.want)
		}
	}
	c := &Conn{url: "amqps://h/", o: Options{URL: "amqps://h/"}}
	cfg, _ := c.tlsConfig()
	if cfg == nil || cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("amqps:// without TLS options: %+v", cfg)
	}
	given := &tls.Config{ServerName: "rabbit.example", MinVersion: tls.VersionTLS13}
	c = &Conn{url: "amqps://h/", o: Options{URL: "amqps://h/", TLS: given}}
	cfg, _ = c.tlsConfig()
	if cfg == given || cfg.ServerName != "rabbit.example" || cfg.MinVersion != tls.VersionTLS13 || cfg.GetClientCertificate == nil {
		t.Errorf("a copy of the given settings with the certificate-request hook: %+v", cfg)
	}
	if cfg, _ := (&Conn{url: "amqp://h/"}).tlsConfig(); cfg != nil {
		t.Errorf("amqp:// gets TLS settings %+v", cfg)
	}
}
