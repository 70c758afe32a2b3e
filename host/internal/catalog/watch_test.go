package catalog

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// The listing signature changes with every change to a regular file of
// the directory that a rescan must see, and with nothing else.
func TestListingSignature(t *testing.T) {
	dir := t.TempDir()
	if sig := ListingSignature(filepath.Join(dir, "missing")); sig != "" {
		t.Errorf("signature of a missing directory = %q, want empty", sig)
	}
	bin := write(t, filepath.Join(dir, "bin"), "v1", 0o755)
	seen := map[string]string{}
	step := func(what string, change func(), changes bool) {
		t.Helper()
		before := ListingSignature(dir)
		change()
		after := ListingSignature(dir)
		if changes && after == before {
			t.Errorf("%s: the signature did not change", what)
		}
		if !changes && after != before {
			t.Errorf("%s: the signature changed", what)
		}
		if prev, ok := seen[after]; ok && changes {
			t.Errorf("%s: the signature is the one after %s", what, prev)
		}
		seen[after] = what
	}
	step("nothing", func() {}, false)
	step("a file added", func() { write(t, filepath.Join(dir, "other"), "x", 0o755) }, true)
	step("a file grown", func() { appendTo(t, bin, "v2") }, true)
	step("a file's mode changed", func() {
		if err := os.Chmod(bin, 0o700); err != nil {
			t.Fatal(err)
		}
	}, true)
	step("a file's mtime changed", func() {
		if err := os.Chtimes(bin, time.Time{}, time.Unix(1700000000, 0)); err != nil {
			t.Fatal(err)
		}
	}, true)
	step("a file renamed", func() {
		if err := os.Rename(filepath.Join(dir, "other"), filepath.Join(dir, "renamed")); err != nil {
			t.Fatal(err)
		}
	}, true)
	step("a symlink to a file added", func() {
		if err := os.Symlink(bin, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
	}, true)
	step("a directory and a dangling symlink added", func() {
		if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
			t.Fatal(err)
		}
	}, false)
}

// watch rescans once per change of the listing, on the tick that sees it,
// and not on the ticks that see the listing it already rescanned for.
func TestWatchRescansOncePerChange(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan time.Time)
	var rescans atomic.Int32
	done := make(chan struct{})
	last := ListingSignature(dir)
	go func() {
		defer close(done)
		watch(ctx, dir, ticks, last, func(context.Context) { rescans.Add(1) })
	}()
	// tick returns once watch has handled the tick before it: watch takes
	// ticks one at a time, in its own goroutine, rescans included.
	tick := func() {
		t.Helper()
		select {
		case ticks <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not take a tick")
		}
	}
	expect := func(what string, n int32) {
		t.Helper()
		tick() // the previous tick was handled
		if got := rescans.Load(); got != n {
			t.Errorf("%s: %d rescans, want %d", what, got, n)
		}
	}
	tick()
	expect("no change", 0)
	// The last tick may be handled while the directory changes: the
	// change is atomic (a rename), so that no look sees half of it.
	tmp := write(t, filepath.Join(t.TempDir(), "bin"), "v1", 0o755)
	if err := os.Rename(tmp, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	tick()
	expect("a file added, seen twice", 1)
	if err := os.Remove(filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	tick()
	expect("the file removed", 2)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not return when its context ended")
	}
}

// Watch looks at the directory on its own ticker and returns when its
// context ends.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rescanned := make(chan struct{}, 1)
	done := make(chan struct{})
	last := ListingSignature(dir)
	go func() {
		defer close(done)
		Watch(ctx, dir, 10*time.Millisecond, last, func(context.Context) {
			select {
			case rescanned <- struct{}{}:
			default:
			}
		})
	}()
	write(t, filepath.Join(dir, "bin"), "v1", 0o755)
	select {
	case <-rescanned:
	case <-time.After(10 * time.Second):
		t.Fatal("no rescan after a file was added")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	before := scan(t, Options{Dir: dir})
	install(t, "other", dir, "other")
	if err := os.Remove(filepath.Join(dir, "chaos")); err != nil {
		t.Fatal(err)
	}
	after := scan(t, Options{Dir: dir})
	added, removed := Diff(before, after)
	if !reflect.DeepEqual(added, []string{"other"}) || !reflect.DeepEqual(removed, []string{"chaos"}) {
		t.Errorf("Diff = added %v, removed %v; want added [other], removed [chaos]", added, removed)
	}
	if added, removed := Diff(after, after); added != nil || removed != nil {
		t.Errorf("Diff of a catalog with itself = added %v, removed %v", added, removed)
	}
}
