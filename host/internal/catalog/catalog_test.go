package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk"
)

var pluginDir string

func TestMain(m *testing.M) {
	flag.Parse()
	run, list := flag.Lookup("test.run"), flag.Lookup("test.list")
	if (run != nil && run.Value.String() == "^$") || (list != nil && list.Value.String() != "") {
		// No test runs (make fuzz lists the fuzz targets, then runs one
		// alone): the plugins are not needed.
		os.Exit(m.Run())
	}
	dir, err := testplugins.BuildDir("chaos", "other")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	testplugins.Cleanup()
	os.Exit(code)
}

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

func testLogger(t *testing.T) (hclog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return hclog.New(&hclog.LoggerOptions{Name: "catalog", Level: hclog.Debug, Output: buf}), buf
}

// install copies a built test plugin into dir under a name.
func install(t *testing.T, plugin, dir, name string) string {
	t.Helper()
	return testplugins.Copy(t, filepath.Join(pluginDir, plugin), filepath.Join(dir, name))
}

func write(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// testEnv is added to the Options.Env of scan (see launches).
var testEnv []string

func scan(t *testing.T, o Options) *Catalog {
	t.Helper()
	o.Env = append(o.Env, testEnv...)
	if o.Logger == nil {
		o.Logger, _ = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Scan(ctx, o)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return c
}

// launches makes chaos processes record their launches from now on and
// returns a function counting them.
func launches(t *testing.T) func() int {
	file := filepath.Join(t.TempDir(), "launches")
	// Plugins get a clean environment: the variable is passed explicitly,
	// as host.plugin_env does (scan adds testEnv to Options.Env).
	testEnv = []string{"CHAOS_LAUNCH_LOG=" + file}
	t.Cleanup(func() { testEnv = nil })
	return func() int {
		b, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	chaos := install(t, "chaos", dir, "chaos")
	// A symlink to a binary in a subdirectory is followed; one that
	// resolves outside the directory is refused.
	if err := os.Mkdir(filepath.Join(dir, "versions"), 0o755); err != nil {
		t.Fatal(err)
	}
	inside := install(t, "other", filepath.Join(dir, "versions"), "other-1.0")
	link := filepath.Join(dir, "other-link")
	if err := os.Symlink(inside, link); err != nil {
		t.Fatal(err)
	}
	elsewhere := install(t, "other", t.TempDir(), "other")
	outside := filepath.Join(dir, "outside-link")
	if err := os.Symlink(elsewhere, outside); err != nil {
		t.Fatal(err)
	}
	broken := map[string]string{
		outside:                                  "outside the plugin directory",
		install(t, "chaos", dir, "chaos-crash"):  "panic: chaos: crashing",
		install(t, "chaos", dir, "chaos-stdout"): "stdout",
		install(t, "chaos", dir, "chaos-hang"):   "describe timeout",
		write(t, filepath.Join(dir, "script.sh"), "#!/bin/sh\necho hi\n", 0o755): `printed "hi"`,
		write(t, filepath.Join(dir, "notes.txt"), "some text\n", 0o755):          "exec format error",
	}
	write(t, filepath.Join(dir, "README"), "docs, not executable\n", 0o644)
	install(t, "chaos", dir, ".hidden-chaos") // would conflict if scanned
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	install(t, "chaos", filepath.Join(dir, "subdir"), "nested") // not scanned

	c := scan(t, Options{Dir: dir, DescribeTimeout: 2 * time.Second, Concurrency: 4})

	var names []string
	for _, cls := range c.Classes() {
		names = append(names, cls.Name)
	}
	if !reflect.DeepEqual(names, []string{"chaos", "other"}) {
		t.Errorf("classes = %v, want chaos and other", names)
	}
	cls, err := c.Lookup("chaos")
	if err != nil {
		t.Fatal(err)
	}
	if cls.Binary.Path != chaos || len(cls.Binary.SHA256) != 32 || cls.Binary.Cached || cls.Version != "1.0.0" {
		t.Errorf("chaos class = %+v, binary %+v", cls, cls.Binary)
	}
	if mode, ok := cls.Schema.Lookup("mode"); !ok || mode.Default != "run" || mode.Type != sdk.TypeString {
		t.Errorf("mode attribute = %+v", mode)
	}
	if code, _ := cls.Schema.Lookup("code"); code.Default != float64(1) || code.Type != sdk.TypeNumber {
		t.Errorf("code attribute = %+v", code)
	}
	if other, err := c.Lookup("other.legacy"); err != nil || other.Name != "other" || other.Binary.Path != link {
		t.Errorf("Lookup(alias) = %+v, %v; want class other of %s", other, err, link)
	}

	probs := c.Problems()
	if len(probs) != len(broken) {
		t.Errorf("%d problems, want %d: %v", len(probs), len(broken), probs)
	}
	for _, p := range probs {
		want, ok := broken[p.Path]
		if !ok {
			t.Errorf("unexpected problem %s: %v", p.Path, p.Err)
			continue
		}
		if !strings.Contains(p.Err.Error(), p.Path) || !strings.Contains(p.Err.Error(), want) {
			t.Errorf("problem of %s = %v, want it named and %q", p.Path, p.Err, want)
		}
	}
	var paths []string
	for _, b := range c.Binaries() {
		paths = append(paths, b.Path)
	}
	if !reflect.DeepEqual(paths, []string{chaos, link}) {
		t.Errorf("binaries = %v", paths)
	}
}

func TestLogsProblems(t *testing.T) {
	dir := t.TempDir()
	script := write(t, filepath.Join(dir, "script.sh"), "#!/bin/sh\necho hi\n", 0o755)
	logger, buf := testLogger(t)
	c := scan(t, Options{Dir: dir, Logger: logger})
	if len(c.Problems()) != 1 {
		t.Fatalf("problems = %v", c.Problems())
	}
	if out := buf.String(); !strings.Contains(out, "[ERROR]") || !strings.Contains(out, script) {
		t.Errorf("problem not logged at error level with its path:\n%s", out)
	}
	if _, err := c.Lookup("chaos"); !errors.Is(err, ErrUnknownClass) || !strings.Contains(err.Error(), "offers no classes") {
		t.Errorf("Lookup in an empty catalog = %v", err)
	}
}

func TestUnreadableDir(t *testing.T) {
	_, err := Scan(context.Background(), Options{Dir: filepath.Join(t.TempDir(), "missing")})
	if err == nil {
		t.Fatal("Scan of a missing directory succeeded")
	}
}

func TestConflict(t *testing.T) {
	dir := t.TempDir()
	a := install(t, "chaos", dir, "chaos-a")
	b := install(t, "chaos", dir, "chaos-b")
	o1 := install(t, "other", dir, "other-1")
	o2 := install(t, "other", dir, "other-2")
	c := scan(t, Options{Dir: dir})
	for _, tc := range []struct{ name, a, b string }{
		{"chaos", a, b}, {"other", o1, o2}, {"other.legacy", o1, o2},
	} {
		_, err := c.Lookup(tc.name)
		if !errors.Is(err, ErrClassConflict) || !strings.Contains(err.Error(), tc.a) || !strings.Contains(err.Error(), tc.b) {
			t.Errorf("Lookup(%q) = %v, want a conflict naming %s and %s", tc.name, err, tc.a, tc.b)
		}
		if _, _, err := c.ResolveClass(tc.name); !errors.Is(err, ErrClassConflict) {
			t.Errorf("ResolveClass(%q) = %v", tc.name, err)
		}
	}
	probs := c.Problems()
	if len(probs) != 3 {
		t.Fatalf("problems = %v, want one per contested name", probs)
	}
	for _, p := range probs {
		if !errors.Is(p.Err, ErrClassConflict) {
			t.Errorf("problem %v is not a conflict", p.Err)
		}
	}
	if n := len(c.Classes()); n != 4 {
		t.Errorf("Classes() has %d entries, want all 4", n)
	}
}

func TestLookupSuggestions(t *testing.T) {
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	install(t, "other", dir, "other")
	c := scan(t, Options{Dir: dir})
	for _, tc := range []struct{ name, hint string }{
		{"chaoss", "chaos"},
		{"Chaos", "chaos"},
		{"legacy", "other.legacy"},
		{"other.legcy", "other.legacy"},
		{"vumi.transports.smpp.SmppTransport", ""},
	} {
		_, err := c.Lookup(tc.name)
		if !errors.Is(err, ErrUnknownClass) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
			t.Errorf("Lookup(%q) = %v, want unknown class", tc.name, err)
			continue
		}
		hint := fmt.Sprintf("did you mean %q", tc.hint)
		if tc.hint == "" && strings.Contains(err.Error(), "did you mean") || tc.hint != "" && !strings.Contains(err.Error(), hint) {
			t.Errorf("Lookup(%q) = %v, want hint %q", tc.name, err, tc.hint)
		}
	}
	name, schema, err := c.ResolveClass("other.legacy")
	if err != nil || name != "other" {
		t.Fatalf("ResolveClass(alias) = %q, %v", name, err)
	}
	if g, _ := schema.Lookup("greeting"); g.Default != "hello" {
		t.Errorf("schema = %+v", schema)
	}
}

func TestCache(t *testing.T) {
	count := launches(t)
	dir := t.TempDir()
	cachePath := filepath.Join(t.TempDir(), "state", "catalog-cache.json")
	chaos := install(t, "chaos", dir, "chaos")
	install(t, "other", dir, "other")
	o := Options{Dir: dir, CacheFile: cachePath}

	first := scan(t, o)
	if n := count(); n != 1 {
		t.Fatalf("first scan launched chaos %d times, want 1", n)
	}
	for _, b := range first.Binaries() {
		if b.Cached {
			t.Errorf("%s cached on the first scan", b.Path)
		}
	}
	var f cacheFile
	if b, err := os.ReadFile(cachePath); err != nil || json.Unmarshal(b, &f) != nil || len(f.Entries) != 2 {
		t.Fatalf("cache file: %v, %d entries", err, len(f.Entries))
	}

	second := scan(t, o)
	if n := count(); n != 1 {
		t.Errorf("second scan launched chaos again (%d launches)", n)
	}
	for _, b := range second.Binaries() {
		if !b.Cached {
			t.Errorf("%s not cached on the second scan", b.Path)
		}
	}
	if !reflect.DeepEqual(classesOf(first), classesOf(second)) {
		t.Errorf("cached classes differ:\n%+v\n%+v", classesOf(first), classesOf(second))
	}

	// Appended bytes change size and checksum (the binary still runs).
	appendTo(t, chaos, "x")
	third := scan(t, o)
	if n := count(); n != 2 {
		t.Errorf("modified binary: %d launches, want 2", n)
	}
	cachedOf := func(c *Catalog) map[string]bool {
		m := map[string]bool{}
		for _, b := range c.Binaries() {
			m[filepath.Base(b.Path)] = b.Cached
		}
		return m
	}
	if got := cachedOf(third); got["chaos"] || !got["other"] {
		t.Errorf("cached after modifying chaos = %v", got)
	}

	// Same size and modification time, other content: the checksum is part
	// of the key.
	fi, err := os.Stat(chaos)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chaos)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'y'
	write(t, chaos, string(b), 0o755)
	if err := os.Chtimes(chaos, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	scan(t, o)
	if n := count(); n != 3 {
		t.Errorf("same size and mtime, new content: %d launches, want 3", n)
	}

	// Replaced by another plugin: described again, offering other classes.
	install(t, "other", dir, "chaos")
	fifth := scan(t, o)
	if _, err := fifth.Lookup("chaos"); !errors.Is(err, ErrUnknownClass) {
		t.Errorf("Lookup(chaos) after replacing its binary = %v", err)
	}
	if _, err := fifth.Lookup("other"); !errors.Is(err, ErrClassConflict) {
		t.Errorf("Lookup(other) with two copies = %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(cachePath), ".*tmp")); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestCorruptCache(t *testing.T) {
	count := launches(t)
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	cachePath := write(t, filepath.Join(t.TempDir(), "cache.json"), "{not json", 0o644)
	logger, buf := testLogger(t)
	c := scan(t, Options{Dir: dir, CacheFile: cachePath, Logger: logger})
	if _, err := c.Lookup("chaos"); err != nil || count() != 1 {
		t.Fatalf("Lookup = %v after %d launches", err, count())
	}
	if !strings.Contains(buf.String(), "corrupt") {
		t.Errorf("no warning about the corrupt cache:\n%s", buf.String())
	}
	var f cacheFile
	if b, err := os.ReadFile(cachePath); err != nil || json.Unmarshal(b, &f) != nil || len(f.Entries) != 1 {
		t.Errorf("cache not rewritten: %v", err)
	}
	scan(t, Options{Dir: dir, CacheFile: cachePath})
	if count() != 1 {
		t.Errorf("rewritten cache not used")
	}
}

type classSummary struct {
	Name, Path, Version string
	Aliases             []string
	Schema              sdk.Schema
	SHA256              []byte
}

func classesOf(c *Catalog) []classSummary {
	var out []classSummary
	for _, cls := range c.Classes() {
		out = append(out, classSummary{cls.Name, cls.Binary.Path, cls.Version, cls.Aliases, cls.Schema, cls.Binary.SHA256})
	}
	return out
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
