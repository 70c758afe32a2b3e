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

// MaxNameLen is the longest name, in bytes of UTF-8, of a worker or a
// supervisor.
const MaxNameLen = maxNameLen

// ValidateName reports whether name can name a worker or a supervisor: not
// empty, at most 200 bytes of UTF-8, no "/" (the path separator), not "."
// or "..", no leading or trailing space, and only visible characters (see
// checkNameRune): letters, marks (not first), digits, punctuation, symbols
// and the ASCII space. Control characters, format characters (bidi
// overrides and isolates, zero-width spaces and joiners, the byte order
// mark), other spaces and separators, invisible fillers and variation
// selectors, private-use and unassigned code points are refused, so that
// two names that look the same are the same name. The control channel
// checks names from messages with it too; see also ValidateWorkerName.
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
	}
	for i, r := range name {
		if err := checkNameRune(r, i == 0); err != nil {
			return err
		}
	}
	if strings.TrimSpace(name) != name {
		return errors.New("a name must not start or end with white space")
	}
	return nil
}

// ValidateWorkerName is ValidateName for a worker: worker and supervisor
// names are one name space, and "root", the root supervisor's name and
// path, is reserved even when the configuration does not write the root
// out.
func ValidateWorkerName(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if name == RootName {
		return fmt.Errorf("%q is reserved: it names the root supervisor (worker and supervisor names are one name space)", RootName)
	}
	return nil
}

// invisible are code points of the visible categories that show nothing
// (or a blank) and serve only to make look-alike names: Hangul fillers and
// the blank braille pattern. Default-ignorable code points and variation
// selectors are refused by checkNameRune by their Unicode properties.
var invisible = map[rune]bool{0x115F: true, 0x1160: true, 0x3164: true, 0xFFA0: true, 0x2800: true}

// checkNameRune checks one character of a name. The rule: a character is
// allowed if its Unicode general category is L (letter), M (mark, but not
// as the first character), N (number), P (punctuation) or S (symbol), or
// it is U+0020 SPACE; and it is neither default-ignorable
// (Other_Default_Ignorable_Code_Point), a variation selector, nor one of
// the invisible fillers above. So Cc (controls), Cf (format: bidi
// controls, zero-width characters, soft hyphen, BOM), Co (private use),
// Cs, Cn (unassigned), Zl, Zp and every Zs but U+0020 are refused.
func checkNameRune(r rune, first bool) error {
	bad := func(what string) error {
		return fmt.Errorf("a name must not contain %s (%U): names may use letters, digits, punctuation, symbols and the ASCII space only", what, r)
	}
	switch {
	case r == ' ':
		return nil
	case unicode.IsControl(r):
		return bad("control characters")
	case unicode.Is(unicode.Cf, r):
		return bad("invisible format characters such as bidi overrides and zero-width characters")
	case unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r), unicode.Is(unicode.Variation_Selector, r), invisible[r]:
		return bad("invisible characters")
	case unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
		return bad("spaces or separators other than the ASCII space")
	case unicode.Is(unicode.M, r):
		if first {
			return bad("a combining mark at the start")
		}
		return nil
	case unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S):
		return nil
	case unicode.Is(unicode.Co, r):
		return bad("private-use characters")
	}
	return bad("unassigned or unusable code points")
}

// ValidateHostName reports whether name can name a host (host { name }):
// the rules of validateIdent, and not "all" or "any", which the control
// channel's routing keys reserve. The control channel checks the host of a
// drain or undrain with it.
func ValidateHostName(name string) error {
	if err := validateIdent("host name", name); err != nil {
		return err
	}
	if name == "all" || name == "any" {
		return fmt.Errorf("%q is reserved: control messages use it to address every host (\"all\") or any host (\"any\")", name)
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
