package monitor

import (
	"strings"
)

// SanitizeName makes s a metric name of the characters [a-z0-9_.] that
// DESIGN.md §6 allows (and that Graphite, at the end of Vumi's metrics
// pipeline, reads without quoting): ASCII letters are lowercased, every
// other character becomes '_', runs of dots become one dot, and leading and
// trailing dots are dropped (each dot is a level of the metric tree, and an
// empty level is not addressable).
func SanitizeName(s string) string {
	return sanitize(s, true)
}

// sanitizeComponent is SanitizeName for one level of a name, such as a
// host or worker name: dots become '_' too, so that "web.example.com" stays
// one level. An empty result becomes "unknown".
func sanitizeComponent(s string) string {
	if c := sanitize(s, false); c != "" {
		return c
	}
	return "unknown"
}

func sanitize(s string, keepDots bool) string {
	var b strings.Builder
	b.Grow(len(s))
	dot := true // at the start, as after a dot: leading dots are dropped
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
		case r == '.' && keepDots:
			if !dot {
				b.WriteByte('.')
			}
			dot = true
			continue
		default:
			b.WriteByte('_')
		}
		dot = false
	}
	return strings.TrimSuffix(b.String(), ".")
}

// HostPrefix returns the prefix of the host's own metrics,
// dynworkers.<system_id>.<host>, each part sanitised to one level.
func HostPrefix(systemID, host string) string {
	return "dynworkers." + sanitizeComponent(systemID) + "." + sanitizeComponent(host)
}

// WorkerPrefix returns the prefix of a worker's metrics,
// dynworkers.<system_id>.<host>.worker.<worker>, each part sanitised to one
// level.
func WorkerPrefix(systemID, host, worker string) string {
	return HostPrefix(systemID, host) + ".worker." + sanitizeComponent(worker)
}
