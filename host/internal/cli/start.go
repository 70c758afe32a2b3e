package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// setFlag collects -set KEY=VALUE pairs, in order.
type setFlag struct {
	keys []string
	vals map[string]string
}

func (s *setFlag) String() string { return strings.Join(s.keys, ",") }

func (s *setFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE")
	}
	if _, dup := s.vals[k]; dup {
		return fmt.Errorf("%q is set twice", k)
	}
	if s.vals == nil {
		s.vals = map[string]string{}
	}
	s.keys = append(s.keys, k)
	s.vals[k] = val
	return nil
}

// startBody is the body of POST /v1/workers.
type startBody struct {
	Name       string          `json:"name"`
	Class      string          `json:"class"`
	Config     json.RawMessage `json:"config,omitempty"`
	Supervisor string          `json:"supervisor,omitempty"`
	Replace    bool            `json:"replace,omitempty"`
	// Cluster and Constraints ask for a cluster start.
	Cluster     bool              `json:"cluster,omitempty"`
	Constraints map[string]string `json:"constraints,omitempty"`
}

func runStart(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("start", "NAME -class CLASS [-config-json JSON | -set KEY=VALUE ...] [-supervisor PATH] [-replace] [-cluster [-constraint KEY=VALUE ...]] "+clientFlagsUsage, stderr)
	class := fs.String("class", "", "the worker's class, or an alias of it (required)")
	configJSON := fs.String("config-json", "", "the worker's config as a JSON object; use it for lists, maps, numbers and booleans")
	var sets setFlag
	fs.Var(&sets, "set", "one config attribute, KEY=VALUE (repeatable); the value is a string, which the host converts to the schema's type as HCL would (-set port=2773)")
	supervisor := fs.String("supervisor", "", "path of the supervisor to start the worker under, e.g. root/campaign-a (default: the root)")
	replace := fs.Bool("replace", false, "replace a worker of that name that runs with a different spec (otherwise: conflict)")
	cluster := fs.Bool("cluster", false, "a cluster start: the worker is written to the cluster's desired state and placed on any of its hosts, which the result names (a start through -amqp … -any is one too)")
	var constraints setFlag
	fs.Var(&constraints, "constraint", "with -cluster: a label KEY=VALUE the host that runs the worker must have (repeatable), e.g. -constraint zone=a")
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the worker NAME", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "start", "%s", msg)
	}
	if *class == "" {
		return usageError(stderr, "start", "missing -class CLASS (`dynworkers classes` lists them)")
	}
	if len(constraints.keys) > 0 && !*cluster {
		return usageError(stderr, "start", "-constraint goes with -cluster: only a cluster start is placed on a host by its labels")
	}
	cfg, msg := startConfig(*configJSON, &sets)
	if msg != "" {
		return usageError(stderr, "start", "%s", msg)
	}
	name := pos[0]
	body, _ := json.Marshal(startBody{Name: name, Class: *class, Config: cfg, Supervisor: *supervisor, Replace: *replace,
		Cluster: *cluster, Constraints: constraints.vals})
	message, _ := json.Marshal(control.Request{Operation: control.OpStartWorker, WorkerName: name, WorkerClass: *class,
		WorkerConfig: cfg, Supervisor: *supervisor, Replace: *replace, Cluster: *cluster, Constraints: constraints.vals})
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/workers", body: body, message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, printStarted, func(e *control.Error) string {
		if e.Code == control.CodeConflict && !*replace {
			return "-replace replaces the running worker with this spec"
		}
		return ""
	})
}

// startConfig builds the worker_config from -config-json or the -set
// pairs (nil for neither). It returns a usage error message on failure.
func startConfig(configJSON string, sets *setFlag) (json.RawMessage, string) {
	switch {
	case configJSON != "" && len(sets.keys) > 0:
		return nil, "-config-json and -set do not mix: put every attribute in -config-json"
	case configJSON != "":
		raw := bytes.TrimSpace([]byte(configJSON))
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Sprintf("-config-json is not valid JSON: %v", err)
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, "-config-json must be a JSON object, such as '{\"port\": 2773}'"
		}
		return raw, ""
	case len(sets.keys) > 0:
		// Marshalling a map sorts the keys, which keeps the spec stable.
		raw, _ := json.Marshal(sets.vals)
		return raw, ""
	}
	return nil, ""
}

func printStarted(w io.Writer, prefix string, a answer) {
	var res api.StartResult
	if json.Unmarshal(a.reply.Result, &res) != nil || res.Worker == "" {
		fmt.Fprintf(w, "%sstarted\n", prefix)
		printJSON(w, a.reply.Result)
		return
	}
	var notes []string
	if res.Host != "" {
		notes = append(notes, "on "+clean(res.Host))
	}
	if res.Pid != 0 {
		notes = append(notes, fmt.Sprintf("pid %d", res.Pid))
	}
	if res.State != "" {
		notes = append(notes, clean(res.State))
	}
	if res.Pending != "" {
		notes = append(notes, "not placed: "+clean(res.Pending))
	}
	detail := ""
	if len(notes) > 0 {
		detail = " (" + strings.Join(notes, ", ") + ")"
	}
	switch res.Action {
	case "unchanged":
		fmt.Fprintf(w, "%sworker %q already runs with this spec: unchanged%s\n", prefix, res.Worker, detail)
	case "":
		fmt.Fprintf(w, "%sworker %q%s\n", prefix, res.Worker, detail)
	default:
		fmt.Fprintf(w, "%s%s worker %q%s\n", prefix, res.Action, res.Worker, detail)
	}
}
