// Package amqpurl hides the password of an AMQP URL, for logs, errors and
// status output. It is the only place that does: the config's AMQPConfig,
// the broker connection and the command-line client all print URLs with
// Redact, so they agree on the form and on what is never shown.
//
// The rule is that Redact never returns a password it could not find. A
// URL whose user name and password are not percent-encoded may parse as
// something else: with a '/', '?' or '#' in the password, net/url ends the
// host there and takes the rest of the password for the path, so that
// url.URL.Redacted would print it. Redact returns such a URL, and any it
// cannot parse, as the fixed Invalid.
package amqpurl

import (
	"net/url"
	"strings"
)

// Invalid is what Redact returns for a URL it cannot safely take apart.
const Invalid = "(invalid amqp url)"

// Mask replaces the password in Redact's result.
const Mask = "xxxxx"

// Redact returns the amqp:// or amqps:// URL raw with its password, if it
// has one, replaced by Mask, and Invalid when raw does not parse as such a
// URL or parses in a way that could leave part of a password outside the
// user information: no "scheme://", or an '@' after the host (in the path,
// query or fragment), which is where the tail of a password with an
// unescaped '/', '?' or '#' ends up. A URL without user information is
// returned as it is.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "amqp" && u.Scheme != "amqps" || u.Opaque != "" {
		return Invalid
	}
	// The scheme must be followed by "//" and the authority, not by a path
	// that holds "://" further on.
	after := raw[len(u.Scheme)+1:] // url.Parse found the scheme and its ':'
	if !strings.HasPrefix(after, "//") {
		return Invalid
	}
	after = after[2:]
	// net/url ends the authority (user information and host) at the first
	// '/', '?' or '#'; whatever follows must hold no '@'.
	if i := strings.IndexAny(after, "/?#"); i >= 0 && strings.Contains(after[i:], "@") {
		return Invalid
	}
	if u.User == nil {
		return raw // no '@' anywhere: nothing to hide
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Mask)
	}
	return u.String()
}
