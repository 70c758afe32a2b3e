package brokertest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQServer is the script that starts a RabbitMQ node without
// switching to the rabbitmq user (the packaged /usr/sbin/rabbitmq-server
// does, and then cannot read a test's temporary directory).
var RabbitMQServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// tlsNodeStartTimeout bounds the start of a TLS node.
const tlsNodeStartTimeout = 60 * time.Second

// TLSNode is a second RabbitMQ node, started by a test, that listens only
// for AMQP over TLS on 127.0.0.1 and requires a client certificate signed
// by CA (ssl_options.verify = verify_peer, fail_if_no_peer_cert = true).
// It is independent of the shared broker: its own node name, ports,
// database, logs and Erlang cookie, all in the test's temporary directory.
type TLSNode struct {
	// URL is amqps://guest:guest@localhost:<port>/.
	URL string
	// Port is the TLS listener's port on 127.0.0.1.
	Port int
	// CA signed the server certificate (for "localhost" and 127.0.0.1) and
	// the client certificate Client.
	CA *CA
	// Client is a client certificate the node accepts.
	Client Pair
	// Dir is the node's directory (certificates, config, database, logs).
	Dir string

	node       string
	distPort   int
	cleanupSet bool

	// The current process; replaced by Restart.
	cmd     *exec.Cmd
	out     *lockedBuffer
	exited  chan struct{}
	waitErr error
}

// StartTLSNode starts a TLSNode and waits until it accepts an AMQP
// connection over TLS with the client certificate (within a minute; it
// usually takes a few seconds). It stops the node at the test's cleanup.
// It skips the test when RabbitMQ is not installed, unless CI is set.
func StartTLSNode(t testing.TB) *TLSNode {
	t.Helper()
	if _, err := os.Stat(RabbitMQServer); err != nil {
		msg := fmt.Sprintf("RabbitMQ is not installed (%v): cannot start a TLS node", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "dwtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ca := NewCA(t, dir, "node")
	server := ca.Server(t, dir, "server", "localhost", "127.0.0.1")
	n := &TLSNode{
		CA:     ca,
		Client: ca.Client(t, dir, "client"),
		Dir:    dir,
		Port:   freePort(t),
		out:    &lockedBuffer{},
		exited: make(chan struct{}),
	}
	n.URL = fmt.Sprintf("amqps://guest:guest@localhost:%d/", n.Port)
	conf := strings.Join([]string{
		"listeners.tcp = none",
		fmt.Sprintf("listeners.ssl.default = 127.0.0.1:%d", n.Port),
		"ssl_options.cacertfile = " + ca.CertFile,
		"ssl_options.certfile = " + server.CertFile,
		"ssl_options.keyfile = " + server.KeyFile,
		"ssl_options.verify = verify_peer",
		"ssl_options.fail_if_no_peer_cert = true",
		"ssl_options.versions.1 = tlsv1.3",
		"ssl_options.versions.2 = tlsv1.2",
		"log.console = false",
		"log.file.level = info",
		"",
	}, "\n")
	for name, body := range map[string]string{
		"rabbitmq.conf":     conf,
		"rabbitmq-env.conf": "",
		"enabled_plugins":   "[].\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.node = fmt.Sprintf("dwtls-%d@localhost", n.Port)
	n.distPort = freePort(t)
	n.start(t)
	return n
}

// Restart stops the node and starts it again on the same ports and
// database: durable queues and their persistent messages survive it, as
// across a restart of a real broker. Connections are lost meanwhile.
func (n *TLSNode) Restart(t testing.TB) {
	t.Helper()
	n.stop()
	n.out = &lockedBuffer{}
	n.exited = make(chan struct{})
	n.start(t)
}

// start starts the node's process and waits until it accepts a
// connection.
func (n *TLSNode) start(t testing.TB) {
	t.Helper()
	dir := n.Dir
	cmd := exec.Command(RabbitMQServer)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir, // the node's own Erlang cookie
		"RABBITMQ_NODENAME="+n.node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "node.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
	out, exited := n.out, n.exited
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", RabbitMQServer, err)
	}
	n.cmd = cmd
	go func() {
		n.waitErr = cmd.Wait()
		close(exited)
	}()
	if !n.cleanupSet {
		n.cleanupSet = true
		t.Cleanup(n.stop)
	}

	deadline := time.Now().Add(tlsNodeStartTimeout)
	for {
		err := n.probe()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("the TLS node %s exited while starting (%v): %s%s", n.node, n.waitErr, out.String(), n.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS node %s did not accept a connection within %s: %v\n%s%s", n.node, tlsNodeStartTimeout, err, out.String(), n.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ClientTLS returns a tls.Config that trusts CA and presents Client.
func (n *TLSNode) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	c, err := n.clientTLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (n *TLSNode) clientTLS() (*tls.Config, error) {
	pem, err := os.ReadFile(n.CA.CertFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in the CA file")
	}
	cert, err := tls.LoadX509KeyPair(n.Client.CertFile, n.Client.KeyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}, nil
}

// probe opens and closes one AMQP connection with the client certificate.
func (n *TLSNode) probe() error {
	cfg, err := n.clientTLS()
	if err != nil {
		return err
	}
	conn, err := amqp.DialConfig(n.URL, amqp.Config{
		TLSClientConfig: cfg,
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 2*time.Second)
			if err != nil {
				return nil, err
			}
			return c, c.SetDeadline(time.Now().Add(5 * time.Second))
		},
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// Stop stops the node (SIGTERM to its process group, SIGKILL after 20 s)
// and waits for it; the test's cleanup does it too.
func (n *TLSNode) Stop() { n.stop() }

var stopMu sync.Mutex

func (n *TLSNode) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	select {
	case <-n.exited:
		return
	default:
	}
	pgid := n.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-n.exited
	}
	// Helpers the node started in its group (erl_child_setup,
	// inet_gethost) end with it; make sure of it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (n *TLSNode) logTail() string {
	matches, _ := filepath.Glob(filepath.Join(n.Dir, "log", "*.log"))
	var b strings.Builder
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", m, data)
	}
	return b.String()
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
