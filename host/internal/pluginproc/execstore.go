package pluginproc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// ExecStore is a store of verified executables: for a plugin binary and the
// sha256 the catalog recorded for it, it makes once an immutable copy of the
// binary in a directory of the host's own, hashing the bytes as it copies
// them, so that the copy is exactly what was verified. Every launch then
// executes the copy without hashing anything: it only compares the stat of
// the original and of the copy (device, inode, size, mtime, ctime) with
// what was recorded when they were verified.
//
//   - The original changed (a new file renamed over it, or edited in
//     place): it is hashed again. The same content records the new stat and
//     runs the copy (a touch, a copy of the same build); another content is
//     refused with ErrBinaryChanged, as a launch that hashed the original
//     would refuse it, until the catalog rescans it.
//   - The copy changed (someone with the host's uid made it writable and
//     edited it, or replaced it): it is discarded and made afresh from the
//     original, verified against the sha256 again.
//
// So a launch runs the bytes the catalog verified or nothing. Copies are
// named <dir>/<sha256 hex>/<basename of the original>, so that ps, pgrep
// and /proc/<pid>/comm show the plugin's name, with mode 0500 in
// directories of mode 0700. The methods of a nil *ExecStore do nothing;
// a launch without a store hashes the binary itself (go-plugin's
// SecureConfig), as before the store existed.
//
// The copy is written while syscall.ForkLock is held for reading, so that
// no process forked by the host meanwhile inherits the copy's write file
// descriptor: an exec of a file still open for writing by any process
// fails with ETXTBSY (golang/go#22315).
type ExecStore struct {
	dir    string
	logger hclog.Logger

	// reads counts the originals read (a copy made, or an original hashed
	// again after its stat changed): what a launch costs beyond two stat
	// calls. Tests and benchmarks read it.
	reads atomic.Int64

	mu     sync.Mutex
	closed bool
	copies map[string]*execCopy // by the copy's path
}

// execCopy is the store's state for one copy: one content under one name.
// Its mutex serialises the launches of its binary's checks, so that
// concurrent launches make one copy.
type execCopy struct {
	path string // <dir>/<sha256 hex>/<basename>
	sum  []byte

	mu   sync.Mutex
	made bool
	id   fileID // the copy's, once made
	// origs are the originals whose content was checked against sum, by
	// path, with their stat at the time (taken before their bytes were
	// read, so that a change during the read shows).
	origs map[string]origCheck
}

// origCheck is the outcome of hashing an original: its stat, and whether
// its content was sum.
type origCheck struct {
	id   fileID
	same bool
}

// fileID is what is compared of a file's stat: a file replaced (rename
// over) has another inode, one edited in place another size, mtime or
// ctime (ctime changes with any write or chmod, and cannot be set back).
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

// ExecDirName is the name of the store's directory in the host's state
// directory.
const ExecDirName = "exec"

// NewExecStore returns a store of verified executables in dir, which it
// creates (mode 0700) or empties: the copies of an earlier host are not
// trusted. dir must be owned by the host's user (or root), and it and every
// directory above it pass the trust checks of a plugin directory (see
// CheckDir); its filesystem must allow executing files (not mounted
// noexec). Close removes it. Log messages go to logger (nil discards).
func NewExecStore(dir string, logger hclog.Logger) (*ExecStore, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("exec directory %s: %w", dir, err)
	}
	about := "exec directory " + abs
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (mode %s)", about, fi.Mode())
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	if fi, err = os.Lstat(abs); err != nil {
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	if err := checkNode(abs, fi, about, false); err != nil {
		return nil, err
	}
	if err := checkParents(abs, about); err != nil {
		return nil, err
	}
	if err := checkExecAllowed(abs); err != nil {
		return nil, err
	}
	// Only what a store makes is removed: an exec_dir pointed by mistake
	// at a directory holding anything else is refused, not emptied.
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	for _, e := range entries {
		if !isDigestDir(e) {
			return nil, fmt.Errorf("%s holds %s, which the host did not make: it empties the directory at start and removes it at stop, so give it a directory of its own (host.exec_dir)", about, e.Name())
		}
	}
	s := &ExecStore{dir: abs, logger: logger, copies: map[string]*execCopy{}}
	if err := s.removeCopies(); err != nil {
		return nil, err
	}
	return s, nil
}

// isDigestDir reports whether e is a directory a store makes: one named
// after a sha256 in hex.
func isDigestDir(e fs.DirEntry) bool {
	b, err := hex.DecodeString(e.Name())
	return e.IsDir() && err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == e.Name()
}

// removeCopies removes the store's digest directories with the copies in
// them.
func (s *ExecStore) removeCopies() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("exec directory %s: %w", s.dir, err)
	}
	for _, e := range entries {
		if isDigestDir(e) {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("exec directory %s: removing the copies: %w", s.dir, err)
			}
		}
	}
	return nil
}

// Dir returns the store's directory ("" for a nil store).
func (s *ExecStore) Dir() string {
	if s == nil {
		return ""
	}
	return s.dir
}

// errStoreClosed is Exec's error after Close.
var errStoreClosed = errors.New("the store of verified executables is closed (the host is stopping)")

// Exec returns the path of the verified copy of the binary at path whose
// content the catalog recorded as sum, making the copy if there is none
// (or none that is intact). It reads the original only to make the copy
// and when its stat changed since it was last verified; otherwise it costs
// two stat calls. An original whose content is no longer sum is refused:
// the error wraps ErrBinaryChanged and names path. Trust checks of the
// original (CheckBinary) are the caller's.
func (s *ExecStore) Exec(path string, sum []byte) (string, error) {
	if len(sum) != sha256.Size {
		return "", fmt.Errorf("plugin %s: no sha256 given to verify it with", path)
	}
	c, err := s.entry(path, sum)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.made {
		cfi, err := os.Lstat(c.path)
		if err != nil || statID(cfi) != c.id {
			// Nobody but the host's user can write there: treat it as
			// damage, not as an attack to report, and verify afresh.
			s.logger.Warn("the verified copy of a plugin binary changed; copying and verifying the plugin again",
				"path", path, "copy", c.path)
			c.discard()
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("plugin %s: %w", path, err)
	}
	if o, ok := c.origs[path]; ok && o.id == statID(fi) && !o.same {
		// Refused before, and not changed since: refused without a read.
		return "", changedError(path)
	}
	if c.made {
		if o, ok := c.origs[path]; ok && o.id == statID(fi) {
			return c.path, nil
		}
		// A path new to this copy, or one whose stat changed since it was
		// verified: its content decides.
		s.reads.Add(1)
		id, got, err := hashOriginal(path)
		if err != nil {
			return "", fmt.Errorf("plugin %s: verifying its checksum: %w", path, err)
		}
		same := bytes.Equal(got, sum)
		c.origs[path] = origCheck{id: id, same: same}
		if !same {
			return "", changedError(path)
		}
		s.logger.Debug("plugin binary's stat changed but not its content; running its verified copy", "path", path)
		return c.path, nil
	}
	if err := s.makeCopy(c, path); err != nil {
		return "", err
	}
	return c.path, nil
}

// entry returns the store's state for the copy of (path, sum).
func (s *ExecStore) entry(path string, sum []byte) (*execCopy, error) {
	if s == nil {
		return nil, errors.New("no store of verified executables")
	}
	cp := filepath.Join(s.dir, hex.EncodeToString(sum), filepath.Base(path))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("plugin %s: %w", path, errStoreClosed)
	}
	c := s.copies[cp]
	if c == nil {
		c = &execCopy{path: cp, sum: bytes.Clone(sum), origs: map[string]origCheck{}}
		s.copies[cp] = c
	}
	return c, nil
}

// makeCopy copies the original at path into c's path, hashing the bytes as
// they are written, and keeps the copy only if their sha256 is c.sum.
// Called with c.mu held.
func (s *ExecStore) makeCopy(c *execCopy, path string) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", path, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("plugin %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("plugin %s is not a regular file (mode %s)", path, fi.Mode())
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("plugin %s: making its verified copy: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(c.path), "."+filepath.Base(c.path)+".part")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("plugin %s: making its verified copy: %w", path, err)
	}
	s.reads.Add(1)
	got, err := writeHashed(tmp, src)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("plugin %s: making its verified copy: %w", path, err)
	}
	if !bytes.Equal(got, c.sum) {
		_ = os.Remove(tmp)
		c.origs[path] = origCheck{id: statID(fi), same: false}
		return changedError(path)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("plugin %s: making its verified copy: %w", path, err)
	}
	// The stat after the rename, which may change the ctime.
	cfi, err := os.Lstat(c.path)
	if err != nil {
		return fmt.Errorf("plugin %s: making its verified copy: %w", path, err)
	}
	c.made, c.id = true, statID(cfi)
	c.origs = map[string]origCheck{path: {id: statID(fi), same: true}}
	s.logger.Debug("made the verified copy of a plugin binary", "path", path, "copy", c.path, "size", cfi.Size())
	return nil
}

// writeHashed creates the file tmp (mode 0500) with the content of src and
// returns the sha256 of what it wrote. syscall.ForkLock is held for
// reading while the file is open for writing: no fork can happen
// meanwhile, so no child inherits the write descriptor (close-on-exec
// closes it only at the child's exec) and an exec of the file cannot fail
// with ETXTBSY.
func writeHashed(tmp string, src io.Reader) ([]byte, error) {
	h := sha256.New()
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	_, err = io.CopyBuffer(io.MultiWriter(dst, h), readerOnly{src}, buf)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// readerOnly hides src's WriterTo, so that io.CopyBuffer uses the buffer
// given rather than the file's own (smaller) one.
type readerOnly struct{ io.Reader }

// hashOriginal returns the stat of the file at path (taken before its bytes
// are read) and its sha256.
func hashOriginal(path string) (fileID, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileID{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, nil, err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, readerOnly{f}, make([]byte, 1<<20)); err != nil {
		return fileID{}, nil, err
	}
	return statID(fi), h.Sum(nil), nil
}

// discard removes the copy; the processes running it keep it until they
// exit. Called with c.mu held.
func (c *execCopy) discard() {
	_ = os.Remove(c.path)
	c.made, c.id = false, fileID{}
	c.origs = map[string]origCheck{}
}

// changedError is the error of a binary whose content is no longer the
// one the catalog recorded.
func changedError(path string) error {
	return fmt.Errorf("plugin %s: %w (its sha256 no longer matches the one recorded by the catalog); rescan the plugin directory", path, ErrBinaryChanged)
}

// Retain removes the copies of binaries no longer in the catalog: a copy
// is kept while keep maps one of the originals it was verified for to its
// sha256. The processes running a removed copy keep running it; a later
// launch of its binary makes it again (verified afresh). The daemon calls
// it after each rescan.
func (s *ExecStore) Retain(keep map[string][]byte) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for cp, c := range s.copies {
		c.mu.Lock()
		kept := false
		for path := range c.origs {
			if sum, ok := keep[path]; ok && bytes.Equal(sum, c.sum) {
				kept = true
				break
			}
		}
		if !kept {
			c.discard()
			delete(s.copies, cp)
			// The digest's directory goes once its last copy has.
			_ = os.Remove(filepath.Dir(cp))
			s.logger.Debug("removed the verified copy of a binary no longer in the catalog", "copy", cp)
		}
		c.mu.Unlock()
	}
}

// Close removes every copy and then the store's directory (unless
// something else was put there meanwhile); later launches through the
// store fail. The processes still running a copy keep running it. Call it
// once no worker or spare is launched any more.
func (s *ExecStore) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.copies = nil
	if err := s.removeCopies(); err != nil {
		return err
	}
	if err := os.Remove(s.dir); err != nil {
		return fmt.Errorf("removing exec directory %s: %w", s.dir, err)
	}
	return nil
}

// UseExecStore makes the pool run its spares from the verified copies of
// store (see ExecStore), as the Starts that take them run theirs. Call it
// before the pool is used; a nil store keeps the default, a hash of the
// binary at each spare's launch.
func (s *Spares) UseExecStore(store *ExecStore) {
	if s != nil {
		s.exec = store
	}
}
