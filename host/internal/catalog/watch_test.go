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

// A content change that keeps the size and the mtime is still a change of
// the listing (its ctime changed), and so is a change of a watched file
// such as the lock file.
func TestListingNoticesInPlaceChange(t *testing.T) {
	dir := t.TempDir()
	bin := write(t, filepath.Join(dir, "bin"), "#!/bin/sh\necho one\n", 0o755)
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	lock := write(t, filepath.Join(t.TempDir(), "lock.hcl"), "# empty\n", 0o644)
	before := ListingSignature(dir, lock)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho two\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(bin); fi2.Size() != fi.Size() || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("size or mtime differ: the test does not test what it says")
	}
	after := ListingSignature(dir, lock)
	if after == before {
		t.Error("an in-place change with the same size and mtime left the listing unchanged")
	}
	write(t, lock, "# changed\n", 0o644)
	relocked := ListingSignature(dir, lock)
	if relocked == after {
		t.Error("a change of the lock file left the listing unchanged")
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if ListingSignature(dir, lock) == relocked {
		t.Error("a chmod of the directory left the listing unchanged")
	}
}
