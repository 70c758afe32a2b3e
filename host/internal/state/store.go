package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrCorrupt is wrapped by the error Load returns for a state file it could
// not use and moved aside (see CorruptError). The host should start anyway,
// with what HCL says, and report the error.
var ErrCorrupt = errors.New("corrupt state file")

// CorruptError describes a state file that Load could not use. It matches
// ErrCorrupt with errors.Is.
type CorruptError struct {
	// Path is the state file; it no longer exists.
	Path string
	// Aside is where its content is now, for an operator to inspect.
	Aside string
	// Err is why it could not be used.
	Err error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is corrupt (%v): moved it to %s and started without its dynamic workers",
		e.Path, e.Err, e.Aside)
}

// Unwrap returns ErrCorrupt and the cause.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// Store reads and writes the state file of one state directory, which it
// holds locked while it is open (see LockFileName). It is safe for
// concurrent use: Loads and Saves are serialised.
type Store struct {
	dir    string
	path   string
	logger hclog.Logger
	key    []byte                  // nil: the file is plain JSON
	valid  func(name string) error // checks the names of loaded entries; may be nil
	lock   *os.File

	mu sync.Mutex
	// write writes data to the temp file; tests replace it to fail midway.
	write func(w io.Writer, data []byte) error
	// now is the clock for the names of corrupt files.
	now func() time.Time
}

// Options configure OpenWith.
type Options struct {
	// Logger may be nil.
	Logger hclog.Logger
	// Holder names the host in the lock file (its host.name), for the
	// error another host gets.
	Holder string
	// Key, if set, is the 32-byte AES-256-GCM key the state file is
	// encrypted with (LoadKey reads it from host.state_key_file).
	Key []byte
	// ValidName, if set, checks every name in a loaded file (workers,
	// supervisors, and each segment of their supervisor paths) with the
	// rules control messages follow; entries it refuses are kept aside and
	// not restored (see Load).
	ValidName func(name string) error
}

// Open is OpenWith with only a logger.
func Open(dir string, logger hclog.Logger) (*Store, error) {
	return OpenWith(dir, Options{Logger: logger})
}

// OpenWith returns the Store of dir, creating dir (mode 0700) if needed,
// and takes dir's lock: it fails, wrapping ErrLocked and naming the holder,
// while another Store has it. A dir group or others may access is made
// private (0700), and said so in the log: it holds secrets. It removes temp
// files a crash during Save may have left (they may hold secrets). Close
// releases the lock.
func OpenWith(dir string, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if o.Key != nil {
		if _, err := newAEAD(o.Key); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := makePrivate(dir, 0o700, logger); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir, o.Holder)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:    dir,
		path:   filepath.Join(dir, FileName),
		logger: logger,
		key:    o.Key,
		valid:  o.ValidName,
		lock:   lock,
		write:  func(w io.Writer, data []byte) error { _, err := w.Write(data); return err },
		now:    time.Now,
	}
	if err := makePrivate(s.path, 0o600, logger); err != nil && !errors.Is(err, fs.ErrNotExist) {
		lock.Close()
		return nil, err
	}
	stale, _ := filepath.Glob(filepath.Join(dir, tempPattern()))
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("could not remove a stale temp file of the state", "path", f, "error", err)
		}
	}
	return s, nil
}

// makePrivate takes group and other permissions away from path, if it has
// any, and logs it.
func makePrivate(path string, mode fs.FileMode, logger hclog.Logger) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("%s has mode %04o, which lets group or others read the host's secrets, and it could not be made %04o: %w", path, fi.Mode().Perm(), mode, err)
	}
	logger.Warn("made a state path private: it holds secrets", "path", path, "was", fmt.Sprintf("%04o", fi.Mode().Perm()), "now", fmt.Sprintf("%04o", mode))
	return nil
}

// Close releases the state directory's lock. The Store must not be used
// after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Path returns the state file's path, <dir>/workers.json.
func (s *Store) Path() string { return s.path }

// tempPattern is the os.CreateTemp pattern of Save's temp files: hidden,
// in the same directory (so that rename is atomic), never matching the
// state file's name.
func tempPattern() string { return "." + FileName + ".*.tmp" }

// Load reads the state file. A missing file is an empty state.
//
// A file that is not JSON, has an unknown version or an unusable entry is
// moved aside to "<file>.corrupt-<UTC timestamp>" with its content intact
// and logged at error level; Load then returns an empty state and a
// *CorruptError (matching ErrCorrupt) naming both files. If it cannot be
// moved aside, Load returns a nil state and an error that does not match
// ErrCorrupt: starting would overwrite the file at the next Save. Any other
// read error is returned as is, with a nil state.
//
// An encrypted file that cannot be decrypted (no key, another key, or
// altered) is an error wrapping ErrWrongKey, with a nil state; the file is
// left as it is. A plain file read by a Store with a key is encrypted at
// once.
//
// Entries whose names ValidName refuses are left out of the state returned,
// written to "<file>.rejected-<UTC timestamp>" (as private, and as
// encrypted, as the state file) and logged at error level, each with its
// reason: they are not restored, and the next Save drops them from the
// state file.
func (s *Store) Load() (*State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the state file: %w", err)
	}
	encrypted := isEnvelope(data)
	if encrypted {
		if data, err = open(s.key, data, s.path); err != nil {
			return nil, err
		}
	}
	st, cause := parse(data)
	if cause != nil {
		aside, err := s.moveAside()
		if err != nil {
			return nil, fmt.Errorf("state file %s is corrupt (%v) and could not be moved aside: %w", s.path, cause, err)
		}
		s.logger.Error("state file is corrupt: moved it aside and starting without its dynamic workers",
			"path", s.path, "moved_to", aside, "error", cause)
		return empty(), &CorruptError{Path: s.path, Aside: aside, Err: cause}
	}
	if rejected := s.reject(st); rejected != nil {
		aside, err := s.keepAside(rejected)
		if err != nil {
			return nil, fmt.Errorf("state file %s has entries with invalid names, and they could not be kept aside: %w", s.path, err)
		}
		for _, w := range rejected.Workers {
			s.logger.Error("state file entry refused: not restored", "worker", w.Name, "error", s.nameError(w.Name, w.Supervisor), "kept_in", aside)
		}
		for _, sv := range rejected.Supervisors {
			s.logger.Error("state file entry refused: not restored", "supervisor", sv.Name, "error", s.nameError(sv.Name, sv.Parent), "kept_in", aside)
		}
		if err := s.saveLocked(st); err != nil {
			return nil, err
		}
	} else if !encrypted && s.key != nil {
		// The secrets must not stay in clear until the next change.
		if err := s.saveLocked(st); err != nil {
			return nil, err
		}
		s.logger.Info("encrypted the state file with host.state_key_file", "path", s.path, "key_id", keyID(s.key))
	}
	return st, nil
}

// reject removes from st the entries whose names the Store's ValidName
// refuses, and returns them (nil when there are none).
func (s *Store) reject(st *State) *State {
	if s.valid == nil {
		return nil
	}
	out := &State{Version: Version, Workers: []Worker{}}
	keptW := st.Workers[:0:0]
	for _, w := range st.Workers {
		if s.nameError(w.Name, w.Supervisor) != nil {
			out.Workers = append(out.Workers, w)
		} else {
			keptW = append(keptW, w)
		}
	}
	var keptS []Supervisor
	for _, sv := range st.Supervisors {
		if s.nameError(sv.Name, sv.Parent) != nil {
			out.Supervisors = append(out.Supervisors, sv)
		} else {
			keptS = append(keptS, sv)
		}
	}
	if len(out.Workers) == 0 && len(out.Supervisors) == 0 {
		return nil
	}
	st.Workers, st.Supervisors = keptW, keptS
	return out
}

// nameError checks an entry's name and each segment of its supervisor's
// path ("" is the root).
func (s *Store) nameError(name, parent string) error {
	if err := s.valid(name); err != nil {
		return fmt.Errorf("name %q: %w", name, err)
	}
	if parent == "" {
		return nil
	}
	for _, seg := range strings.Split(parent, "/") {
		if err := s.valid(seg); err != nil {
			return fmt.Errorf("supervisor path %q: %w", parent, err)
		}
	}
	return nil
}

// keepAside writes refused entries to a file of their own, next to the
// state file, and returns its path.
func (s *Store) keepAside(st *State) (string, error) {
	data, err := s.encode(st)
	if err != nil {
		return "", err
	}
	aside, err := s.freeName("rejected")
	if err != nil {
		return "", err
	}
	if err := s.replaceAt(aside, data); err != nil {
		return "", err
	}
	return aside, nil
}

func empty() *State { return &State{Version: Version, Workers: []Worker{}} }

// parse decodes and checks a state file's content.
func parse(data []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not valid JSON: %v at byte %d", se, se.Offset)
		}
		// Other decoding errors may quote values, which may be secrets.
		return nil, errors.New("not a state file: a field has the wrong JSON type")
	}
	if err := st.check(); err != nil {
		return nil, err
	}
	if st.Workers == nil {
		st.Workers = []Worker{}
	}
	return &st, nil
}

// freeName returns a name beside the state file that is not taken yet:
// <path>.<kind>-<UTC time>, with -N added if that exists.
func (s *Store) freeName(kind string) (string, error) {
	base := s.path + "." + kind + "-" + s.now().UTC().Format("20060102T150405Z")
	aside := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			return aside, nil
		}
		if i > 1000 {
			return "", fmt.Errorf("no free name like %s", base)
		}
		aside = base + "-" + strconv.Itoa(i)
	}
}

// moveAside renames the state file to a name that is not taken yet.
func (s *Store) moveAside() (string, error) {
	aside, err := s.freeName("corrupt")
	if err != nil {
		return "", err
	}
	if err := os.Rename(s.path, aside); err != nil {
		return "", err
	}
	return aside, syncDir(s.dir)
}

// Save replaces the state file with st (its Version is set to Version
// in the file, not in st). It is atomic and durable: it writes a temp file
// (mode 0600) in the same directory, fsyncs it, renames it over the state
// file and fsyncs the directory. On an error before the rename the old file
// is intact and the temp file removed; an error from the directory's fsync
// means the new content is in place but may not survive a crash.
func (s *Store) Save(st *State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked(st)
}

func (s *Store) saveLocked(st *State) error {
	out := State{Version: Version, Workers: st.Workers, Supervisors: st.Supervisors}
	if out.Workers == nil {
		out.Workers = []Worker{}
	}
	if err := out.check(); err != nil {
		return fmt.Errorf("saving the state: %w", err)
	}
	data, err := s.encode(&out)
	if err != nil {
		return fmt.Errorf("saving the state: %w", err)
	}
	if err := s.replace(data); err != nil {
		return fmt.Errorf("saving the state to %s: %w", s.path, err)
	}
	return nil
}

// encode is the content of a state file of st: indented JSON, encrypted
// with a fresh nonce when the Store has a key.
func (s *Store) encode(st *State) ([]byte, error) {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if s.key == nil {
		return data, nil
	}
	return seal(s.key, data)
}

func (s *Store) replace(data []byte) error { return s.replaceAt(s.path, data) }

func (s *Store) replaceAt(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(s.dir, tempPattern()) // mode 0600
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600; say it here, where it matters: the file
	// holds secrets.
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := s.write(tmp, data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	return syncDir(s.dir)
}

// syncDir fsyncs a directory, so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
