package pluginproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUntrusted is wrapped by the error of a plugin directory, plugin binary
// or lock file that the host refuses to use because someone other than root
// or the host's own user could have written it (see CheckDir and
// CheckBinary). It is a *TrustError.
var ErrUntrusted = errors.New("untrusted plugin file")

// TrustError says why a path is not trusted and what fixes it.
type TrustError struct {
	// Path is the file or directory at fault (not necessarily the one
	// asked about: it may be a parent directory, or a symlink's target).
	Path string
	// Problem says what is wrong, e.g. "is writable by other users (mode
	// drwxrwxrwx)".
	Problem string
	// Fix is the command or step that fixes it, e.g. "chmod go-w /srv/plugins".
	Fix string
	// About names what was being checked, e.g. "plugin_dir /srv/plugins"
	// or "plugin /srv/plugins/echo".
	About string
}

func (e *TrustError) Error() string {
	subject := e.About
	if !strings.HasSuffix(e.About, " "+e.Path) {
		subject = fmt.Sprintf("%s (on the way to %s)", e.Path, e.About)
	}
	return fmt.Sprintf("%s %s; the host refuses it, since whoever can write it could run code as the host's user (uid %d); fix: %s",
		subject, e.Problem, os.Geteuid(), e.Fix)
}

func (e *TrustError) Unwrap() error { return ErrUntrusted }

// trustedOwner reports whether uid may own a plugin file or directory:
// root, or the user the host runs as.
func trustedOwner(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid()
}

// ownerFix is the chown command that gives path to a trusted owner.
func ownerFix(path string) string {
	if os.Geteuid() == 0 {
		return "chown root " + shellQuote(path) + " (after checking its content)"
	}
	return fmt.Sprintf("chown %d %s (after checking its content)", os.Geteuid(), shellQuote(path))
}

// userName names uid for an error: "uid 65534 (nobody)", or "uid 1234".
func userName(uid uint32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil && u.Username != "" {
		s += " (" + u.Username + ")"
	}
	return s
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkNode checks one file or directory: it must be owned by root or the
// host's user, and not writable by group or others, unless sticky is true
// and the directory has its sticky bit (like /tmp: others may create
// entries there, but not rename or remove ours).
func checkNode(path string, fi fs.FileInfo, about string, sticky bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a system we can check
	}
	if !trustedOwner(st.Uid) {
		return &TrustError{Path: path, About: about,
			Problem: fmt.Sprintf("is owned by %s, not by root or the host's user", userName(st.Uid)),
			Fix:     ownerFix(path)}
	}
	mode := fi.Mode()
	if mode.Perm()&0o022 == 0 || (sticky && fi.IsDir() && mode&fs.ModeSticky != 0) {
		return nil
	}
	who := "other users"
	if mode.Perm()&0o002 == 0 {
		who = "its group"
	}
	return &TrustError{Path: path, About: about,
		Problem: fmt.Sprintf("is writable by %s (mode %s)", who, mode),
		Fix:     "chmod go-w " + shellQuote(path)}
}

// checkParents checks every directory above path up to the root: each
// must be owned by root or the host's user and not writable by others,
// unless it has the sticky bit (as /tmp has).
func checkParents(path, about string) error {
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", about, err)
		}
		if err := checkNode(p, fi, about, true); err != nil {
			return err
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// CheckDir checks that a plugin directory can be trusted: it, and every
// directory above it (of the path as given and of the path its symlinks
// resolve to), is owned by root or by the host's user and is not writable
// by its group or by other users (a parent may be if it has the sticky
// bit, like /tmp). It returns the directory's resolved path. The error
// wraps ErrUntrusted and names the path, what is wrong and the fix.
func CheckDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	about := "plugin_dir " + abs
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w", about, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%s: %w", about, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", about)
	}
	if err := checkNode(real, fi, about, false); err != nil {
		return "", err
	}
	if err := checkParents(real, about); err != nil {
		return "", err
	}
	if real != abs {
		// The directories holding the symlinks on the way.
		if err := checkParents(abs, about); err != nil {
			return "", err
		}
	}
	return real, nil
}

// CheckBinary checks that a plugin binary can be trusted before it is run:
// its directory passes CheckDir; the file is a regular file owned by root
// or by the host's user and not writable by its group or by other users;
// and if it is a symlink, it resolves to a file inside the directory
// (every directory on the way checked likewise). The error wraps
// ErrUntrusted and names the path, what is wrong and the fix.
func CheckBinary(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	about := "plugin " + abs
	dir, err := CheckDir(filepath.Dir(abs))
	if err != nil {
		return err
	}
	lfi, err := os.Lstat(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", about, err)
	}
	target := abs
	if lfi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return fmt.Errorf("%s: %w", about, err)
		}
		rel, err := filepath.Rel(dir, real)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			return &TrustError{Path: abs, About: about,
				Problem: fmt.Sprintf("is a symlink to %s, outside the plugin directory %s", real, dir),
				Fix:     fmt.Sprintf("copy the binary into %s instead of linking to it", dir)}
		}
		// Directories between the plugin directory and the target.
		for p := filepath.Dir(real); p != dir; p = filepath.Dir(p) {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%s: %w", about, err)
			}
			if err := checkNode(p, fi, about, false); err != nil {
				return err
			}
		}
		target = real
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("%s: %w", about, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %s)", about, fi.Mode())
	}
	return checkNode(target, fi, about, false)
}

// CheckFile checks a file the host trusts for plugins, such as the lock
// file: it and its parent directories are owned by root or the host's user
// and not writable by others (parents may be if sticky). what names it in
// errors, e.g. "plugin_lock".
func CheckFile(path, what string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	about := what + " " + abs
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", about, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("%s: %w", about, err)
	}
	if err := checkNode(real, fi, about, false); err != nil {
		return err
	}
	if err := checkParents(real, about); err != nil {
		return err
	}
	if real != abs {
		return checkParents(abs, about)
	}
	return nil
}
