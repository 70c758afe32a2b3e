package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

func runStop(args []string, stdout, stderr io.Writer) int {
	return runWorkerOp("stop", control.OpStopWorker, http.MethodDelete, "", "stopped", args, stdout, stderr)
}

func runRestart(args []string, stdout, stderr io.Writer) int {
	return runWorkerOp("restart", control.OpRestartWorker, http.MethodPost, "/restart", "restarted", args, stdout, stderr)
}

// runWorkerOp runs an operation on one worker named by the only argument:
// stop (DELETE /v1/workers/NAME) or restart (POST /v1/workers/NAME/restart).
func runWorkerOp(cmd, op, method, suffix, done string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(cmd, "NAME "+clientFlagsUsage, stderr)
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the worker NAME", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, cmd, "%s", msg)
	}
	name := pos[0]
	message, _ := json.Marshal(control.Request{Operation: op, WorkerName: name})
	answers, rc := co.do(call{method: method, path: "/v1/workers/" + url.PathEscape(name) + suffix, message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		var res struct {
			Worker string `json:"worker"`
			Action string `json:"action"`
		}
		if json.Unmarshal(a.reply.Result, &res) != nil || res.Action == "" {
			res.Action = done
		}
		fmt.Fprintf(w, "%s%s worker %q\n", prefix, res.Action, name)
	}, nil)
}
