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

// Store reads and writes the state file of one state directory. It is safe
// for concurrent use: Loads and Saves are serialised.
type Store struct {
	dir    string
	path   string
	logger hclog.Logger

	mu sync.Mutex
	// write writes data to the temp file; tests replace it to fail midway.
	write func(w io.Writer, data []byte) error
	// now is the clock for the names of corrupt files.
	now func() time.Time
}

// Open returns the Store of dir, creating dir (mode 0700) if needed. It
// removes temp files a crash during Save may have left (they may hold
// secrets). logger may be nil.
func Open(dir string, logger hclog.Logger) (*Store, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	s := &Store{
		dir:    dir,
		path:   filepath.Join(dir, FileName),
		logger: logger,
		write:  func(w io.Writer, data []byte) error { _, err := w.Write(data); return err },
		now:    time.Now,
	}
	stale, _ := filepath.Glob(filepath.Join(dir, tempPattern()))
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("could not remove a stale temp file of the state", "path", f, "error", err)
		}
	}
	return s, nil
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
	st, cause := parse(data)
	if cause == nil {
		return st, nil
	}
	aside, err := s.moveAside()
	if err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (%v) and could not be moved aside: %w", s.path, cause, err)
	}
	s.logger.Error("state file is corrupt: moved it aside and starting without its dynamic workers",
		"path", s.path, "moved_to", aside, "error", cause)
	return empty(), &CorruptError{Path: s.path, Aside: aside, Err: cause}
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

// moveAside renames the state file to a name that is not taken yet.
func (s *Store) moveAside() (string, error) {
	base := s.path + ".corrupt-" + s.now().UTC().Format("20060102T150405Z")
	aside := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if i > 1000 {
			return "", fmt.Errorf("no free name like %s", base)
		}
		aside = base + "-" + strconv.Itoa(i)
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
	out := State{Version: Version, Workers: st.Workers, Supervisors: st.Supervisors}
	if out.Workers == nil {
		out.Workers = []Worker{}
	}
	if err := out.check(); err != nil {
		return fmt.Errorf("saving the state: %w", err)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("saving the state: %w", err)
	}
	data = append(data, '\n')

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.replace(data); err != nil {
		return fmt.Errorf("saving the state to %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) replace(data []byte) (err error) {
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
	if err := os.Rename(tmp.Name(), s.path); err != nil {
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
