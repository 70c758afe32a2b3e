package daemon

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// chatHost runs telnet + echo on transport_name tn, on the embedded bus or
// (amqpURL set) on RabbitMQ, and returns the host and the telnet port.
func chatHost(t *testing.T, sys, tn, amqpURL string) (*harness, int) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"telnet", "echo"} {
		linkPlugin(t, filepath.Join(dir, "plugins"), p)
	}
	port := freePort(t)
	amqpBlock := ""
	if amqpURL != "" {
		amqpBlock = fmt.Sprintf("amqp {\n  url = %q\n}\n", amqpURL)
		admin := brokertest.NewAdmin(t)
		admin.DeleteAtCleanup([]string{tn + ".inbound", tn + ".outbound", tn + ".event",
			control.HostQueue(sys, "h1"), control.AnyQueue(sys)}, nil)
	}
	h := startConfig(t, dir, fmt.Sprintf(`system_id = %q
host {
  name       = "h1"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
%s
worker "telnet" {
  class = "telnet"
  config {
    transport_name = %q
    port           = %d
  }
}
worker "echo" {
  class = "echo"
  config {
    transport_name = %q
  }
}
`, sys, amqpBlock, tn, port, tn))
	h.waitStarted("telnet")
	h.waitStarted("echo")
	return h, port
}

// session is one telnet client.
type session struct {
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, port int) *session {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &session{conn: conn, r: bufio.NewReader(conn)}
}

// expect reads n lines, which must be want(i) for i in order.
func (s *session) expect(n int, want func(int) string) error {
	_ = s.conn.SetReadDeadline(time.Now().Add(2 * waitTimeout))
	for i := range n {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		if got := strings.TrimRight(line, "\r\n"); got != want(i) {
			return fmt.Errorf("line %d = %q, want %q", i, got, want(i))
		}
	}
	return nil
}

// Two telnet sessions send 1,000 lines each and get 1,000 echoes each, in
// order, through the embedded bus and through RabbitMQ.
func TestTelnetEchoThousandLines(t *testing.T) {
	for _, kind := range []string{"embedded", "amqp"} {
		t.Run(kind, func(t *testing.T) {
			sys := brokertest.ID(t)
			url := ""
			if kind == "amqp" {
				url = brokertest.URL(t)
			}
			_, port := chatHost(t, sys, "chat_"+sys, url)
			const n = 1000
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for s := range 2 {
				sess := dial(t, port)
				line := func(i int) string { return fmt.Sprintf("session %d line %d", s, i) }
				wg.Go(func() {
					w := bufio.NewWriter(sess.conn)
					for i := range n {
						fmt.Fprintf(w, "%s\r\n", line(i))
					}
					if err := w.Flush(); err != nil {
						errs <- err
					}
				})
				wg.Go(func() {
					if err := sess.expect(n, line); err != nil {
						errs <- fmt.Errorf("session %d: %w", s, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// The echo worker is killed in the middle of a stream: after its restart
// every line is answered, none lost (the bus redelivers what it had not
// acked). A line may be answered twice (at-least-once delivery), but each
// line's first answer comes in order.
func TestEchoKilledMidStreamLosesNothing(t *testing.T) {
	for _, kind := range []string{"embedded", "amqp"} {
		t.Run(kind, func(t *testing.T) {
			sys := brokertest.ID(t)
			url := ""
			if kind == "amqp" {
				url = brokertest.URL(t)
			}
			h, port := chatHost(t, sys, "chat_"+sys, url)
			sess := dial(t, port)
			const n = 2000
			got := make(chan string, 4*n)
			go func() {
				for {
					line, err := sess.r.ReadString('\n')
					if err != nil {
						close(got)
						return
					}
					got <- strings.TrimRight(line, "\r\n")
				}
			}()
			_ = sess.conn.SetReadDeadline(time.Now().Add(4 * waitTimeout))
			echoPid := h.pid("echo")
			w := bufio.NewWriter(sess.conn)
			for i := range n {
				fmt.Fprintf(w, "line %d\r\n", i)
				if i == n/4 {
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
					// Kill it once it has answered something of the stream.
					if first := <-got; first != "line 0" {
						t.Fatalf("first answer %q", first)
					}
					if err := syscall.Kill(echoPid, syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if p := h.waitStarted("echo"); p == echoPid {
				t.Fatal("echo kept its pid")
			}
			seen := map[string]bool{"line 0": true}
			next := 1
			for next < n {
				line, ok := <-got
				if !ok {
					t.Fatalf("connection ended after %d of %d lines answered", next, n)
				}
				if seen[line] {
					continue // a redelivered line answered again
				}
				if want := fmt.Sprintf("line %d", next); line != want {
					t.Fatalf("answer %q, want %q (lines are answered in order)", line, want)
				}
				seen[line] = true
				next++
			}
			if ws, _ := h.d.Worker("telnet"); ws.Restarts != 0 {
				t.Fatalf("telnet restarted: %+v", ws)
			}
		})
	}
}
