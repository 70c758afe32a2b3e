package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// brokerURL returns the broker tests use (AMQP_URL, else the local
// default). Without a broker the test fails when CI is set and is skipped
// otherwise.
func brokerURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("AMQP_URL")
	if u == "" {
		u = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		msg := fmt.Sprintf("no RabbitMQ broker at %s: %v", amqpurl.Redact(u), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	conn.Close()
	return u
}

// received is one control message a fake host got.
type received struct {
	body          control.Request
	replyTo, corr string
}

// fakeAMQPHost is a tiny responder: it consumes a queue bound to
// vumi.control with keys and answers every message with reply, or not at
// all when reply returns nil.
func fakeAMQPHost(t *testing.T, url string, keys []string, reply func(control.Request) *control.Reply) <-chan received {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// The host declares the exchange; declare it the same way (topic,
	// durable) only when no host has yet.
	if err := ch.ExchangeDeclarePassive(ControlExchange, "topic", true, false, false, false, nil); err != nil {
		if ch, err = conn.Channel(); err != nil {
			t.Fatal(err)
		}
		if err := ch.ExchangeDeclare(ControlExchange, "topic", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	q, err := ch.QueueDeclare("dynworkers.cli-test."+randomID()[:12], false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := conn.Channel(); err == nil {
			c.QueueDelete(q.Name, false, false, false)
		}
	})
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, ControlExchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan received, 10)
	go func() {
		for d := range deliveries {
			var req control.Request
			json.Unmarshal(d.Body, &req)
			got <- received{body: req, replyTo: d.ReplyTo, corr: d.CorrelationId}
			rep := reply(req)
			if rep == nil || d.ReplyTo == "" {
				continue
			}
			body, _ := json.Marshal(rep)
			ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: body})
		}
	}()
	return got
}

// statusOf answers status with a result naming host.
func statusOf(host string) func(control.Request) *control.Reply {
	return func(r control.Request) *control.Reply {
		switch r.Operation {
		case control.OpStatus:
			return &control.Reply{OK: true, Result: map[string]any{"system_id": "t", "host": host, "workers": []any{
				map[string]any{"name": "w-" + host, "supervisor": "root", "class": "hello", "state": "running"}}}}
		case control.OpStartWorker:
			return &control.Reply{OK: true, Result: api.StartResult{Worker: r.WorkerName, Action: "started", State: "running", Pid: 7}}
		}
		return &control.Reply{Error: control.Errorf(control.CodeNotFound, "no worker %q on %s", r.WorkerName, host)}
	}
}

func TestAMQPHost(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	got := fakeAMQPHost(t, url, []string{sys + ".h1", sys + ".all"}, statusOf("h1"))

	stdout, stderr, rc := runCLI(t, "status", "--amqp", url, "--host", "h1", "--system-id", sys)
	if rc != 0 || !strings.Contains(stdout, "host t/h1 · ") || !strings.Contains(stdout, "w-h1") {
		t.Fatalf("status: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	m := <-got
	if m.body.Operation != control.OpStatus || m.corr == "" || !strings.HasPrefix(m.replyTo, "amq.gen-") {
		t.Errorf("the message: %+v", m)
	}

	stdout, stderr, rc = runCLI(t, "start", "w1", "--amqp", url, "--host", "h1", "--system-id", sys,
		"--class", "smpp", "--set", "port=2773", "--supervisor", "root/a", "--replace")
	if rc != 0 || stdout != `started worker "w1" (pid 7, running)`+"\n" {
		t.Fatalf("start: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	m = <-got
	if m.body.Operation != control.OpStartWorker || m.body.WorkerName != "w1" || m.body.WorkerClass != "smpp" ||
		string(m.body.WorkerConfig) != `{"port":"2773"}` || m.body.Supervisor != "root/a" || !m.body.Replace {
		t.Errorf("the start message: %+v", m.body)
	}

	_, stderr, rc = runCLI(t, "stop", "w2", "--amqp", url, "--host", "h1", "--system-id", sys)
	if rc != 1 || !strings.Contains(stderr, `not_found: no worker "w2" on h1`) {
		t.Errorf("stop: rc %d\n%s", rc, stderr)
	}
	<-got

	// The system id comes from -config when not given.
	cfg := filepath.Join(t.TempDir(), "host.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf("system_id = %q\n", sys)), 0o644)
	if _, stderr, rc := runCLI(t, "status", "--amqp", url, "--host", "h1", "--config", cfg); rc != 0 {
		t.Errorf("system_id from -config: rc %d\n%s", rc, stderr)
	}
}

func TestAMQPAllAndAny(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	fakeAMQPHost(t, url, []string{sys + ".h1", sys + ".all", sys + ".any"}, statusOf("h1"))
	fakeAMQPHost(t, url, []string{sys + ".h2", sys + ".all"}, statusOf("h2"))

	start := time.Now()
	stdout, stderr, rc := runCLI(t, "status", "--amqp", url, "--all", "--system-id", sys, "--timeout", "1s")
	if rc != 0 || !strings.Contains(stdout, "host t/h1 · ") || !strings.Contains(stdout, "host t/h2 · ") ||
		strings.Index(stdout, "host t/h1") > strings.Index(stdout, "host t/h2") {
		t.Fatalf("status --all: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("--all returned after %s, before its timeout", d)
	}
	// Errors from every host, each named.
	_, stderr, rc = runCLI(t, "restart", "w", "--amqp", url, "--all", "--system-id", sys, "--timeout", "1s")
	if rc != 1 || !strings.Contains(stderr, `no worker "w" on h1`) || !strings.Contains(stderr, `no worker "w" on h2`) {
		t.Errorf("restart --all: rc %d\n%s", rc, stderr)
	}
	stdout, stderr, rc = runCLI(t, "status", "--amqp", url, "--any", "--system-id", sys, "--json")
	if rc != 0 || !strings.Contains(stdout, `"host": "h1"`) {
		t.Errorf("status --any: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
}

func TestAMQPNoHost(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	// Nothing is bound for this system id: the broker returns the message.
	_, stderr, rc := runCLI(t, "status", "--amqp", url, "--host", "nobody", "--system-id", sys)
	if rc != 3 || !strings.Contains(stderr, "no host listens on "+sys+".nobody") {
		t.Errorf("no binding: rc %d\n%s", rc, stderr)
	}
	// A host that never answers: the wait ends with the timeout.
	silent := fakeAMQPHost(t, url, []string{sys + ".mute"}, func(control.Request) *control.Reply { return nil })
	_, stderr, rc = runCLI(t, "stop", "w", "--amqp", url, "--host", "mute", "--system-id", sys, "--timeout", "300ms")
	if rc != 3 || !strings.Contains(stderr, "no reply on "+sys+".mute within 300ms") {
		t.Errorf("no reply: rc %d\n%s", rc, stderr)
	}
	<-silent
	// No broker at all.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, stderr, rc = runCLI(t, "status", "--amqp", "amqp://guest:secret@"+addr+"/", "--all", "--system-id", sys)
	if rc != 3 || !strings.Contains(stderr, "cannot reach the broker at amqp://guest:xxxxx@"+addr) || strings.Contains(stderr, "secret") {
		t.Errorf("no broker: rc %d\n%s", rc, stderr)
	}
}
