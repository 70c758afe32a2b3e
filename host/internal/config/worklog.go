package config

import (
	"github.com/hashicorp/hcl/v2"
)

// Defaults and bounds of the worker logs (host.log_lines, host.log_files).
const (
	// DefaultLogLines is how many lines of each worker's log the host
	// keeps (host.log_lines).
	DefaultLogLines = 1000
	// MaxLogLines bounds host.log_lines.
	MaxLogLines = maxIntensity
	// DefaultLogFilesDir is log_files.dir when the block sets none,
	// relative to the directory of the file with the block.
	DefaultLogFilesDir = "logs"
	// DefaultLogFileMaxSize and DefaultLogFileBackups are log_files'
	// max_size and backups.
	DefaultLogFileMaxSize = 10 << 20
	DefaultLogFileBackups = 5
	// MinLogFileMaxSize is the smallest max_size: files are rotated in
	// whole MiB (lumberjack's unit; a size between two is rounded up).
	MinLogFileMaxSize = 1 << 20
	// MaxLogFileBackups bounds log_files.backups.
	MaxLogFileBackups = 1000
)

// LogFilesConfig is the host block's log_files block: each worker's log is
// also written to Dir/<worker name>.log, rotated once it reaches MaxSize
// bytes, with Backups rotated files kept (see package worklog).
type LogFilesConfig struct {
	// Dir is joined with the directory of the file that sets it.
	Dir     string
	MaxSize int64
	Backups int
}

var logFilesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "dir"}, {Name: "max_size"}, {Name: "backups"}},
}

// decodeWorkerLogs decodes host.log_lines (a whole number up to
// MaxLogLines, which is the bound of scope.wholeNumber; 0 means the
// default) and the host's log_files block.
func (m *merger) decodeWorkerLogs(sc *scope, attrs hcl.Attributes, blocks hcl.Blocks) {
	h := &m.f.Host
	if attr := attrs["log_lines"]; attr != nil {
		// wholeNumber bounds it by MaxLogLines (and says so).
		n := -1
		sc.wholeNumber(attr, &n)
		switch {
		case n == 0:
			h.LogLines = DefaultLogLines
		case n > 0:
			h.LogLines = n
		}
	}
	if b := sc.onlyBlock(blocks, "log_files", "the host block"); b != nil {
		h.LogFiles = decodeLogFiles(sc, b)
	}
}

func decodeLogFiles(sc *scope, b *hcl.Block) *LogFilesConfig {
	content, d := b.Body.Content(logFilesSchema)
	sc.add(d...)
	a := content.Attributes
	lf := &LogFilesConfig{Dir: resolvePath(sc.dir, DefaultLogFilesDir), MaxSize: DefaultLogFileMaxSize, Backups: DefaultLogFileBackups}
	var dir string
	if attr := a["dir"]; sc.str(attr, &dir) {
		if dir == "" {
			sc.errorf(attr.Expr.Range(), "Invalid directory", "The argument \"dir\" of log_files must not be empty.")
		} else {
			lf.Dir = resolvePath(sc.dir, dir)
		}
	}
	if attr := a["max_size"]; attr != nil {
		if n, ok := sc.size(attr); ok {
			if n < MinLogFileMaxSize {
				sc.errorf(attr.Expr.Range(), "Invalid value",
					"The argument \"max_size\" of log_files must be at least 1MiB, such as \"10MiB\": files are rotated in whole MiB.")
			} else {
				lf.MaxSize = int64(n)
			}
		}
	}
	if attr := a["backups"]; attr != nil {
		n := -1
		sc.wholeNumber(attr, &n)
		switch {
		case n >= 1 && n <= MaxLogFileBackups:
			lf.Backups = n
		case n == 0 || n > MaxLogFileBackups:
			sc.errorf(attr.Expr.Range(), "Invalid value",
				"The argument \"backups\" of log_files (how many rotated files of each worker are kept) must be a whole number from 1 to %d.", MaxLogFileBackups)
		}
	}
	return lf
}
