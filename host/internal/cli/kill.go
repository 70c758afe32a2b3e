package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// runKill kills a worker's process with SIGKILL, as a crash would, for
// chaos drills: kill NAME (POST /v1/workers/NAME/kill, or kill_worker
// over AMQP). Its supervisor restarts it as after a crash.
func runKill(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("kill", "NAME "+clientFlagsUsage, stderr)
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the worker NAME", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "kill", "%s", msg)
	}
	name := pos[0]
	message, _ := json.Marshal(control.Request{Operation: control.OpKillWorker, WorkerName: name})
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/workers/" + url.PathEscape(name) + "/kill", message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		var res api.KillResult
		if json.Unmarshal(a.reply.Result, &res) != nil || res.Signal == "" {
			res = api.KillResult{Worker: name, Signal: "SIGKILL"}
		}
		if res.Worker == "" {
			res.Worker = name
		}
		fmt.Fprintf(w, "%skilled %s (pid %d) with %s; its supervisor restarts it\n", prefix, res.Worker, res.PID, res.Signal)
	}, func(e *control.Error) string {
		if e.Code == control.CodeNotFound {
			return "`dynworkers status` lists the workers"
		}
		return ""
	})
}
