package api

import "time"

// LogLine is one line of a worker's log as the host keeps it (package
// worklog): what the worker's plugin process logged through the SDK or
// wrote to its stderr, with the worker's sensitive config values already
// replaced, or a marker line the host adds when an instance of the worker
// starts or ends.
type LogLine struct {
	// Seq numbers the lines of one worker's log from 1, across restarts
	// of the worker; a follower asks for the lines after the last Seq it
	// saw.
	Seq uint64 `json:"seq"`
	// Time is when the host read the line (or wrote the marker).
	Time time.Time `json:"time"`
	// PID is the process that wrote the line (or that the marker is about).
	PID int `json:"pid,omitempty"`
	// Level is the hclog level of a line logged through the SDK ("trace",
	// "debug", "info", "warn", "error"); "" for a plain stderr line and
	// for markers.
	Level string `json:"level,omitempty"`
	// Text is the line: for a line logged through the SDK, its message and
	// its fields as key=value (as the host's own log shows them); for a
	// plain stderr line, the line as written (cut at the host's line
	// limit); for a marker, what happened ("started, pid 123",
	// "exited: killed by SIGKILL", ...).
	Text string `json:"text"`
	// Marker is set on the lines the host adds: "start" (the first
	// instance of the worker since this host runs it), "restart" (a
	// later instance), "exit" (an instance ended).
	Marker string `json:"marker,omitempty"`
}

// LogsResult is the result of the logs operation: the kept lines of one
// worker's log that the request asked for, oldest first.
type LogsResult struct {
	Worker string    `json:"worker"`
	Lines  []LogLine `json:"lines"`
	// Next is the Seq of the last line of the log when the answer was
	// made (0 for a log without lines): a follower asks for the lines
	// after it.
	Next uint64 `json:"next"`
	// Skipped counts the lines a follower asked for (after its Seq) that
	// are no longer kept: the log turned over faster than it read.
	Skipped uint64 `json:"skipped,omitempty"`
}

// KillResult is the result of kill_worker: the process the host killed
// with SIGKILL, as a crash would; the worker's supervisor restarts it as
// it would after a crash.
type KillResult struct {
	Worker string `json:"worker"`
	PID    int    `json:"pid"`
	Signal string `json:"signal"` // "SIGKILL"
}
