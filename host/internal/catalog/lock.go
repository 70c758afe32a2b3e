package catalog

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// ErrNotLocked is wrapped by the problem of a binary that a host with a
// lock file (Options.Lock) refuses to describe or run: it is not in the
// lock file, or its sha256 is not the locked one.
var ErrNotLocked = errors.New("plugin binary not approved by the lock file")

// LockCommand is the command that writes the lock file, named in errors.
const LockCommand = "dynworkers plugins lock"

// lockHeader starts every lock file LockDir writes.
const lockHeader = `# This file is maintained by "dynworkers plugins lock". Do not edit it by hand.
#
# It lists the plugin binaries of plugin_dir this host may run (by file name)
# with the sha256 of their approved content. With host.plugin_lock set to this
# file, the host describes and runs only these binaries with these checksums.
# Review a new or replaced binary, then run "dynworkers plugins lock" again.
`

// Lock is a lock file: the approved sha256 of each plugin binary, by file
// name in the plugin directory.
type Lock struct {
	// Path is the lock file's path.
	Path string
	sums map[string][]byte
}

// LockEntry is one binary of a lock file.
type LockEntry struct {
	// Name is the binary's file name in the plugin directory.
	Name   string
	SHA256 []byte
}

var lockSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "plugin", LabelNames: []string{"name"}}},
}

var lockPluginSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "sha256", Required: true}},
}

// ReadLock reads a lock file. The file must be trusted as a plugin binary
// is (pluginproc.CheckFile: owned by root or the host's user, not writable
// by others, nor are its directories): whoever can write it chooses what
// the host runs.
func ReadLock(path string) (*Lock, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(abs)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("plugin_lock %s does not exist: review the binaries of plugin_dir, then run %q to write it", abs, LockCommand)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plugin_lock: %w", err)
	}
	if err := pluginproc.CheckFile(abs, "plugin_lock"); err != nil {
		return nil, err
	}
	return parseLock(abs, src)
}

func parseLock(path string, src []byte) (*Lock, error) {
	l := &Lock{Path: path, sums: map[string][]byte{}}
	var diags hcl.Diagnostics
	f, d := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	diags = append(diags, d...)
	if f != nil && !d.HasErrors() {
		content, d := f.Body.Content(lockSchema)
		diags = append(diags, d...)
		for _, b := range content.Blocks {
			name := b.Labels[0]
			c, d := b.Body.Content(lockPluginSchema)
			diags = append(diags, d...)
			attr := c.Attributes["sha256"]
			if attr == nil {
				continue
			}
			v, d := attr.Expr.Value(nil)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			var sum []byte
			if v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
				if s, err := hex.DecodeString(v.AsString()); err == nil && len(s) == sha256.Size {
					sum = s
				}
			}
			if sum == nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid sha256",
					Detail: "The sha256 must be a string of 64 hexadecimal digits.", Subject: attr.Expr.Range().Ptr()})
				continue
			}
			if _, dup := l.sums[name]; dup {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate plugin",
					Detail: fmt.Sprintf("The plugin %q is locked twice; keep one block (or run %q again).", name, LockCommand), Subject: b.DefRange.Ptr()})
			}
			l.sums[name] = sum
		}
	}
	if diags.HasErrors() {
		var msgs []string
		for _, d := range diags {
			if d.Severity != hcl.DiagError {
				continue
			}
			m := d.Summary
			if d.Detail != "" {
				m += ": " + d.Detail
			}
			if d.Subject != nil {
				m = d.Subject.String() + ": " + m
			}
			msgs = append(msgs, m)
		}
		return nil, fmt.Errorf("plugin_lock %s is invalid (%s); run %q to write it again", path, strings.Join(msgs, "; "), LockCommand)
	}
	return l, nil
}

// Entries returns the lock's binaries sorted by name.
func (l *Lock) Entries() []LockEntry {
	out := make([]LockEntry, 0, len(l.sums))
	for n, s := range l.sums {
		out = append(out, LockEntry{Name: n, SHA256: s})
	}
	slices.SortFunc(out, func(a, b LockEntry) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Check returns nil if the binary at path (whose file name is its name in
// the lock) has the locked sha256, and otherwise an error wrapping
// ErrNotLocked that names the binary, both checksums and the fix.
func (l *Lock) Check(path string, sum []byte) error {
	name := filepath.Base(path)
	want, ok := l.sums[name]
	switch {
	case !ok:
		return fmt.Errorf("plugin %s (sha256 %s) is not in the lock file %s: %w; review it, then run %q to approve it",
			path, short(sum), l.Path, ErrNotLocked, LockCommand)
	case !bytes.Equal(want, sum):
		return fmt.Errorf("plugin %s has sha256 %s but the lock file %s approves %s: it changed since it was locked (%w); review the new binary, then run %q again",
			path, short(sum), l.Path, short(want), ErrNotLocked, LockCommand)
	}
	return nil
}

// short is the first 12 hex digits of a checksum, for messages.
func short(sum []byte) string {
	h := hex.EncodeToString(sum)
	if len(h) > 12 {
		h = h[:12] + "…"
	}
	return h
}

// LockDir hashes every plugin binary of dir (the files Scan would
// describe) for a lock file. Files that are not trusted (CheckDir,
// CheckBinary) are problems and get no entry; nothing is executed. The
// error is for a directory that cannot be read or is not trusted.
func LockDir(dir string) ([]LockEntry, []Problem, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, err
	}
	if _, err := pluginproc.CheckDir(abs); err != nil {
		return nil, nil, err
	}
	files, problems, err := listCandidates(abs, nil)
	if err != nil {
		return nil, nil, err
	}
	var entries []LockEntry
	for _, f := range files {
		if err := pluginproc.CheckBinary(f.path); err != nil {
			problems = append(problems, Problem{Path: f.path, Err: err})
			continue
		}
		sum, err := hashFile(f.path)
		if err != nil {
			problems = append(problems, Problem{Path: f.path, Err: fmt.Errorf("plugin %s: %w", f.path, err)})
			continue
		}
		entries = append(entries, LockEntry{Name: filepath.Base(f.path), SHA256: sum})
	}
	slices.SortFunc(entries, func(a, b LockEntry) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Path, b.Path) })
	return entries, problems, nil
}

// FormatLock returns the lock file for entries: a header comment, then one
// plugin block per binary, sorted by name.
func FormatLock(entries []LockEntry) []byte {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b LockEntry) int { return cmp.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	b.WriteString(lockHeader)
	for _, e := range entries {
		fmt.Fprintf(&b, "\nplugin %s {\n  sha256 = \"%s\"\n}\n", hclQuote(e.Name), hex.EncodeToString(e.SHA256))
	}
	return b.Bytes()
}

// hclQuote quotes s as an HCL string literal (template sequences escaped).
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case r > 0xffff && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		case r < 0x20 || r == 0x7f || !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteLock writes the lock file for entries atomically (a temporary file
// in the same directory, renamed over the old one), mode 0644.
func WriteLock(path string, entries []LockEntry) error {
	return writeFileAtomic(path, FormatLock(entries))
}

// LockDrift compares a lock with the entries of the directory now: the
// names only the directory has (unlocked), those whose sha256 differs
// (changed) and those only the lock has (gone), each sorted.
func LockDrift(l *Lock, now []LockEntry) (unlocked, changed, gone []string) {
	seen := map[string]bool{}
	for _, e := range now {
		seen[e.Name] = true
		want, ok := l.sums[e.Name]
		switch {
		case !ok:
			unlocked = append(unlocked, e.Name)
		case !bytes.Equal(want, e.SHA256):
			changed = append(changed, e.Name)
		}
	}
	for n := range l.sums {
		if !seen[n] {
			gone = append(gone, n)
		}
	}
	slices.Sort(gone)
	return unlocked, changed, gone
}
