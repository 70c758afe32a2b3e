package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// authKeys are the keys of the test policy, in their own directory.
type authKeys struct {
	dir                 string
	ops, viewer, deploy *auth.Signer
}

func newAuthKeys(t *testing.T) authKeys {
	t.Helper()
	dir := t.TempDir()
	k := authKeys{dir: dir}
	for _, n := range []string{"ops", "viewer"} {
		if _, err := auth.GenerateKeyFiles(filepath.Join(dir, n+".key")); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(dir, "deploy.secret")
	if err := os.WriteFile(secret, []byte("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if k.ops, err = auth.LoadSigner(filepath.Join(dir, "ops.key"), "ops"); err != nil {
		t.Fatal(err)
	}
	if k.viewer, err = auth.LoadSigner(filepath.Join(dir, "viewer.key"), "viewer"); err != nil {
		t.Fatal(err)
	}
	if k.deploy, err = auth.LoadSigner(secret, "deploy"); err != nil {
		t.Fatal(err)
	}
	return k
}

// policy is the control block of the tests: ops may do anything from the
// broker user guest; viewer only read; deploy only start smpp workers.
func (k authKeys) policy() string {
	return fmt.Sprintf(`
control {
  require       = true
  replay_window = "10m"
  principal "ops" {
    public_key_file = %q
    broker_users    = ["guest"]
    operations      = ["*"]
  }
  principal "viewer" {
    public_key_file = %q
    operations      = ["status", "list_classes"]
  }
  principal "deploy" {
    hmac_key_file = %q
    broker_users  = ["guest"]
    operations    = ["vumi_worker"]
    classes       = ["smpp"]
  }
}
`, filepath.Join(k.dir, "ops.key.pub"), filepath.Join(k.dir, "viewer.key.pub"), filepath.Join(k.dir, "deploy.secret"))
}

// amqpSender is a broker connection, as some broker user, with a reply
// queue of its own.
type amqpSender struct {
	t       *testing.T
	ch      *amqp.Channel
	closed  chan *amqp.Error
	queue   string
	replies <-chan amqp.Delivery
}

func newAMQPSender(t *testing.T, u string) *amqpSender {
	t.Helper()
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("dialing the broker: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	s := &amqpSender{t: t, ch: ch, closed: ch.NotifyClose(make(chan *amqp.Error, 1))}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.queue = q.Name
	if s.replies, err = ch.Consume(q.Name, "", true, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return s
}

// send publishes msg (reply_to and correlation_id set here) and returns the
// reply.
func (s *amqpSender) send(key string, msg amqp.Publishing) control.Reply {
	s.t.Helper()
	msg.ReplyTo = s.queue
	msg.CorrelationId = fmt.Sprintf("c-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, control.ControlExchange, key, false, false, msg)
	if err != nil {
		s.t.Fatalf("publishing: %v", err)
	}
	if ok, err := dc.WaitContext(ctx); !ok || err != nil {
		s.t.Fatalf("not confirmed: %v", err)
	}
	for {
		d := brokertest.Receive(s.t, s.replies, waitTimeout)
		if d.CorrelationId != msg.CorrelationId {
			continue
		}
		var rep control.Reply
		if err := json.Unmarshal(d.Body, &rep); err != nil {
			s.t.Fatalf("reply %s: %v", d.Body, err)
		}
		return rep
	}
}

// signed returns a publishing of body signed by s for key.
func signed(s *auth.Signer, key string, body []byte, at time.Time, userID string) amqp.Publishing {
	return amqp.Publishing{
		ContentType: "application/json", Body: body, UserId: userID,
		Headers: amqp.Table(s.Sign(auth.AMQPScope(key), body, at).AMQPHeaders()),
	}
}

// brokerUser creates a RabbitMQ user with every permission on the default
// vhost for the test, removed at its end, and returns its URL.
func brokerUser(t *testing.T, name string, perms ...string) string {
	t.Helper()
	const pass = "intruder-pass"
	if perms == nil {
		perms = []string{".*", ".*", ".*"}
	}
	rabbitmqctl(t, "add_user", name, pass)
	t.Cleanup(func() { rabbitmqctl(t, "delete_user", name) })
	rabbitmqctl(t, append([]string{"set_permissions", "-p", "/", name}, perms...)...)
	u, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, pass)
	return u.String()
}

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func startBody(name, class, rid string) []byte {
	return fmt.Appendf(nil, `{"operation": "vumi_worker", "worker_name": %q, "worker_class": %q, "request_id": %q}`, name, class, rid)
}

// With require on, each refusal of the Must-hold line is answered with its
// code, dead-lettered exactly once and changes nothing; correctly signed
// messages (Ed25519 and HMAC, through an alias) work.
func TestControlPolicyOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	k := newAuthKeys(t)
	h := amqpHost(t, sys, "h1", k.policy())
	key := sys + ".h1"
	guest := newAMQPSender(t, brokertest.URL(t))
	intruderName := "dw-intruder-" + strings.ReplaceAll(sys, ".", "-")
	intruder := newAMQPSender(t, brokerUser(t, intruderName))
	now := time.Now()
	rid := func(c string) string { return sys + "-" + c }

	// A correctly signed start, then stop: the first message is replayed below.
	first := signed(k.ops, key, startBody("w-replay", "chaos", rid("replay")), now, "guest")
	if rep := guest.send(key, first); !rep.OK {
		t.Fatalf("signed start: %+v", rep.Error)
	}
	h.waitStarted("w-replay")
	stop := fmt.Appendf(nil, `{"operation": "stop_worker", "worker_name": "w-replay"}`)
	if rep := guest.send(key, signed(k.ops, key, stop, now, "guest")); !rep.OK {
		t.Fatalf("signed stop: %+v", rep.Error)
	}

	tampered := signed(k.ops, key, startBody("w-x", "chaos", rid("x")), now, "guest")
	tampered.Body = startBody("w-badsig", "chaos", rid("badsig"))
	otherHost := signed(k.ops, sys+".h2", startBody("w-otherhost", "chaos", rid("otherhost")), now, "guest")

	cases := []struct {
		name, worker string
		from         *amqpSender
		msg          amqp.Publishing
		code         control.Code
		says         string
	}{
		{"unsigned", "w-unsigned", guest,
			amqp.Publishing{Body: startBody("w-unsigned", "chaos", rid("unsigned"))},
			control.CodeUnauthenticated, "neither signed nor published with a user_id"},
		{"unsigned from a known broker user", "w-unsigned-guest", guest,
			amqp.Publishing{Body: startBody("w-unsigned-guest", "chaos", rid("unsigned-guest")), UserId: "guest"},
			control.CodeUnauthenticated, "must sign"},
		{"bad signature", "w-badsig", guest, tampered, control.CodeUnauthenticated, "bad signature"},
		{"signed for another host", "w-otherhost", guest, otherHost, control.CodeUnauthenticated, "bad signature"},
		{"replayed", "w-replay", guest, first, control.CodeUnauthenticated, "replayed"},
		{"expired", "w-expired", guest,
			signed(k.ops, key, startBody("w-expired", "chaos", rid("expired")), now.Add(-11*time.Minute), "guest"),
			control.CodeUnauthenticated, "expired"},
		{"principal without the operation", "w-viewer", guest,
			signed(k.viewer, key, startBody("w-viewer", "chaos", rid("viewer")), now, ""),
			control.CodeForbidden, `principal "viewer" may not use "vumi_worker"`},
		{"principal without the class", "w-deploy-chaos", guest,
			signed(k.deploy, key, startBody("w-deploy-chaos", "chaos", rid("deploy-chaos")), now, "guest"),
			control.CodeForbidden, `may not act on class "chaos"`},
		{"wrong broker user", "w-intruder", intruder,
			signed(k.ops, key, startBody("w-intruder", "chaos", rid("intruder")), now, intruderName),
			control.CodeUnauthenticated, fmt.Sprintf("not from %q", intruderName)},
		{"wrong broker user, unsigned", "w-intruder-unsigned", intruder,
			amqp.Publishing{Body: startBody("w-intruder-unsigned", "chaos", rid("intruder-unsigned")), UserId: intruderName},
			control.CodeUnauthenticated, fmt.Sprintf("broker user %q is not one of", intruderName)},
	}
	refused := map[string]bool{}
	for _, tc := range cases {
		rep := tc.from.send(key, tc.msg)
		if rep.OK || rep.Error == nil || rep.Error.Code != tc.code || !strings.Contains(rep.Error.Message, tc.says) {
			t.Errorf("%s: reply %+v, want %s saying %q", tc.name, rep.Error, tc.code, tc.says)
		}
		var req control.Request
		_ = json.Unmarshal(tc.msg.Body, &req)
		if rep.RequestID != req.RequestID {
			t.Errorf("%s: reply request_id %q, want %q", tc.name, rep.RequestID, req.RequestID)
		}
		refused[req.RequestID] = true
	}

	// RabbitMQ itself refuses a user_id that is not the connection's user:
	// the intruder cannot pass for guest.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = intruder.ch.PublishWithDeferredConfirmWithContext(ctx, control.ControlExchange, key, false, false,
		signed(k.ops, key, startBody("w-impersonated", "chaos", rid("impersonated")), now, "guest"))
	select {
	case e := <-intruder.closed:
		if e == nil || e.Code != amqp.PreconditionFailed {
			t.Errorf("impersonating guest: channel closed with %v, want PRECONDITION_FAILED", e)
		}
	case <-ctx.Done():
		t.Error("the broker took a message whose user_id is not the connection's user")
	}

	// Correctly signed messages work: Ed25519, and HMAC through an alias of
	// the allowed class.
	good := signed(k.ops, key, startBody("w-good", "chaos", rid("good")), time.Now(), "guest")
	if rep := guest.send(key, good); !rep.OK {
		t.Fatalf("signed start: %+v", rep.Error)
	}
	h.waitStarted("w-good")
	alias := fmt.Appendf(nil, `{"operation": "vumi_worker", "worker_name": "w-smpp", "worker_class": "vumi.workers.smpp.transport.SMPPTransport", "worker_config": {"host": "h", "port": 2773}}`)
	if rep := guest.send(key, signed(k.deploy, key, alias, time.Now(), "guest")); !rep.OK {
		t.Fatalf("HMAC-signed start through an alias: %+v", rep.Error)
	}
	h.waitStarted("w-smpp")
	if rep := guest.send(key, signed(k.viewer, key, []byte(`{"operation": "status"}`), time.Now(), "")); !rep.OK {
		t.Fatalf("viewer's status: %+v", rep.Error)
	}

	// Nothing changed: no refused worker runs, started or was persisted.
	for _, tc := range cases {
		if _, ok := h.d.tree.Worker(tc.worker); ok {
			t.Errorf("%s: worker %q exists", tc.name, tc.worker)
		}
	}
	h.mu.Lock()
	if n := len(h.started["w-replay"]); n != 1 {
		t.Errorf("w-replay started %d times, want once (before the replay)", n)
	}
	for _, tc := range cases {
		if tc.worker != "w-replay" && len(h.started[tc.worker]) > 0 {
			t.Errorf("%s: worker %q was started", tc.name, tc.worker)
		}
	}
	h.mu.Unlock()
	for _, w := range h.loadState().Workers {
		if w.Name != "w-good" && w.Name != "w-smpp" {
			t.Errorf("persisted worker %q", w.Name)
		}
	}

	// Each refused message is in the dead-letter queue exactly once.
	admin := brokertest.NewAdmin(t)
	copies := map[string]int{}
	take := func() {
		admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
			var req control.Request
			if json.Unmarshal(d.Body, &req) != nil || !refused[req.RequestID] {
				return false
			}
			copies[req.RequestID]++
			return true
		})
	}
	sdktest.Eventually(t, 10*time.Second, func() bool {
		take()
		return len(copies) == len(refused)
	}, "dead-lettered: %v of %d", copies, len(refused))
	take()
	for id := range refused {
		if copies[id] != 1 {
			t.Errorf("request %s dead-lettered %d times, want once", id, copies[id])
		}
	}
	if !strings.Contains(h.logs.String(), "control message rejected to the dead-letter exchange") {
		t.Error("the host log does not say the refused messages were dead-lettered")
	}

	// The nonces outlive a restart of the host: a message accepted before
	// it is still a replay after it.
	h.stop()
	h2 := startAMQPHost(t, h.dir, sys, "h1", brokertest.URL(t), k.policy())
	ctx2, cancel2 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel2()
	if err := h2.d.WaitBroker(ctx2); err != nil {
		t.Fatal(err)
	}
	if rep := guest.send(key, good); rep.Error == nil || rep.Error.Code != control.CodeUnauthenticated || !strings.Contains(rep.Error.Message, "replayed") {
		t.Errorf("replay after a restart: %+v", rep.Error)
	}
	admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
		return strings.Contains(string(d.Body), rid("good"))
	})
}

// Over HTTP: changing calls must be signed; unsigned GETs still read (the
// dashboard), a principal without the right gets 403, and a signed call
// works.
func TestControlPolicyOverHTTP(t *testing.T) {
	k := newAuthKeys(t)
	h := startHost(t, k.policy())
	base := "http://" + h.waitHTTP()
	call := func(s *auth.Signer, method, path string, body []byte) (int, control.Reply) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(httpapi.RequestHeader, "1") // a program, not a page (the CSRF guard)
		if s != nil {
			s.Sign(auth.HTTPScope(method, req.URL.RequestURI()), body, time.Now()).SetHTTP(req.Header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var rep control.Reply
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("%s %s: %s", method, path, raw)
		}
		return resp.StatusCode, rep
	}
	start := []byte(`{"name": "w-http", "class": "chaos"}`)
	if code, rep := call(nil, http.MethodPost, "/v1/workers", start); code != 401 || rep.Error.Code != control.CodeUnauthenticated {
		t.Errorf("unsigned start: %d %+v", code, rep.Error)
	}
	if code, rep := call(nil, http.MethodPost, "/v1/control", []byte(`{"operation": "status"}`)); code != 401 || rep.Error.Code != control.CodeUnauthenticated {
		t.Errorf("unsigned POST status: %d %+v", code, rep.Error)
	}
	if code, rep := call(k.viewer, http.MethodPost, "/v1/workers", start); code != 403 || rep.Error.Code != control.CodeForbidden {
		t.Errorf("viewer's start: %d %+v", code, rep.Error)
	}
	// A signature for another path does not verify.
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/workers", bytes.NewReader(start))
	req.Header.Set("Content-Type", "application/json")
	k.ops.Sign(auth.HTTPScope(http.MethodPost, "/v1/supervisors"), start, time.Now()).SetHTTP(req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("signature for another path: %d", resp.StatusCode)
	}
	if _, ok := h.d.tree.Worker("w-http"); ok {
		t.Fatal("a refused HTTP start started the worker")
	}
	if code, rep := call(nil, http.MethodGet, "/v1/status", nil); code != 200 || !rep.OK {
		t.Errorf("unsigned GET status: %d %+v", code, rep.Error)
	}
	if code, rep := call(k.ops, http.MethodPost, "/v1/workers", start); code != 200 || !rep.OK {
		t.Fatalf("signed start: %d %+v", code, rep.Error)
	}
	h.waitStarted("w-http")
	if code, rep := call(k.ops, http.MethodDelete, "/v1/workers/w-http", nil); code != 200 || !rep.OK {
		t.Fatalf("signed stop: %d %+v", code, rep.Error)
	}
}

// Without a control block the host takes every request, as before, and
// says so loudly once.
func TestNoPolicyWarnsOnce(t *testing.T) {
	h := startHost(t, "")
	h.waitHTTP()
	if n := strings.Count(h.logs.String(), "NO CONTROL POLICY"); n != 1 {
		t.Errorf("the warning is logged %d times, want once", n)
	}
}

// waitHTTP waits until the HTTP API listens and returns its address.
func (h *harness) waitHTTP() string {
	h.t.Helper()
	// The log line comes after the server is set (the log's mutex orders
	// them), so HTTPAddr does not race with Run.
	sdktest.Eventually(h.t, waitTimeout, func() bool { return strings.Contains(h.logs.String(), "HTTP API listening") },
		"the HTTP API does not listen")
	return h.d.HTTPAddr()
}

// The worker permissions of the operator guide keep a worker's broker user
// from publishing to vumi.control at all, while it may still use its own
// exchanges.
func TestWorkerBrokerPermissionsKeepItOffControl(t *testing.T) {
	sys := brokertest.ID(t)
	name := "dw-worker-" + strings.ReplaceAll(sys, ".", "-")
	const noControl = `^(?!vumi\.control).*` // as in docs/operator-guide.md
	conn, err := amqp.Dial(brokerUser(t, name, noControl, noControl, noControl))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	try := func(exchange string) *amqp.Error {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, sys+".h1", false, false,
			amqp.Publishing{Body: []byte(`{"operation": "status"}`)})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if ok, _ := dc.WaitContext(ctx); ok {
				_ = ch.Close()
				return nil
			}
		}
		select {
		case e := <-closed:
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("publishing to %s: neither confirmed nor refused", exchange)
		}
		return nil
	}
	admin := brokertest.NewAdmin(t)
	ownExchange := "dw-test-own-" + sys
	admin.DeleteAtCleanup(nil, []string{ownExchange})
	if err := admin.Do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(ownExchange, amqp.ExchangeTopic, false, true, false, false, nil)
	}); err != nil {
		t.Fatal(err)
	}
	if e := try(ownExchange); e != nil {
		t.Fatalf("the worker cannot publish to its own exchange: %v", e)
	}
	if e := try(control.ControlExchange); e == nil || e.Code != amqp.AccessRefused {
		t.Fatalf("publishing to %s as a worker: %v, want ACCESS_REFUSED", control.ControlExchange, e)
	}
}
