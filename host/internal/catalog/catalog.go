package catalog

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

// DefaultDescribeTimeout bounds launching one binary and its Describe call.
const DefaultDescribeTimeout = 10 * time.Second

// Options says what to scan. Zero values mean the documented defaults.
type Options struct {
	// Dir is the plugin directory.
	Dir string
	// CacheFile is where Describe results are cached (JSON), e.g.
	// <state_dir>/catalog-cache.json; "" means no cache.
	CacheFile string
	// DescribeTimeout bounds the launch and Describe of one binary; default
	// DefaultDescribeTimeout.
	DescribeTimeout time.Duration
	// Logger receives problems (error level) and a summary; nil discards.
	Logger hclog.Logger
	// Concurrency is how many binaries are described at once; default
	// GOMAXPROCS.
	Concurrency int
	// Lock, if set, is the lock file (host.plugin_lock): only binaries
	// whose sha256 it approves are described, and so can run (see ReadLock).
	// A lock file that is missing, invalid or not trusted fails the scan.
	Lock string
	// Env holds extra "KEY=value" entries for the environment of the
	// plugins described (host.plugin_env; see pluginproc.Options.Env).
	Env []string
	// Exec, if set, is the host's store of verified executables: a binary
	// described is run from its copy, made (and verified against the sha256
	// the scan recorded) by that launch, so that its workers' starts
	// neither copy nor hash it again. Nil hashes it at the launch.
	Exec *pluginproc.ExecStore
}

// Catalog is the result of a scan: the binaries found, the classes they
// offer and the problems met. It is immutable and safe for concurrent use.
type Catalog struct {
	dir       string
	binaries  []*Binary
	classes   []*Class
	byName    map[string]*Class   // names and aliases claimed once
	conflicts map[string][]*Class // names and aliases claimed more than once
	problems  []Problem
	// sums are the sha256 of every file hashed, described or not (a
	// binary the lock file refuses has one), by path, for Changes.
	sums map[string][]byte
}

// Binary is a plugin binary that described itself.
type Binary struct {
	// Path is the binary's absolute path in the plugin directory (a
	// symlink's own path, not its target's).
	Path string
	// SHA256 is the content's checksum, to be given to pluginproc.Start.
	SHA256  []byte
	Size    int64
	ModTime time.Time
	// Classes are the canonical names of the classes it offers.
	Classes []string
	// SDKVersion is the version of the sdk it was built with.
	SDKVersion string
	// Cached is true when the Describe result came from the cache, without
	// launching the binary.
	Cached bool
}

// Class is a worker class offered by a binary.
type Class struct {
	// Name is the canonical name; Aliases are other names that resolve to
	// the class.
	Name        string
	Aliases     []string
	Description string
	Version     string
	// Schema is the class's config schema.
	Schema sdk.Schema
	// Binary is the binary offering the class.
	Binary *Binary
}

// Problem is a file that could not be used, or a class name claimed by more
// than one binary (Path is then the later binary in path order, and Err
// names all of them).
type Problem struct {
	Path string
	Err  error
}

// Errors of Lookup, to be checked with errors.Is.
var (
	ErrUnknownClass  = errors.New("unknown class")
	ErrClassConflict = errors.New("class offered by more than one plugin binary")
)

// Scan scans o.Dir and describes every plugin binary in it. It returns an
// error only when the directory cannot be read or ctx ends during the scan;
// problems with single files are recorded in Problems and logged.
//
// What is scanned: the regular files of Dir (not its subdirectories), and
// symlinks to regular files, that are executable by someone. Dotfiles are
// skipped, and so are non-executable files, silently (at debug level):
// plugin directories often hold a README, checksums or signatures, and
// reporting those as broken plugins would bury the real problems. An
// executable file that is not a working plugin (a shell script, a text file
// with +x, a binary that crashes, writes to stdout before the go-plugin
// handshake or does not answer within DescribeTimeout) is a Problem.
func Scan(ctx context.Context, o Options) (*Catalog, error) {
	if o.DescribeTimeout <= 0 {
		o.DescribeTimeout = DefaultDescribeTimeout
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	log := o.Logger
	if o.Dir == "" {
		return nil, errors.New("no plugin directory given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory %q: %w", o.Dir, err)
	}
	// Nothing of a directory others can write to is run, not even to
	// describe it.
	if _, err := pluginproc.CheckDir(dir); err != nil {
		return nil, fmt.Errorf("refusing to scan the plugin directory: %w", err)
	}
	var lock *Lock
	if o.Lock != "" {
		if lock, err = ReadLock(o.Lock); err != nil {
			return nil, err
		}
	}
	files, problems, err := listCandidates(dir, log)
	if err != nil {
		return nil, err
	}
	cache := loadCache(o.CacheFile, log)

	results := make([]described, len(files))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = describe(ctx, f, cache, lock, o)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scanning plugin directory: %w", err)
	}

	c := &Catalog{dir: dir, byName: map[string]*Class{}, conflicts: map[string][]*Class{}, sums: map[string][]byte{}}
	fresh := newCache()
	for _, r := range results {
		if r.sum != nil {
			c.sums[r.path] = r.sum
		}
		if r.err != nil {
			problems = append(problems, Problem{Path: r.path, Err: r.err})
			continue
		}
		b := r.binary
		fresh.put(b, r.resp)
		for _, ci := range r.resp.GetClasses() {
			cls, err := convertClass(ci, b)
			if err != nil {
				problems = append(problems, Problem{Path: b.Path, Err: fmt.Errorf("plugin %s: %w", b.Path, err)})
				continue
			}
			b.Classes = append(b.Classes, cls.Name)
			c.classes = append(c.classes, cls)
		}
		c.binaries = append(c.binaries, b)
	}
	problems = append(problems, c.index()...)
	slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Path, b.Path) })
	c.problems = problems
	slices.SortFunc(c.binaries, func(a, b *Binary) int { return cmp.Compare(a.Path, b.Path) })
	slices.SortFunc(c.classes, func(a, b *Class) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Binary.Path, b.Binary.Path))
	})

	if o.CacheFile != "" {
		if err := fresh.save(o.CacheFile); err != nil {
			log.Warn("cannot write the plugin describe cache", "path", o.CacheFile, "error", err)
		}
	}
	for _, p := range c.problems {
		log.Error("plugin problem", "path", p.Path, "error", p.Err)
	}
	cached := 0
	for _, b := range c.binaries {
		if b.Cached {
			cached++
		}
	}
	log.Info("scanned plugin directory", "dir", dir, "binaries", len(c.binaries), "cached", cached,
		"classes", len(c.classes), "problems", len(c.problems))
	return c, nil
}

type candidate struct {
	path string
	info os.FileInfo
}

// listCandidates lists the files of dir that Scan describes: regular files
// (or symlinks to them) with an executable bit, not hidden. Files it cannot
// stat are problems; others are skipped (logged at debug level if log is
// not nil).
func listCandidates(dir string, log hclog.Logger) ([]candidate, []Problem, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading plugin directory: %w", err)
	}
	var files []candidate
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		fi, err := os.Stat(path) // follows symlinks
		switch {
		case err != nil:
			problems = append(problems, Problem{Path: path, Err: fmt.Errorf("plugin %s: %w", path, err)})
		case fi.IsDir():
		case !fi.Mode().IsRegular():
			log.Debug("skipping file that is not a regular file", "path", path, "mode", fi.Mode().String())
		case fi.Mode().Perm()&0o111 == 0:
			log.Debug("skipping non-executable file", "path", path)
		default:
			files = append(files, candidate{path: path, info: fi})
		}
	}
	return files, problems, nil
}

// described is the outcome for one file.
type described struct {
	path   string
	sum    []byte // set once hashed
	binary *Binary
	resp   *proto.DescribeResponse
	err    error
}

// describe checks that one file can be trusted (and, with a lock, is
// approved), hashes it and describes it, from the cache when its key
// matches. A file refused is never executed.
func describe(ctx context.Context, f candidate, cache *describeCache, lock *Lock, o Options) described {
	out := described{path: f.path}
	if err := pluginproc.CheckBinary(f.path); err != nil {
		out.err = err
		return out
	}
	sum, err := hashFile(f.path)
	if err != nil {
		out.err = fmt.Errorf("plugin %s: %w", f.path, err)
		return out
	}
	out.sum = sum
	if lock != nil {
		if err := lock.Check(f.path, sum); err != nil {
			out.err = err
			return out
		}
	}
	b := &Binary{Path: f.path, SHA256: sum, Size: f.info.Size(), ModTime: f.info.ModTime()}
	if resp, ok := cache.get(b); ok {
		b.Cached = true
		b.SDKVersion = resp.GetSdkVersion()
		out.binary, out.resp = b, resp
		return out
	}
	// The checksum is checked again as the binary is executed (the exec
	// store's copy is hashed as it is made; without a store, go-plugin's
	// SecureConfig hashes the file): a file replaced since it was hashed
	// is not run.
	resp, err := pluginproc.DescribeWith(ctx, f.path, pluginproc.DescribeOptions{
		Timeout:  o.DescribeTimeout,
		Logger:   o.Logger.Named("describe"),
		Checksum: sum,
		Env:      o.Env,
		Exec:     o.Exec,
	})
	if err != nil {
		out.err = err // names the binary
		return out
	}
	// The checksum must be the one of what was described: a file replaced
	// meanwhile is reported, and the next scan sees it settled.
	if fi, err := os.Stat(f.path); err != nil || fi.Size() != b.Size || !fi.ModTime().Equal(b.ModTime) {
		out.err = fmt.Errorf("plugin %s changed while it was being described; scan again", f.path)
		return out
	}
	b.SDKVersion = resp.GetSdkVersion()
	out.binary, out.resp = b, resp
	return out
}

func hashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// index maps names and aliases to classes and returns a problem for every
// name claimed by more than one class.
func (c *Catalog) index() []Problem {
	claims := map[string][]*Class{}
	for _, cls := range c.classes {
		seen := map[string]bool{}
		for _, n := range append([]string{cls.Name}, cls.Aliases...) {
			if !seen[n] {
				seen[n] = true
				claims[n] = append(claims[n], cls)
			}
		}
	}
	var problems []Problem
	for name, cs := range claims {
		if len(cs) == 1 {
			c.byName[name] = cs[0]
			continue
		}
		slices.SortFunc(cs, func(a, b *Class) int { return cmp.Compare(a.Binary.Path, b.Binary.Path) })
		c.conflicts[name] = cs
		problems = append(problems, Problem{Path: cs[len(cs)-1].Binary.Path, Err: conflictError(name, cs)})
	}
	return problems
}

// lookupError is an error of Lookup: its text says it all, and it wraps
// ErrUnknownClass or ErrClassConflict.
type lookupError struct {
	kind error
	msg  string
}

func (e *lookupError) Error() string { return e.msg }
func (e *lookupError) Unwrap() error { return e.kind }

func conflictError(name string, cs []*Class) error {
	var who []string
	for _, c := range cs {
		s := c.Binary.Path
		if c.Name != name {
			s += fmt.Sprintf(" (alias of class %q)", c.Name)
		}
		who = append(who, s)
	}
	return &lookupError{kind: ErrClassConflict, msg: fmt.Sprintf(
		"class name %q is claimed by more than one plugin binary: %s; remove all but one of them from the plugin directory",
		name, strings.Join(who, " and "))}
}

// Lookup returns the class with the given canonical name or alias. The
// error wraps ErrUnknownClass (with a suggestion when a known name is
// close) or ErrClassConflict (naming every binary that claims the name).
func (c *Catalog) Lookup(name string) (*Class, error) {
	if cls, ok := c.byName[name]; ok {
		return cls, nil
	}
	if cs, ok := c.conflicts[name]; ok {
		return nil, conflictError(name, cs)
	}
	msg := fmt.Sprintf("unknown class %q", name)
	if len(c.byName)+len(c.conflicts) == 0 {
		msg += fmt.Sprintf(" (the plugin directory %s offers no classes)", c.dir)
	} else if s := c.suggest(name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return nil, &lookupError{kind: ErrUnknownClass, msg: msg}
}

// ResolveClass returns the canonical name and the schema of the class with
// the given name or alias, as config.ClassResolver wants them.
func (c *Catalog) ResolveClass(name string) (string, sdk.Schema, error) {
	cls, err := c.Lookup(name)
	if err != nil {
		return "", nil, err
	}
	return cls.Name, cls.Schema, nil
}

// Classes returns every class of every binary, sorted by name (then binary
// path), including classes whose names are contested (Lookup refuses
// those).
func (c *Catalog) Classes() []*Class { return slices.Clone(c.classes) }

// Binaries returns the binaries that described themselves, sorted by path.
func (c *Catalog) Binaries() []*Binary { return slices.Clone(c.binaries) }

// Problems returns the problems of the scan, sorted by path.
func (c *Catalog) Problems() []Problem { return slices.Clone(c.problems) }
