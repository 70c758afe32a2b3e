package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Defaults of the plugin log rate limit (host.plugin_log_*).
const (
	DefaultPluginLogRate    = 256 << 10 // bytes per second
	DefaultPluginLogLines   = 1000      // lines per second
	DefaultPluginLogLineMax = 16 << 10  // bytes
)

// PluginLogConfig bounds how much of each plugin process's log (stderr) the
// host re-logs: the rest is dropped and counted. 0 for a rate means
// unlimited.
type PluginLogConfig struct {
	// BytesPerSecond and LinesPerSecond are the sustained rates; a
	// process may log 4 seconds' worth of them at once.
	BytesPerSecond int
	LinesPerSecond int
	// LineMax is the longest line kept, in bytes.
	LineMax int
}

// maxPluginLogSize bounds the sizes of host.plugin_log_*.
const maxPluginLogSize = 1 << 30

// decodePluginLog decodes host.plugin_log_rate (bytes per second, a size
// such as "256KiB" or a number; 0 turns the limit off),
// host.plugin_log_lines (lines per second; 0 turns it off) and
// host.plugin_log_line_max (a size, at least 256 bytes).
func (m *merger) decodePluginLog(sc *scope, attrs hcl.Attributes) {
	h := &m.f.Host
	if attr := attrs["plugin_log_rate"]; attr != nil {
		if n, ok := sc.size(attr); ok {
			h.PluginLog.BytesPerSecond = n
		}
	}
	if attr := attrs["plugin_log_lines"]; attr != nil {
		n := h.PluginLog.LinesPerSecond
		sc.wholeNumber(attr, &n)
		h.PluginLog.LinesPerSecond = n
	}
	if attr := attrs["plugin_log_line_max"]; attr != nil {
		if n, ok := sc.size(attr); ok {
			if n < 256 {
				sc.errorf(attr.Expr.Range(), "Invalid value",
					"The argument \"plugin_log_line_max\" must be at least 256 bytes, such as \"16KiB\".")
			} else {
				h.PluginLog.LineMax = n
			}
		}
	}
}

// size evaluates a byte size: a whole number of bytes, or a string such as
// "512", "64KiB", "1MiB", "2GiB" (KB, MB and GB are taken as 1000-based).
func (s *scope) size(attr *hcl.Attribute) (int, bool) {
	v, ok := s.value(attr, cty.DynamicPseudoType)
	if !ok {
		return 0, false
	}
	text := ""
	switch v.Type() {
	case cty.Number:
		text = v.AsBigFloat().Text('f', -1)
	case cty.String:
		text = v.AsString()
	default:
		s.errorf(attr.Expr.Range(), "Invalid size", "The argument %q must be a size, such as \"256KiB\" or 262144.", attr.Name)
		return 0, false
	}
	n, err := parseSize(text)
	if err != nil {
		s.errorf(attr.Expr.Range(), "Invalid size", "The argument %q: %v; use a size such as \"256KiB\" or 262144, from 0 to 1GiB.", attr.Name, err)
		return 0, false
	}
	return n, true
}

func parseSize(text string) (int, error) {
	t := strings.TrimSpace(text)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size", text)
	}
	f *= mult
	if f < 0 || f > maxPluginLogSize || f != math.Trunc(f) {
		return 0, fmt.Errorf("%q is not a whole number of bytes from 0 to 1GiB", text)
	}
	return int(f), nil
}
