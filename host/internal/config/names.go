package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/suggest"
)

// maxNameLen bounds worker and supervisor names: they end up in routing
// keys, metric names and file names.
const maxNameLen = 200

// ValidateName reports whether name can name a worker or a supervisor: not
// empty, at most 200 bytes of UTF-8, no "/" (the path separator), no control
// characters, not "." or "..", and no leading or trailing white space. The
// control channel checks names from messages with it too.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("a name must not be empty")
	case !utf8.ValidString(name):
		return errors.New("a name must be UTF-8 text")
	case len(name) > maxNameLen:
		return fmt.Errorf("a name must be at most %d bytes long", maxNameLen)
	case strings.Contains(name, "/"):
		return errors.New(`a name must not contain "/", the path separator`)
	case name == "." || name == "..":
		return fmt.Errorf("a name must not be %q", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("a name must not contain control characters")
	case strings.TrimSpace(name) != name:
		return errors.New("a name must not start or end with white space")
	}
	return nil
}

// validateIdent checks the system id and the host name, which become
// segments of AMQP routing keys and queue names.
func validateIdent(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("the %s must not be empty", what)
	case !utf8.ValidString(s):
		return fmt.Errorf("the %s must be UTF-8 text", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("the %s must be at most %d bytes long", what, maxNameLen)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("the %s must not contain white space or control characters", what)
	case strings.ContainsAny(s, "/*#"):
		return fmt.Errorf(`the %s must not contain "/", "*" or "#"`, what)
	}
	return nil
}

// didYouMean formats a suggestion as a sentence to append to a detail.
func didYouMean(s string, candidates []string) string {
	if m := suggest.Closest(s, candidates); m != "" {
		return fmt.Sprintf(" Did you mean %q?", m)
	}
	return ""
}

// quotedList formats ["a", "b", "c"] as `"a", "b" or "c"`.
func quotedList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// position formats the start of r as file:line:col.
func position(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
