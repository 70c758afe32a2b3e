package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBench must be "1" for the benchmarks to run; `make test` leaves it
// unset, so they skip there.
const EnvBench = "DYNWORKERS_BENCH"

// EnvBenchOut is where the report goes, relative to the repository root;
// unset: no report is written.
const EnvBenchOut = "DYNWORKERS_BENCH_OUT"

// EnvBenchStart is when `make bench` began its benchmarks, in seconds
// since the epoch (scripts/bench.sh sets it), for the report's run time.
const EnvBenchStart = "DYNWORKERS_BENCH_START"

// The command that produces docs/benchmarks.md, and what it runs.
const (
	benchCommand = "make bench"
	goTestLine   = "dir=$(mktemp -d)\n" +
		"DYNWORKERS_BENCH=1 DYNWORKERS_BENCH_DIR=$dir go test -p 1 -count=1 -timeout 30m -run '^TestBench' -v ./host/internal/broker ./host/internal/daemon ./host/internal/clustere2e\n" +
		"DYNWORKERS_BENCH=1 DYNWORKERS_BENCH_DIR=$dir DYNWORKERS_BENCH_OUT=docs/benchmarks.md go test -count=1 -timeout 30m -run . -v ./bench"
)

var (
	resultsMu sync.Mutex
	results   = &Results{
		Date:     time.Now(),
		Command:  benchCommand,
		GoTest:   goTestLine,
		Machine:  ReadMachine(), // before anything runs: the load average is the machine's own
		CPUStart: ReadCPU(),
	}
)

func record(f func(r *Results)) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	f(results)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		os.RemoveAll(fix.dir)
	}
	if code == 0 && os.Getenv(EnvBench) == "1" {
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, "benchmarks:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// writeReport renders the results to $DYNWORKERS_BENCH_OUT when every
// benchmark has run; a partial run (-run selecting some) writes nothing.
func writeReport() error {
	out := os.Getenv(EnvBenchOut)
	if out == "" {
		return nil
	}
	r := results
	if r.Binary == nil || r.Restart == nil || r.RestartSpaced == nil || len(r.Startup) == 0 || r.Memory == nil || r.Control == nil ||
		r.Bare == nil || r.Supervisord == nil || r.Scale == nil {
		fmt.Fprintf(os.Stderr, "benchmarks: not every benchmark ran; %s not written\n", out)
		return nil
	}
	r.Bus = BusResults()
	// The bus library's and the embedded bus's figures come from the
	// benchmarks beside them, run just before by scripts/bench.sh.
	if dir := os.Getenv(EnvBenchDir); dir != "" {
		if err := ReadFragments(dir, r.Bus); err != nil {
			return err
		}
		c, err := ReadClusterFragments(dir)
		if err != nil {
			return err
		}
		r.Cluster = c
	}
	r.Background = BackgroundSince(r.CPUStart, ReadCPU())
	if v, err := strconv.ParseInt(os.Getenv(EnvBenchStart), 10, 64); err == nil && v > 0 {
		r.Duration = time.Since(time.Unix(v, 0))
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	var b bytes.Buffer
	if err := RenderMarkdown(&b, r); err != nil {
		return err
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchmarks: wrote %s\n", out)
	return nil
}

// fixture holds private copies of the binaries built by `make build`, so
// that a concurrent `make build` cannot replace them mid-run (the host
// refuses a plugin whose checksum changed).
type fixture struct {
	root      string // repository root
	dir       string // temporary directory holding the copies
	host      string // copy of bin/dynworkers
	pluginDir string // holds the copy of bin/plugins/hello-worker only
	plugin    string
	// busPluginDir holds the plugins of the worker benchmarks of the bus:
	// the copy of bin/plugins/echo and the test plugin forward, which the
	// harness builds by path (it is a main package under host/internal,
	// which `go build` builds though nothing outside may import it).
	busPluginDir string
}

var (
	fix     *fixture
	fixErr  error
	fixOnce sync.Once
)

// setup skips the test unless the benchmarks are enabled, and returns the
// fixture.
func setup(t *testing.T) *fixture {
	t.Helper()
	if os.Getenv(EnvBench) != "1" {
		t.Skipf("benchmark: set %s=1 to run (make bench does)", EnvBench)
	}
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dynworkers-bench-")
	if err != nil {
		return nil, err
	}
	f := &fixture{root: root, dir: dir, host: filepath.Join(dir, "dynworkers"), pluginDir: filepath.Join(dir, "plugins")}
	f.plugin = filepath.Join(f.pluginDir, "hello-worker")
	f.busPluginDir = filepath.Join(dir, "bus-plugins")
	for _, d := range []string{f.pluginDir, f.busPluginDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	for src, dst := range map[string]string{
		filepath.Join(root, "bin", "dynworkers"):              f.host,
		filepath.Join(root, "bin", "plugins", "hello-worker"): f.plugin,
		filepath.Join(root, "bin", "plugins", "echo"):         filepath.Join(f.busPluginDir, "echo"),
	} {
		if err := copyFile(src, dst); err != nil {
			os.RemoveAll(dir)
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: run `make build` first (`make bench` does)", err)
			}
			return nil, err
		}
	}
	build := exec.Command(goTool(), "build", "-o", filepath.Join(f.busPluginDir, "forward"), "./host/internal/testplugins/forward")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("building the forward test plugin: %w: %s", err, out)
	}
	out, err := exec.Command(f.host, "version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s version: %w: %s", f.host, err, out)
	}
	record(func(r *Results) { r.HostVersion = strings.TrimSpace(string(out)) })
	return f, nil
}

// goTool is the go command: $GO (scripts/bench.sh passes it on), else the
// one on PATH, else the toolchain that built this test.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	if g, err := exec.LookPath("go"); err == nil {
		return g
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// repoRoot finds the directory holding go.mod, from the package directory
// the test runs in.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// socketDir gives the plugins started by the rest of the test a unix socket
// directory of their own, so that whatever they leave behind can be counted
// and does not pile up in the real $TMPDIR: as TMPDIR, in which the host
// makes its socket directory (with one per plugin process in it), and as
// go-plugin's PLUGIN_UNIX_SOCKET_DIR, for a host that passes its
// environment on. Its path is short (not a t.TempDir, which holds the
// test's name): a unix socket's path is at most 107 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dwb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv("PLUGIN_UNIX_SOCKET_DIR", d)
	t.Setenv("TMPDIR", d)
	return d
}

// tailBuffer keeps the last max bytes written to it: the host's log, shown
// when a benchmark fails.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
