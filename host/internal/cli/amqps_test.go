package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// amqps:// end to end, against a RabbitMQ node of the test's own that
// listens only for TLS and requires a client certificate: a host with the
// right CA and client certificate connects and answers the CLI over
// amqps; a wrong CA, a wrong server name and no client certificate are
// each refused, with an error that says which.
func TestAMQPSHostAndClient(t *testing.T) {
	node := brokertest.StartTLSNode(t)
	tlsBlock := func(ca string, withCert bool) string {
		b := fmt.Sprintf("amqp {\n  url = %q\n  tls {\n    ca_file = %q\n", node.URL, ca)
		if withCert {
			b += fmt.Sprintf("    cert_file = %q\n    key_file = %q\n", node.Client.CertFile, node.Client.KeyFile)
		}
		return b + "  }\n}\n"
	}
	h := startServe(t, "-config", writeConfig(t, tlsBlock(node.CA.CertFile, true)))
	h.waitLine("connected to the broker")

	client := []string{"-amqp", node.URL, "-amqp-ca", node.CA.CertFile, "-amqp-cert", node.Client.CertFile,
		"-amqp-key", node.Client.KeyFile, "-host", "cli-test", "-system-id", "test"}
	stdout, stderr, rc := runCLI(t, append([]string{"status"}, client...)...)
	if rc != 0 || !strings.Contains(stdout, "host test/cli-test · ") {
		t.Fatalf("status over amqps: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}

	// On this fresh broker the host declared the dead-letter queue with its
	// bound: a declaration with the same arguments is accepted.
	conn, err := amqp.DialConfig(node.URL, amqp.Config{TLSClientConfig: node.ClientTLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDeclare(control.DeadLetterQueue, true, false, false, false, control.DeadLetterQueueArgs())
	}
	if err != nil {
		t.Errorf("%s is not declared with %v: %v", control.DeadLetterQueue, control.DeadLetterQueueArgs(), err)
	}
	_ = conn.Close()

	other := brokertest.NewCA(t, t.TempDir(), "other")
	stranger := other.Client(t, t.TempDir(), "stranger")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong CA", []string{"-amqp-ca", other.CertFile, "-amqp-cert", node.Client.CertFile, "-amqp-key", node.Client.KeyFile},
			"the broker's certificate is not signed by a trusted CA (-amqp-ca must hold the CA that signed it)"},
		{"wrong server name", []string{"-amqp-ca", node.CA.CertFile, "-amqp-cert", node.Client.CertFile, "-amqp-key", node.Client.KeyFile,
			"-amqp-server-name", "rabbit.example"},
			"the broker's certificate is not valid for this name (set -amqp-server-name"},
		{"no client certificate", []string{"-amqp-ca", node.CA.CertFile},
			"the broker asked for a client certificate and closed the connection: none was sent (set -amqp-cert and -amqp-key)"},
		{"client certificate of another CA", []string{"-amqp-ca", node.CA.CertFile,
			"-amqp-cert", stranger.CertFile, "-amqp-key", stranger.KeyFile},
			"the broker asked for a client certificate signed by a CA it trusts, and -amqp-cert is not"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"status", "-amqp", node.URL, "-host", "cli-test", "-system-id", "test"}, c.args...)
			_, stderr, rc := runCLI(t, args...)
			if rc == 0 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "localhost:") {
				t.Errorf("rc %d, want an error with %q naming the broker; stderr:\n%s", rc, c.want, stderr)
			}
		})
	}

	// A host whose ca_file is another CA does not connect, and says why.
	bad := startServe(t, "-config", writeConfig(t, tlsBlock(other.CertFile, true)))
	bad.waitLine("the broker's certificate is not signed by a trusted CA (ca_file must hold the CA that signed it)")
	// One without a client certificate is refused by the broker.
	anon := startServe(t, "-config", writeConfig(t, tlsBlock(node.CA.CertFile, false)))
	anon.waitLine("the broker asked for a client certificate and closed the connection: none was sent (set cert_file and key_file)")
	for _, h := range []*hostProc{bad, anon} {
		if strings.Contains(h.logText(), "connected to the broker") {
			t.Errorf("a host connected without the right CA and certificate:\n%s", h.logText())
		}
	}
}

// The TLS flags' files are checked before dialing, and their errors name
// the flag and the file.
func TestAMQPSClientFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := brokertest.NewCA(t, dir, "ca")
	client := ca.Client(t, dir, "client")
	gone := filepath.Join(dir, "gone.pem")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-amqp-ca", gone}, `-amqp-ca: cannot read the CA file "` + gone + `": no such file or directory`},
		{[]string{"-amqp-ca", client.KeyFile}, `-amqp-ca: the CA file "` + client.KeyFile + `" holds no PEM certificate`},
		{[]string{"-amqp-cert", client.CertFile}, "-amqp-cert: -amqp-cert is set without -amqp-key"},
		{[]string{"-amqp-cert", client.CertFile, "-amqp-key", ca.CertFile}, `-amqp-key: the private key "` + ca.CertFile + `" cannot be used`},
	} {
		args := append([]string{"status", "-amqp", "amqps://u:pw@127.0.0.1:1/", "-host", "h1", "-system-id", "s"}, c.args...)
		_, stderr, rc := runCLI(t, args...)
		if rc == 0 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, ":pw@") {
			t.Errorf("%v: rc %d, want %q without the password; stderr:\n%s", c.args, rc, c.want, stderr)
		}
	}
}
