// Package testplugins holds worker plugins that exist only for tests (each a
// main package in a subdirectory, e.g. chaos and other) and a helper that
// builds them, so tests of any package can run real plugin processes.
//
// Typical use, once per test binary:
//
//	func TestMain(m *testing.M) {
//		dir, err := testplugins.BuildDir("chaos", "other")
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		pluginDir = dir
//		code := m.Run()
//		testplugins.Cleanup()
//		os.Exit(code)
//	}
package testplugins

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string // temporary directory holding the built binaries
	built = map[string]bool{}
)

// BuildDir builds the named test plugins (subdirectories of this package,
// e.g. "chaos", or first-party plugins as "plugins/pool") into one temporary
// directory and returns it; the binaries are named after their packages
// ("pool" for "plugins/pool"). Builds are cached for the life of the process:
// asking again for a plugin already built costs nothing. The go tool is
// found on PATH or in runtime.GOROOT(), and the module root from the current
// directory (a test runs in its package's directory).
func BuildDir(names ...string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "dynworkers-testplugins-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	var todo []string
	for _, n := range names {
		base := strings.TrimPrefix(n, "plugins/")
		if strings.ContainsAny(base, `/\.`) || base == "" {
			return "", fmt.Errorf("test plugin name %q: want a subdirectory name of host/internal/testplugins, or plugins/NAME for a first-party plugin", n)
		}
		if !built[n] {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return dir, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root, err := moduleRoot(goTool)
	if err != nil {
		return "", err
	}
	// One go build per plugin: -o into a directory needs several packages of
	// distinct names, and per-plugin builds give per-plugin errors.
	for _, n := range todo {
		pkg, out := "./host/internal/testplugins/"+n, n
		if base, ok := strings.CutPrefix(n, "plugins/"); ok {
			pkg, out = "./plugins/"+base, base
		}
		cmd := exec.Command(goTool, "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building test plugin %s: %v\n%s", n, err, out)
		}
		built[n] = true
	}
	return dir, nil
}

// Build is BuildDir for use inside a test: it fails the test on error.
func Build(tb testing.TB, names ...string) string {
	tb.Helper()
	d, err := BuildDir(names...)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Cleanup removes the directory of built plugins. Call it at the end of
// TestMain; a later Build starts afresh.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir = ""
	built = map[string]bool{}
}

// Copy copies the file src to dst with mode 0755 (a test puts a built plugin
// into a plugin directory under another name) and returns dst.
func Copy(tb testing.TB, src, dst string) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dst
}

func moduleRoot(goTool string) (string, error) {
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating the module root: go env GOMOD: %v", err)
	}
	gomod := string(bytes.TrimSpace(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("locating the module root: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}
