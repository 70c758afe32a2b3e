package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// syncBuffer is a log output safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, Level: hclog.Debug})
}

// small are timeouts short enough for a test.
var small = Timeouts{ReadHeader: 300 * time.Millisecond, Body: 300 * time.Millisecond, Write: time.Second, Idle: 500 * time.Millisecond}

// closedWithin reads from conn until the server closes it and returns how
// long that took; it fails the test when the server has not closed it
// within limit.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(limit))
	got, err := io.ReadAll(conn)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s; it sent %q", limit, got)
	}
	return took, string(got)
}

// A client that sends headers and part of a body, then stalls, loses its
// connection once the body deadline passes, on every path: authenticated
// or not, refused by the guard or not, a route that reads the body or one
// that does not.
func TestSlowBodyIsCutOff(t *testing.T) {
	const token = "limits-test-token-0123456789"
	d := &fakeDoer{}
	s := New(Options{Addr: "127.0.0.1:0", Doer: d, Token: token, Timeouts: small})
	stop := started(t, s)
	defer stop()
	cases := []struct {
		name, head string
		status     string // the answer's status line, before the close
	}{
		{"before authentication", "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n" + RequestHeader + ": 1\r\nContent-Type: application/json\r\n", "401"},
		{"refused by the guard", "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n", "403"},
		{"read by the handler", "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n", "408"},
		{"a route without a body", "DELETE /v1/workers/w HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n", "200"},
		{"the open health check", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", "200"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "%sContent-Length: 1000\r\n\r\n{\"name\":", c.head)
			took, got := closedWithin(t, conn, small.Body+5*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 "+c.status) {
				t.Errorf("answer %q, want status %s", got, c.status)
			}
			if took < small.Body/2 && c.status == "408" {
				t.Errorf("closed after %s, before the body deadline %s", took, small.Body)
			}
			t.Logf("closed after %s", took)
		})
	}
	if n := len(d.requests()); n != 1 { // the DELETE
		t.Errorf("the Doer got %d requests, want 1", n)
	}
}

// A body cut off while the handler reads it is answered 408, naming the
// setting.
func TestSlowBodyAnswer(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Doer: &fakeDoer{}, Timeouts: small})
	stop := started(t, s)
	defer stop()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: 1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", RequestHeader)
	_, got := closedWithin(t, conn, 10*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "host.http_timeouts.body") {
		t.Errorf("answer: %q", got)
	}
}

// Headers that never end, and a kept-alive connection that sends nothing,
// are closed at their deadlines.
func TestSlowHeadersAndIdleConnections(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Doer: &fakeDoer{}, Timeouts: small})
	stop := started(t, s)
	defer stop()

	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
	took, _ := closedWithin(t, conn, 10*time.Second)
	t.Logf("slow headers closed after %s", took)

	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(idle)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("healthz: %q", line)
	}
	start := time.Now()
	_ = idle.SetReadDeadline(start.Add(10 * time.Second))
	_, err = io.ReadAll(br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an idle connection was kept for 10s")
	}
	t.Logf("idle connection closed after %s", time.Since(start))
}

// longDoer takes longer than every read deadline.
type longDoer struct{ d time.Duration }

func (l longDoer) Do(context.Context, *control.Request) control.Reply {
	time.Sleep(l.d) // the operation itself: a start waits for its worker
	return control.Reply{OK: true, Result: "done"}
}

// An operation that outlasts the read deadlines is still answered: the
// deadlines bound what the client sends, not what the host does.
func TestLongOperationOutlastsTheReadDeadlines(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Doer: longDoer{d: 3 * (small.ReadHeader + small.Body)}, Timeouts: small})
	stop := started(t, s)
	defer stop()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"name":"w","class":"c"}`
	fmt.Fprintf(conn, "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: 1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", RequestHeader, len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("answer: %q %v", line, err)
	}
}

// A body over MaxBodyBytes is refused with a message that names the limit,
// on a real connection too.
func TestBodyLimitNamesTheLimit(t *testing.T) {
	s := New(Options{Doer: &fakeDoer{}})
	w, rep := serve(t, s, "POST", "/v1/workers", `{"name":"w","class":"c"}`+strings.Repeat(" ", MaxBodyBytes))
	if w.Code != 413 || rep.Error == nil || !strings.Contains(rep.Error.Message, fmt.Sprint(MaxBodyBytes)) ||
		!strings.Contains(rep.Error.Message, "limit") {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
}

// Options.MaxBody raises the limit (the daemon sets it to the host's
// control_message_size), never lowers it below MaxBodyBytes.
func TestMaxBodyOption(t *testing.T) {
	const limit = 2 * MaxBodyBytes
	s := New(Options{Doer: &fakeDoer{}, MaxBody: limit})
	body := `{"name":"w","class":"c"}`
	if w, _ := serve(t, s, "POST", "/v1/workers", body+strings.Repeat(" ", limit-len(body))); w.Code == 413 {
		t.Errorf("a body of MaxBody bytes: %d %s", w.Code, w.Body)
	}
	w, rep := serve(t, s, "POST", "/v1/workers", body+strings.Repeat(" ", limit))
	if w.Code != 413 || rep.Error == nil || !strings.Contains(rep.Error.Message, fmt.Sprint(limit)) {
		t.Errorf("a body over MaxBody: %d %s", w.Code, w.Body)
	}
	small := New(Options{Doer: &fakeDoer{}, MaxBody: 10})
	if w, _ := serve(t, small, "POST", "/v1/workers", body+strings.Repeat(" ", 1000)); w.Code == 413 {
		t.Errorf("MaxBody below MaxBodyBytes lowered the limit: %d %s", w.Code, w.Body)
	}
}
