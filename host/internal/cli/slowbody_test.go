package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// openFDs counts the open file descriptors of a process.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the fds of %d: %v", pid, err)
	}
	return len(entries)
}

// settledFDs waits until the fd count of pid has stayed the same for
// steady, and returns it; it fails the test after deadline.
func settledFDs(t *testing.T, pid int, steady, deadline time.Duration) int {
	t.Helper()
	n, since := openFDs(t, pid), time.Now()
	sdktest.Eventually(t, deadline, func() bool {
		if m := openFDs(t, pid); m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) >= steady
	}, "the fd count of the host did not settle for %s: %v", steady, lazy(func() any { return fdTargets(pid) }))
	return n
}

// fdTargets lists what the open fds of pid point at, for a failure message.
func fdTargets(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		target, _ := os.Readlink(dir + "/" + e.Name())
		out = append(out, e.Name()+"->"+target)
	}
	return out
}

// apiAddr waits for the host's "HTTP API listening" line and returns its
// address.
func (h *hostProc) apiAddr() string {
	h.t.Helper()
	line := h.waitLine("HTTP API listening")
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		h.t.Fatalf("no address in %q", line)
	}
	return m[1]
}

// TestSlowBodiesDoNotHoldTheHostsFDs is the slow-body attack on a real
// host process (a token from a file, one running plugin): 1,000 connections
// each send the headers of a 1,000-byte POST and a few bytes of its body,
// then stall; a third have no token (answered 401 before authentication
// reads anything), a third look like a cross-origin form (403), a third
// have the token and reach the handler (408). The host's fd count, read in
// /proc, must come back to what it was within the body deadline, after
// which the host still answers and still launches plugins.
func TestSlowBodiesDoNotHoldTheHostsFDs(t *testing.T) {
	const (
		conns        = 1000
		bodyDeadline = 2 * time.Second
		margin       = 5 * time.Second // the host accepting 1,000 connections on a loaded 2-core machine
		token        = "slow-body-test-token-0123456789"
	)
	cfg := writeConfig(t, threeWorkers[:strings.Index(threeWorkers, `worker "b"`)])
	tokenFile := filepath.Join(filepath.Dir(cfg), "http-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	replaceInFile(t, cfg, "  http_addr = \"127.0.0.1:0\"\n", fmt.Sprintf(`  http_addr = "127.0.0.1:0"
  http_token_file = "http-token"
  http_timeouts {
    read_header = "%s"
    body        = "%s"
  }
`, bodyDeadline, bodyDeadline))
	h := startServe(t, "-config", cfg)
	addr := h.apiAddr()
	h.waitLine("host running")
	pid := h.cmd.Process.Pid
	// The baseline is the fd count of a settled host: a worker's plugin
	// opens its go-plugin broker connection to the host (one more unix
	// socket) a moment after "host running", later still on a loaded
	// machine. Settled: the same count for a whole second.
	baseline := settledFDs(t, pid, time.Second, 15*time.Second)
	baselineFDs := fdTargets(pid)

	heads := []string{
		"POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n" + httpapi.RequestHeader + ": 1\r\nContent-Type: application/json\r\n",
		"POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1:1\r\nContent-Type: text/plain\r\n",
		"POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n",
	}
	var (
		mu      sync.Mutex
		clients []net.Conn
		wg      sync.WaitGroup
		failed  int
	)
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	jobs := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					_, err = fmt.Fprintf(c, "%sContent-Length: 1000\r\n\r\n{\"name\":\"w", heads[i%len(heads)])
				}
				mu.Lock()
				if err != nil {
					failed++
				} else {
					clients = append(clients, c)
				}
				mu.Unlock()
			}
		}()
	}
	started := time.Now()
	for i := 0; i < conns; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sent := time.Now()
	if failed > 0 {
		t.Fatalf("%d of %d connections could not be opened", failed, conns)
	}
	t.Logf("baseline %d fds; %d connections opened in %s", baseline, conns, sent.Sub(started))

	var back time.Duration
	peak := 0
	sdktest.Eventually(t, bodyDeadline+margin, func() bool {
		n := openFDs(t, pid)
		peak = max(peak, n)
		if n > baseline {
			return false
		}
		back = time.Since(sent)
		return true
	}, "the host's fds did not come back to %d within %s of the last slow body: %v (at the baseline: %v)", baseline, bodyDeadline+margin,
		lazy(func() any { return fdTargets(pid) }), baselineFDs)
	t.Logf("the host held up to %d fds; they were back to %d %s after the last slow body (body deadline %s)",
		peak, baseline, back.Round(time.Millisecond), bodyDeadline)
	if peak < baseline+conns/4 {
		t.Fatalf("the host held at most %d fds during the attack (baseline %d): the attack did not reach it", peak, baseline)
	}

	// The host closed each connection (the client reads its end).
	for i, c := range clients[:30] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("connection %d is still open on the host's side", i)
				}
				break
			}
		}
	}

	// The host still answers and still launches a plugin.
	url := "http://" + addr
	if out, stderr, rc := runCLI(t, "start", "late", "-class", "chaos", "-http", url, "-token-file", tokenFile); rc != 0 {
		t.Fatalf("start after the attack: rc %d\n%s%s", rc, out, stderr)
	}
	if out, stderr, rc := runCLI(t, "status", "-http", url, "-token-file", tokenFile); rc != 0 || !strings.Contains(out, "late") {
		t.Fatalf("status after the attack: rc %d\n%s%s", rc, out, stderr)
	}
}
