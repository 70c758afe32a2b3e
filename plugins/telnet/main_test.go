package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

// client is a telnet client of a test.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) readLine() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a line: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Errorf("line %q does not end with CRLF", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func (c *client) waitClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := c.r.ReadByte(); err == nil {
		c.t.Fatalf("read %q, want the server to close the connection", b)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("the server did not close the connection")
	}
}

func run(t *testing.T, opts ...sdktest.Option) (*sdktest.Worker, string) {
	t.Helper()
	w := sdktest.Run(t, Class, map[string]any{"transport_name": "tel", "port": 0}, opts...)
	return w, w.Impl.(*Transport).Addr()
}

func deliver(t *testing.T, w *sdktest.Worker, msg *vumi.TransportUserMessage) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := w.Env.Deliver("tel.outbound", b); out != sdk.OutcomeAck || err != nil {
		t.Fatalf("Deliver = %v, %v", out, err)
	}
}

func TestTelnetSession(t *testing.T) {
	w, addr := run(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("addr %q", addr)
	}
	c := dial(t, addr)
	me := c.conn.LocalAddr().String()

	started := w.Env.WaitPublished("tel.inbound", 1)[0].UserMessage(t)
	if started.SessionEvent != vumi.SessionNew || started.Content.Valid || started.FromAddr != me || started.ToAddr != addr ||
		started.TransportType != "telnet" || started.TransportName != "tel" {
		t.Errorf("first message %+v", started)
	}
	c.send("hello world\r\n")
	line := w.Env.WaitPublished("tel.inbound", 2)[1].UserMessage(t)
	if line.SessionEvent != vumi.SessionResume || line.Content.String != "hello world" || line.FromAddr != me {
		t.Errorf("line message %+v", line)
	}

	reply := line.Reply("HELLO WORLD", true)
	deliver(t, w, reply)
	if got := c.readLine(); got != "HELLO WORLD" {
		t.Errorf("client read %q", got)
	}
	ev := w.Env.WaitPublished("tel.event", 1)[0].Event(t)
	if ev.EventType != vumi.EventAck || ev.UserMessageID != reply.MessageID || ev.TransportName != "tel" {
		t.Errorf("event %+v", ev)
	}

	// Several lines in one message; a reply found by in_reply_to alone.
	multi := line.Reply("one\ntwo", true)
	multi.ToAddr = ""
	deliver(t, w, multi)
	if a, b := c.readLine(), c.readLine(); a != "one" || b != "two" {
		t.Errorf("client read %q, %q", a, b)
	}

	// A message that closes the session: written, then the connection ends.
	deliver(t, w, line.Reply("bye", false))
	if got := c.readLine(); got != "bye" {
		t.Errorf("client read %q", got)
	}
	c.waitClosed()
	closed := w.Env.WaitPublished("tel.inbound", 3)[2].UserMessage(t)
	if closed.SessionEvent != vumi.SessionClose || closed.Content.Valid || closed.FromAddr != me {
		t.Errorf("last message %+v", closed)
	}

	// The session is gone: a nack.
	late := line.Reply("too late", true)
	deliver(t, w, late)
	evs := w.Env.WaitPublished("tel.event", 4)
	nack := evs[3].Event(t)
	if nack.EventType != vumi.EventNack || nack.UserMessageID != late.MessageID || !strings.Contains(nack.NackReason, "no session "+me) {
		t.Errorf("event %+v", nack)
	}
	st := w.Status(context.Background())
	if st["addr"] != addr || st["sessions"] != float64(0) || st["inbound"] != float64(1) || st["acks"] != float64(3) || st["nacks"] != float64(1) {
		t.Errorf("status %v", st)
	}
	if err := w.Health(context.Background()); err != nil {
		t.Error(err)
	}
}

// The lines of a session are published in order, and each session's
// messages come with its own address.
func TestTelnetOrderAndSessions(t *testing.T) {
	w, addr := run(t)
	a, b := dial(t, addr), dial(t, addr)
	w.Env.WaitPublished("tel.inbound", 2) // both sessions started
	var sa, sb strings.Builder
	for i := range 50 {
		fmt.Fprintf(&sa, "a%d\n", i)
		fmt.Fprintf(&sb, "b%d\n", i)
	}
	a.send(sa.String())
	b.send(sb.String())
	msgs := w.Env.WaitPublished("tel.inbound", 102)
	next := map[string]int{}
	for _, p := range msgs {
		m := p.UserMessage(t)
		if !m.Content.Valid {
			continue
		}
		who := m.Content.String[:1]
		want := fmt.Sprintf("%s%d", who, next[who])
		wantFrom := a.conn.LocalAddr().String()
		if who == "b" {
			wantFrom = b.conn.LocalAddr().String()
		}
		if m.Content.String != want || m.FromAddr != wantFrom {
			t.Fatalf("got %q from %s, want %q from %s", m.Content.String, m.FromAddr, want, wantFrom)
		}
		next[who]++
	}
	if next["a"] != 50 || next["b"] != 50 {
		t.Errorf("lines %v", next)
	}
}

// Stop closes the sessions and publishes their close messages.
func TestTelnetStop(t *testing.T) {
	w, addr := run(t)
	c := dial(t, addr)
	w.Env.WaitPublished("tel.inbound", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitClosed()
	if m := w.Env.PublishedTo("tel.inbound"); len(m) != 2 || m[1].UserMessage(t).SessionEvent != vumi.SessionClose {
		t.Errorf("published %d messages", len(m))
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after Stop")
	}
}

func TestReadLine(t *testing.T) {
	in := "plain\r\n" +
		"\xff\xfd\x01neg\xff\xfb\x03otiated\n" + // IAC DO ECHO, IAC WILL SGA
		"sub\xff\xfa\x18\x01\xff\xf0neg\r\n" + // IAC SB TTYPE SEND IAC SE
		"esc\xff\xffaped\n" +
		"cr\r\x00nul\n" +
		"\n" +
		"bad \xc3utf8\n" +
		"partial"
	r := bufio.NewReader(strings.NewReader(in))
	want := []string{"plain", "negotiated", "subneg", "esc\uFFFDaped", "crnul", "", "bad \uFFFDutf8"}
	for _, w := range want {
		got, err := readLine(r, 100)
		if err != nil || got != w {
			t.Errorf("readLine = %q, %v; want %q", got, err, w)
		}
	}
	if got, err := readLine(r, 100); got != "partial" || err == nil {
		t.Errorf("last readLine = %q, %v", got, err)
	}
	if _, err := readLine(bufio.NewReader(strings.NewReader(strings.Repeat("x", 20)+"\n")), 10); !errors.Is(err, errLineTooLong) {
		t.Errorf("long line: %v", err)
	}
}

func TestTelnetConfig(t *testing.T) {
	for _, cfg := range []string{
		`{"transport_name":"tel"}`,
		`{"transport_name":"","port":0}`,
		`{"transport_name":"vumi.events","port":0}`,
		`{"transport_name":"tel","port":70000}`,
		`{"transport_name":"tel","port":0,"write_timeout":"0s"}`,
	} {
		if _, err := sdktest.Start(t, Class, cfg); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("config %s: %v", cfg, err)
		}
	}
	if _, err := sdktest.Start(t, Class, `{"transport_name":"tel","port":0}`, sdktest.WithoutBus()); !errors.Is(err, sdk.ErrNoBus) {
		t.Errorf("without a bus: %v", err)
	}
	w, addr := run(t)
	_ = w
	_, port, _ := net.SplitHostPort(addr)
	if _, err := sdktest.Start(t, Class, fmt.Sprintf(`{"transport_name":"tel2","port":%s}`, port)); err == nil || errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("a port in use: %v, want a transient error", err)
	}
}

// shouter is an application for TestTelnetWithApplication: it replies to
// each line in capitals.
type shouter struct{ env *sdk.Env }

func (s *shouter) Start(_ context.Context, env *sdk.Env) error {
	s.env = env
	return vumi.ConsumeUserMessages(env, "tel.inbound", func(ctx context.Context, m *vumi.TransportUserMessage) error {
		if !m.Content.Valid {
			return nil
		}
		return vumi.PublishUserMessage(ctx, env, "tel.outbound", m.Reply(strings.ToUpper(m.Content.String), true))
	})
}

func (s *shouter) Stop(context.Context) error { return nil }

var shouterClass = sdk.Class{Name: "shouter", New: sdk.Construct(func(struct{}) (sdk.Worker, error) { return &shouter{}, nil })}

// The transport and an application wired together in the test's process:
// a client's line comes back from the application.
func TestTelnetWithApplication(t *testing.T) {
	var transport *sdktest.Worker
	app := sdktest.Run(t, shouterClass, nil, sdktest.OnPublish(func(ctx context.Context, p sdktest.Published) error {
		return transport.Env.Route(ctx, p)
	}))
	transport, addr := run(t, sdktest.OnPublish(app.Env.Route))
	c := dial(t, addr)
	c.send("is anybody there?\n")
	if got := c.readLine(); got != "IS ANYBODY THERE?" {
		t.Errorf("client read %q", got)
	}
	if ev := transport.Env.WaitPublished("tel.event", 1)[0].Event(t); ev.EventType != vumi.EventAck {
		t.Errorf("event %+v", ev)
	}
}
