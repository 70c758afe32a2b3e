package pluginproc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// newExecStore returns a store in a fresh directory, closed (and checked
// to be gone) at the end of the test.
func newExecStore(t *testing.T) *ExecStore {
	t.Helper()
	logger, _ := testLogger(t)
	s, err := NewExecStore(filepath.Join(t.TempDir(), "state", ExecDirName), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("exec directory %s left after Close: %v", s.Dir(), err)
		}
	})
	return s
}

// storeChaos copies the chaos plugin into a directory of its own and
// returns Options that start it through store, with its checksum.
func storeChaos(t *testing.T, store *ExecStore) Options {
	t.Helper()
	o := chaosOptions(t, map[string]any{})
	o.Path = testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "chaos"))
	o.Checksum = sha(t, o.Path)
	o.Exec = store
	return o
}

// exeOf returns the sha256 of what the process runs (/proc/<pid>/exe: the
// executed file's bytes, even once it is unlinked), the path it runs and
// its argv[0].
func exeOf(t *testing.T, pid int) (sum []byte, path, argv0 string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	path, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	arg, _, _ := bytes.Cut(cmdline, []byte{0})
	return s[:], path, string(arg)
}

// appendTo writes extra bytes at the end of the file at path, in place (the
// same inode): an ELF file with bytes appended still runs as before, so a
// build edited so is a different content that would run if the host let
// it.
func appendTo(t *testing.T, path, extra string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestExecStoreRunsVerifiedCopy(t *testing.T) {
	pids := launchLog(t)
	store := newExecStore(t)
	o := storeChaos(t, store)
	p := start(t, o)
	sum, exe, argv0 := exeOf(t, p.Pid())
	want := filepath.Join(store.Dir(), hex.EncodeToString(o.Checksum), "chaos")
	if exe != want || !bytes.Equal(sum, o.Checksum) || argv0 != o.Path {
		t.Errorf("process runs %s (sha256 %x) as %q, want the copy %s (sha256 %x) as %q", exe, sum, argv0, want, o.Checksum, o.Path)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid())); strings.TrimSpace(string(comm)) != "chaos" {
		t.Errorf("comm %q, want chaos", comm)
	}
	for path, mode := range map[string]os.FileMode{want: 0o500, filepath.Dir(want): 0o700 | os.ModeDir, store.Dir(): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, mode)
		}
	}
	if n := store.reads.Load(); n != 1 {
		t.Errorf("the original was read %d times for the first launch, want 1 (the copy)", n)
	}
	// Later launches run the same copy without reading the original.
	ino := inode(t, want)
	p2 := start(t, o)
	if sum, exe, _ := exeOf(t, p2.Pid()); exe != want || !bytes.Equal(sum, o.Checksum) {
		t.Errorf("second process runs %s (%x)", exe, sum)
	}
	if n := store.reads.Load(); n != 1 || inode(t, want) != ino {
		t.Errorf("second launch read the original (%d reads) or remade the copy", n)
	}
	stopProcess(t, p)
	stopProcess(t, p2)
	if n := len(pids()); n != 2 {
		t.Errorf("%d launches, want 2", n)
	}
}

// TestExecStoreSwappedBinary: a binary replaced (renamed over) after the
// catalog verified it is never run, by a start or by a warm spare, and is
// refused with ErrBinaryChanged, as a permanent error.
func TestExecStoreSwappedBinary(t *testing.T) {
	pids := launchLog(t)
	store := newExecStore(t)
	s, sink := newSpares(t, 1)
	s.UseExecStore(store)
	o := storeChaos(t, store)
	o.Spares = s
	p := start(t, o)
	verified := o.Checksum

	// The same chaos build with bytes appended: a different content that
	// would run (and log its launch) if it were executed.
	next := testplugins.Copy(t, chaosPath(), filepath.Join(filepath.Dir(o.Path), "next"))
	appendTo(t, next, "swapped")
	if err := os.Rename(next, o.Path); err != nil {
		t.Fatal(err)
	}
	// The worker crashes: the spare launched for its restart is refused.
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	waitPool(t, s, o, "a paused key", func(set *spareSet) bool { return set != nil && set.paused && set.launching == 0 && set.delayed == 0 })
	if !strings.Contains(sink.String(), ErrBinaryChanged.Error()) {
		t.Errorf("the spare's launch did not fail with ErrBinaryChanged; log:\n%s", sink.String())
	}
	_, err := Start(context.Background(), o)
	if !errors.Is(err, ErrBinaryChanged) || !IsPermanent(err) || !strings.Contains(err.Error(), o.Path) || !strings.Contains(err.Error(), "rescan the plugin directory") {
		t.Errorf("Start = %v, want a permanent ErrBinaryChanged naming %s", err, o.Path)
	}
	if n := len(pids()); n != 1 {
		t.Errorf("%d launches, want 1: the swapped binary must never run", n)
	}
	// Swapped back to the verified bytes (a new inode): run again, from
	// the same verified copy.
	testplugins.Copy(t, chaosPath(), next)
	if err := os.Rename(next, o.Path); err != nil {
		t.Fatal(err)
	}
	o.Spares = nil
	p = start(t, o)
	if sum, _, _ := exeOf(t, p.Pid()); !bytes.Equal(sum, verified) {
		t.Errorf("the process runs sha256 %x, want the verified %x", sum, verified)
	}
	stopProcess(t, p)
}

// TestExecStoreEditedInPlace: a binary edited in place (same inode) is
// refused; once its content is the verified one again (as after a touch)
// it runs, after one hash of the original.
func TestExecStoreEditedInPlace(t *testing.T) {
	pids := launchLog(t)
	store := newExecStore(t)
	o := storeChaos(t, store)
	stopProcess(t, start(t, o))
	ino := inode(t, o.Path)
	// The original is not busy (the copy runs), so it can be written.
	appendTo(t, o.Path, "edited")
	if inode(t, o.Path) != ino {
		t.Fatal("the edit changed the inode")
	}
	for range 2 { // the second refusal needs no hash: the stat is the refused one
		_, err := Start(context.Background(), o)
		if !errors.Is(err, ErrBinaryChanged) || !IsPermanent(err) {
			t.Errorf("Start = %v, want a permanent ErrBinaryChanged", err)
		}
	}
	if n := store.reads.Load(); n != 2 {
		t.Errorf("%d reads of the original, want 2 (the copy, one hash of the edited file)", n)
	}
	if n := len(pids()); n != 1 {
		t.Errorf("%d launches, want 1: the edited binary must never run", n)
	}
	// Edited back (still the same inode): the same content, new times.
	fi, _ := os.Stat(o.Path)
	if err := os.Truncate(o.Path, fi.Size()-int64(len("edited"))); err != nil {
		t.Fatal(err)
	}
	p := start(t, o)
	if sum, _, _ := exeOf(t, p.Pid()); !bytes.Equal(sum, o.Checksum) {
		t.Errorf("the process runs sha256 %x, want %x", sum, o.Checksum)
	}
	stopProcess(t, p)
	if n := store.reads.Load(); n != 3 {
		t.Errorf("%d reads of the original, want 3", n)
	}
}

// TestExecStoreTouch: a touched binary (same content, new mtime) runs,
// after one hash of the original; the next launch hashes nothing.
func TestExecStoreTouch(t *testing.T) {
	store := newExecStore(t)
	o := storeChaos(t, store)
	stopProcess(t, start(t, o))
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(o.Path, later, later); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		p := start(t, o)
		if sum, _, _ := exeOf(t, p.Pid()); !bytes.Equal(sum, o.Checksum) {
			t.Errorf("the process runs sha256 %x, want %x", sum, o.Checksum)
		}
		stopProcess(t, p)
	}
	if n := store.reads.Load(); n != 2 {
		t.Errorf("%d reads of the original, want 2 (the copy, one hash after the touch)", n)
	}
}

// TestExecStoreCopyEdited: a copy edited behind the store's back (by
// someone with the host's uid) is discarded and made afresh from the
// original; the edited bytes never run.
func TestExecStoreCopyEdited(t *testing.T) {
	pids := launchLog(t)
	store := newExecStore(t)
	o := storeChaos(t, store)
	stopProcess(t, start(t, o))
	cp := filepath.Join(store.Dir(), hex.EncodeToString(o.Checksum), "chaos")
	if err := os.Chmod(cp, 0o700); err != nil {
		t.Fatal(err)
	}
	appendTo(t, cp, "edited copy")
	p := start(t, o)
	if sum, exe, _ := exeOf(t, p.Pid()); !bytes.Equal(sum, o.Checksum) || exe != cp {
		t.Errorf("the process runs %s, sha256 %x, want %s with %x", exe, sum, cp, o.Checksum)
	}
	stopProcess(t, p)
	// (The new copy may get the old one's inode number: the old one was
	// freed.)
	if n := store.reads.Load(); n != 2 {
		t.Errorf("%d reads of the original, want 2: the copy was not made again", n)
	}
	// A copy replaced (a new inode with the right bytes) is made again
	// too: only what the store wrote and verified is run.
	testplugins.Copy(t, chaosPath(), cp+".new")
	if err := os.Rename(cp+".new", cp); err != nil {
		t.Fatal(err)
	}
	stopProcess(t, start(t, o))
	if n := store.reads.Load(); n != 3 {
		t.Errorf("%d reads of the original, want 3", n)
	}
	if n := len(pids()); n != 3 {
		t.Errorf("%d launches, want 3", n)
	}
}

// TestExecStoreConcurrentLaunches launches several binaries at once, each
// several times, while the store makes their copies: each gets one copy,
// and no exec fails with ETXTBSY (a copy's write descriptor inherited by
// a process forked meanwhile, golang/go#22315). Plain forks of another
// program run throughout, as the host's other launches would.
func TestExecStoreConcurrentLaunches(t *testing.T) {
	store := newExecStore(t)
	const binaries, launches = 4, 3
	var opts []Options
	for i := range binaries {
		o := storeChaos(t, store)
		// Each binary a content of its own, so that the copies are
		// written concurrently.
		appendTo(t, o.Path, fmt.Sprintf("variant %d", i))
		o.Checksum = sha(t, o.Path)
		opts = append(opts, o)
	}
	stop := make(chan struct{})
	var forks sync.WaitGroup
	forks.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := exec.Command("true").Run(); err != nil {
				t.Errorf("fork of true: %v", err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	procs := make(chan *Process, binaries*launches)
	for _, o := range opts {
		for range launches {
			wg.Go(func() {
				p, err := Start(context.Background(), o)
				if err != nil {
					t.Errorf("Start: %v", err)
					return
				}
				procs <- p
			})
		}
	}
	wg.Wait()
	close(stop)
	forks.Wait()
	close(procs)
	for p := range procs {
		stopProcess(t, p)
	}
	if n := store.reads.Load(); n != binaries {
		t.Errorf("%d reads of the originals, want %d (one copy each)", n, binaries)
	}
	dirs, _ := os.ReadDir(store.Dir())
	if len(dirs) != binaries {
		t.Errorf("%d copies in the store, want %d", len(dirs), binaries)
	}
}

// TestExecStoreNoexec: a store on a filesystem mounted noexec is refused
// at once, naming the directory and the fix.
func TestExecStoreNoexec(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a noexec tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "exec")
	_, err := NewExecStore(dir, nil)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "noexec") || !strings.Contains(err.Error(), "host.exec_dir") {
		t.Errorf("NewExecStore on noexec = %v, want an error naming %s, noexec and host.exec_dir", err, dir)
	}
}

// TestExecStoreDirectory: the store empties its directory at start (a
// copy left by an earlier host is not trusted), makes it private, refuses
// one under a directory others may write to, and Retain removes the copies
// of binaries the catalog no longer has.
func TestExecStoreDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exec")
	stale := filepath.Join(dir, hex.EncodeToString(make([]byte, sha256.Size)))
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "chaos"), []byte("left by an earlier host"), 0o500); err != nil {
		t.Fatal(err)
	}
	// A directory holding anything else is refused, not emptied.
	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExecStore(dir, nil); err == nil || !strings.Contains(err.Error(), "notes.txt") || !strings.Contains(err.Error(), "host.exec_dir") {
		t.Errorf("NewExecStore on a directory with other files = %v, want an error naming notes.txt", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("the other file was removed: %v", err)
	}
	os.Remove(other)
	s, err := NewExecStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("stale entries kept: %v", left)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode())
	}
	a := testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "a"))
	b := testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "b"))
	appendTo(t, b, "b")
	for _, p := range []string{a, b} {
		if _, err := s.Exec(p, sha(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Exec(a, nil); err == nil {
		t.Error("Exec without a checksum succeeded")
	}
	// A binary whose content is not the sha256 given gets no copy; asked
	// again unchanged, it is refused without being read again.
	c := testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "c"))
	reads := s.reads.Load()
	for range 2 {
		if _, err := s.Exec(c, sha(t, b)); !errors.Is(err, ErrBinaryChanged) {
			t.Errorf("Exec of a binary with another content = %v, want ErrBinaryChanged", err)
		}
	}
	if n := s.reads.Load() - reads; n != 1 {
		t.Errorf("%d reads for two refusals of an unchanged binary, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(sha(t, b)), "c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy of a refused binary: %v, want none", err)
	}
	s.Retain(map[string][]byte{a: sha(t, a), b: sha(t, a)}) // b's sha256 is no longer the catalog's
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(sha(t, a)), "a")); err != nil {
		t.Errorf("kept copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(sha(t, b)))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy of a binary no longer in the catalog: %v, want it removed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec(a, sha(t, a)); err == nil {
		t.Error("Exec after Close succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec directory after Close: %v", err)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExecStore(filepath.Join(open, "exec"), nil); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), open) {
		t.Errorf("NewExecStore under a world-writable directory = %v, want ErrUntrusted naming %s", err, open)
	}
}

// benchBinary is the binary the verification benchmarks hash: $DYNWORKERS_BENCH_BINARY
// (e.g. a stripped hello-worker, as make build makes it), or the chaos test
// plugin (not stripped).
func benchBinary(b *testing.B) string {
	if p := os.Getenv("DYNWORKERS_BENCH_BINARY"); p != "" {
		return p
	}
	return chaosPath()
}

// cpuTime is the CPU time (user and system) the test process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start (cpu-ns/op):
// on a loaded machine it is steadier than the wall time.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkLaunchVerify measures what a launch spends on verifying the
// binary before its exec: go-plugin's SecureConfig (a sha256 of the whole
// file, the cost without a store), the store's check of an unchanged binary
// (two stats), and the store's one-time copy.
func BenchmarkLaunchVerify(b *testing.B) {
	path := testplugins.Copy(b, benchBinary(b), filepath.Join(b.TempDir(), "plugin"))
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	s := sha256.Sum256(raw)
	sum := s[:]
	b.Run("SecureConfig", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		defer reportCPU(b, cpuTime(b))
		for b.Loop() {
			secure := &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
			if ok, err := secure.Check(path); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ExecStore/unchanged", func(b *testing.B) {
		store, err := NewExecStore(filepath.Join(b.TempDir(), "exec"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		if _, err := store.Exec(path, sum); err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b, cpuTime(b))
		for b.Loop() {
			if _, err := store.Exec(path, sum); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ExecStore/copy", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		dir := b.TempDir()
		defer reportCPU(b, cpuTime(b))
		for i := 0; b.Loop(); i++ {
			store, err := NewExecStore(filepath.Join(dir, strconv.Itoa(i)), nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := store.Exec(path, sum); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			store.Close()
			b.StartTimer()
		}
	})
}

// BenchmarkLaunchDescribe measures a whole launch of a plugin (exec,
// handshake, a Describe call, its shutdown) with the binary hashed at the
// launch (no store) and run from the store's verified copy; cpu-ns/op is
// the host's side only (the plugin's own CPU is its process's).
func BenchmarkLaunchDescribe(b *testing.B) {
	path := testplugins.Copy(b, benchBinary(b), filepath.Join(b.TempDir(), "plugin"))
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	s := sha256.Sum256(raw)
	run := func(b *testing.B, store *ExecStore) {
		o := DescribeOptions{Checksum: s[:], Exec: store}
		if _, err := DescribeWith(context.Background(), path, o); err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b, cpuTime(b))
		for b.Loop() {
			if _, err := DescribeWith(context.Background(), path, o); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("hashed", func(b *testing.B) { run(b, nil) })
	b.Run("ExecStore", func(b *testing.B) {
		store, err := NewExecStore(filepath.Join(b.TempDir(), "exec"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		run(b, store)
	})
}
