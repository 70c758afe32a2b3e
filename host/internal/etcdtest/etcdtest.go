// Package etcdtest runs real etcd servers for tests: one private etcd
// process per test (its own data directory and loopback ports), which a
// test can kill, stop and start again on the same data, and a TCP proxy in
// front of it that a test can black-hole to cut one client off (a network
// partition as that client sees it).
//
// The server is the etcd binary of Debian's etcd-server package (which
// scripts/ensure-etcd.sh installs for make test), or the one named by
// DYNWORKERS_ETCD. Without one, a test fails when the CI environment
// variable is set, and is skipped otherwise.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary returns the etcd binary to run, or fails (under CI) or skips the
// test when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DYNWORKERS_ETCD"); p != "" {
		return p
	}
	for _, p := range []string{"etcd", "/usr/bin/etcd", "/usr/local/bin/etcd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "no etcd binary: install Debian's etcd-server (scripts/ensure-etcd.sh does) or set DYNWORKERS_ETCD"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Server is one etcd process of a test.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	client   string // host:port
	peer     string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *bytes.Buffer
	logMu    sync.Mutex
	restarts int
}

// Start starts an etcd for the test, waits until it answers, and stops it
// (SIGKILL) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: filepath.Join(t.TempDir(), "etcd"), log: new(bytes.Buffer)}
	s.client = freeAddr(t)
	s.peer = freeAddr(t)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("etcd log (last 4 KiB):\n%s", s.tail(4096))
		}
	})
	return s
}

// Endpoint is the client address, host:port.
func (s *Server) Endpoint() string { return s.client }

// URL is the client URL, http://host:port.
func (s *Server) URL() string { return "http://" + s.client }

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("etcd already runs")
	}
	name := "etcdtest"
	cmd := exec.Command(s.bin,
		"--name", name,
		"--data-dir", s.dir,
		"--listen-client-urls", "http://"+s.client,
		"--advertise-client-urls", "http://"+s.client,
		"--listen-peer-urls", "http://"+s.peer,
		"--initial-advertise-peer-urls", "http://"+s.peer,
		"--initial-cluster", name+"=http://"+s.peer,
		"--log-level", "warn",
	)
	w := &lockedWriter{mu: &s.logMu, w: s.log}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := probe(s.client); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s did not answer within 30s: %v\n%s", s.client, err, s.tail(4096))
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("etcd exited at start:\n%s", s.tail(4096))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe reports whether an etcd answers a read at addr.
func probe(addr string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Get(ctx, "etcdtest-probe")
	return err
}

// Kill kills the etcd process at once (SIGKILL), as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop stops etcd cleanly (SIGTERM) and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Restart starts etcd again on the same data and ports (after Kill or
// Stop), and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.restarts++
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Running reports whether the etcd process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) tail(n int) string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	b := s.log.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proxy is a TCP proxy in front of an address. Block black-holes it: the
// connections stay open but no byte passes either way, and new ones are
// accepted but go nowhere, as a network partition looks to the client.
type Proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	block  bool
	closed bool
	conns  map[net.Conn]struct{}
}

// NewProxy listens on a loopback port and forwards to target; it closes
// when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Block stops every byte through the proxy until Unblock.
func (p *Proxy) Block() {
	p.mu.Lock()
	p.block = true
	p.mu.Unlock()
}

// Unblock lets bytes through again.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	p.block = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Blocked reports whether the proxy black-holes.
func (p *Proxy) Blocked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.block
}

// CloseConns closes every connection through the proxy (a reset).
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Close closes the listener and every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.block = false
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.l.Close()
	p.CloseConns()
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) serve(in net.Conn) {
	if !p.track(in, true) {
		_ = in.Close()
		return
	}
	defer p.track(in, false)
	defer in.Close()
	// A blocked proxy accepts but does not connect: the client's dial
	// seems to work and then nothing answers.
	p.wait()
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(out, true) {
		_ = out.Close()
		return
	}
	defer p.track(out, false)
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { p.copy(out, in); done <- struct{}{} }()
	go func() { p.copy(in, out); done <- struct{}{} }()
	<-done
}

// wait returns once the proxy is not blocked (or is closed).
func (p *Proxy) wait() {
	p.mu.Lock()
	for p.block && !p.closed {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Dump returns what etcd holds under prefix, one "key = value" per line,
// for a failing test's log.
func Dump(c *clientv3.Client, prefix string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return "etcd dump: " + err.Error()
	}
	var b strings.Builder
	for _, kv := range r.Kvs {
		fmt.Fprintf(&b, "%s = %s (lease %x)\n", kv.Key, kv.Value, kv.Lease)
	}
	return b.String()
}
