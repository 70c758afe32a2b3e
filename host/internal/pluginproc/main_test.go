package pluginproc

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

var pluginDir string

func TestMain(m *testing.M) {
	if os.Getenv(envFakeHost) != "" {
		fakeHost()
		return
	}
	// Plugins get their socket directory in os.TempDir(): give this test
	// binary one of its own, so that other test binaries running at the
	// same time cannot confuse the check for leftovers below.
	tmp, err := os.MkdirTemp("", "pluginproc-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	dir, err := testplugins.BuildDir("chaos", "other", "oldsdk", "hybrid", "bus", "plugins/telnet", "plugins/echo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	testplugins.Cleanup()
	// Every socket, both sides', is in the host's socket directory,
	// which is gone once no process is left; nothing else should be.
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		fmt.Fprintf(os.Stderr, "FAIL: %d files left behind in $TMPDIR: %v\n", len(left), names)
		code = 1
	}
	os.RemoveAll(tmp)
	os.Exit(code)
}

// logSink collects a test's log output, shows it when the test fails, and
// can tell when a line containing some text was logged.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits map[string]chan struct{}
}

func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(b)
	for text, ch := range s.waits {
		if bytes.Contains(s.buf.Bytes(), []byte(text)) {
			close(ch)
			delete(s.waits, text)
		}
	}
	return len(b), nil
}

// seen returns a channel closed once text has been logged.
func (s *logSink) seen(text string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if bytes.Contains(s.buf.Bytes(), []byte(text)) {
		close(ch)
		return ch
	}
	if s.waits == nil {
		s.waits = map[string]chan struct{}{}
	}
	s.waits[text] = ch
	return ch
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func testLogger(t *testing.T) (hclog.Logger, *logSink) {
	sink := &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", sink.String())
		}
	})
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: sink}), sink
}

func chaosPath() string { return filepath.Join(pluginDir, "chaos") }

func sha(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return s[:]
}

// chaosOptions returns Options for a chaos worker with the given config.
func chaosOptions(t *testing.T, cfg map[string]any) Options {
	t.Helper()
	logger, _ := testLogger(t)
	return Options{
		Path:       chaosPath(),
		Checksum:   sha(t, chaosPath()),
		WorkerName: "w-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Class:      "chaos",
		ConfigJSON: mustJSON(t, cfg),
		SystemID:   "test",
		HostName:   "test-host",
		Logger:     logger,
	}
}

// launchLog makes every chaos process started from now on record its pid,
// and returns a function listing the pids recorded so far. At the end of
// the test it checks that none of them is left.
func launchLog(t *testing.T) func() []int {
	t.Helper()
	file := filepath.Join(t.TempDir(), "launches")
	t.Setenv("CHAOS_LAUNCH_LOG", file)
	passEnv(t, "CHAOS_LAUNCH_LOG")
	pids := func() []int {
		b, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var out []int
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			pid, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("launch log line %q", l)
			}
			out = append(out, pid)
		}
		return out
	}
	t.Cleanup(func() {
		for _, pid := range pids() {
			assertGone(t, pid)
		}
	})
	return pids
}

// assertGone checks that the process is gone: no such pid, or a zombie
// whose parent is not this process (an orphan that init has to reap; in a
// container init may never do it). A zombie child of ours would be a leak.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Errorf("bad pid %d", pid)
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return
	}
	// pid (comm) state ppid ...; comm may contain spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) >= 2 && f[0] == "Z" && f[1] != strconv.Itoa(os.Getpid()) {
		return
	}
	t.Errorf("process %d still exists: %s", pid, b)
}

// waitDone waits for the process to end, failing the test after d.
func waitDone(t *testing.T, p *Process, d time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		t.Fatalf("process %d did not end within %s", p.Pid(), d)
	}
}

// mustJSON encodes v as JSON, failing the test if it cannot.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
