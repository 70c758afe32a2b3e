// Package worklog keeps the recent log of each worker: the last lines its
// plugin processes logged (through the SDK or on stderr), across restarts
// of the worker, with a marker line where an instance started or ended, and
// lets followers wait for new lines. Optionally each worker's log is also
// written to a file of its own, rotated by size.
//
// The lines reach it already scrubbed of the worker's sensitive values
// (pluginproc's stderr sink scrubs every line before anything else sees
// it); this package stores what it is given.
//
// STUB: the contract only; the implementation is being written.
package worklog

import (
	"context"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// DefaultLines is how many lines a worker's log keeps when Options.Lines
// is 0 (host.log_lines).
const DefaultLines = 1000

// Options configures a Store.
type Options struct {
	// Lines is how many lines each worker's log keeps (0: DefaultLines).
	Lines int
	// Files, if Files.Dir is set, also writes each worker's log to
	// Dir/<worker name>.log, rotated by size.
	Files Files
}

// Files configures the optional per-worker log files.
type Files struct {
	Dir string
	// MaxBytes is the size at which a file is rotated; Backups how many
	// rotated files are kept.
	MaxBytes int64
	Backups  int
}

// Store holds the log of every worker of a host, by the worker's global
// name. Safe for concurrent use.
type Store struct{}

// NewStore returns an empty Store.
func NewStore(o Options) (*Store, error) { panic("STUB") }

// Log returns worker name's log, creating it if there is none.
func (s *Store) Log(name string) *Log { panic("STUB") }

// Lookup returns worker name's log, if the store has one (also for a
// worker removed lately: see Remove).
func (s *Store) Lookup(name string) (*Log, bool) { panic("STUB") }

// Remove marks worker name as removed from the host: its log is kept for
// a while (among the most recently removed ones) so that it can still be
// read, and dropped when the name is reused or too many were removed since.
func (s *Store) Remove(name string) { panic("STUB") }

// Close closes the log files.
func (s *Store) Close() error { panic("STUB") }

// Log is one worker's log.
type Log struct{}

// Add appends a line; it sets line.Seq, and line.Time when it is zero.
func (l *Log) Add(line api.LogLine) { panic("STUB") }

// Query selects lines of a log.
type Query struct {
	Lines int       // at most this many of the last lines; 0: all kept
	Since time.Time // zero: no limit
	After uint64    // only lines with a greater Seq
}

// Lines returns the kept lines q selects, oldest first, as a LogsResult
// (Worker left for the caller).
func (l *Log) Lines(q Query) api.LogsResult { panic("STUB") }

// Wait blocks until the log has lines after seq after, or ctx is done,
// and returns them (ctx's error when it is done first).
func (l *Log) Wait(ctx context.Context, after uint64) (api.LogsResult, error) { panic("STUB") }
