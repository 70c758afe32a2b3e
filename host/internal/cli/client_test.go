package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
)

// fakeDoer records the control requests a test host gets and answers them
// with reply (ok and no result when nil).
type fakeDoer struct {
	mu    sync.Mutex
	reqs  []control.Request
	reply func(*control.Request) control.Reply
}

func (f *fakeDoer) Do(_ context.Context, req *control.Request) control.Reply {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	if f.reply != nil {
		return f.reply(req)
	}
	return control.Reply{OK: true}
}

func (f *fakeDoer) requests() []control.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]control.Request(nil), f.reqs...)
}

// apiServer serves the real HTTP API in front of d.
func apiServer(t *testing.T, d httpapi.Doer, token string) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Doer: d, Token: token}).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// runCLI runs the command line in process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, rc int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc = Main(args, &out, &errb)
	return out.String(), errb.String(), rc
}

func TestStartBuildsTheRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want control.Request
	}{
		{"set", []string{"start", "w1", "--class", "smpp", "--set", "port=2773", "--set", "host=smpp.example.com", "--set", "note=a=b"},
			control.Request{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "smpp",
				WorkerConfig: json.RawMessage(`{"host":"smpp.example.com","note":"a=b","port":"2773"}`)}},
		{"flags around the name", []string{"start", "-class", "hello", "SMPP Transport for account1", "-replace", "-supervisor", "root/a"},
			control.Request{Operation: control.OpStartWorker, WorkerName: "SMPP Transport for account1", WorkerClass: "hello",
				Supervisor: "root/a", Replace: true}},
		{"config-json", []string{"start", "w1", "--class", "c", "--config-json", `{"tags": ["a", "b"], "port": 2773}`},
			control.Request{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "c",
				WorkerConfig: json.RawMessage(`{"tags":["a","b"],"port":2773}`)}},
		{"name after --", []string{"start", "--class", "c", "--", "-odd"},
			control.Request{Operation: control.OpStartWorker, WorkerName: "-odd", WorkerClass: "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDoer{reply: func(r *control.Request) control.Reply {
				return control.Reply{OK: true, Result: api.StartResult{Worker: r.WorkerName, Action: "started", Pid: 42, State: "running"}}
			}}
			url := apiServer(t, d, "")
			args := append([]string{tt.args[0], "--http", url}, tt.args[1:]...)
			stdout, stderr, rc := runCLI(t, args...)
			if rc != 0 {
				t.Fatalf("rc %d, stderr:\n%s", rc, stderr)
			}
			reqs := d.requests()
			if len(reqs) != 1 {
				t.Fatalf("the host got %d requests", len(reqs))
			}
			got := reqs[0]
			if !jsonEqual(got.WorkerConfig, tt.want.WorkerConfig) {
				t.Errorf("config %s, want %s", got.WorkerConfig, tt.want.WorkerConfig)
			}
			got.WorkerConfig, tt.want.WorkerConfig = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("request\n got %+v\nwant %+v", got, tt.want)
			}
			if want := `started worker "` + tt.want.WorkerName + `" (pid 42, running)`; strings.TrimSpace(stdout) != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
		})
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

func TestClientUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"start", "--class", "c"}, "missing the worker NAME"},
		{"no class", []string{"start", "w"}, "missing -class"},
		{"bad config-json", []string{"start", "w", "--class", "c", "--config-json", `{"port": }`}, "-config-json is not valid JSON"},
		{"config-json not an object", []string{"start", "w", "--class", "c", "--config-json", `["a"]`}, "must be a JSON object"},
		{"set and config-json", []string{"start", "w", "--class", "c", "--config-json", `{}`, "--set", "a=b"}, "do not mix"},
		{"set without =", []string{"start", "w", "--class", "c", "--set", "port"}, "want KEY=VALUE"},
		{"set twice", []string{"start", "w", "--class", "c", "--set", "a=1", "--set", "a=2"}, `"a" is set twice`},
		{"two names", []string{"start", "w", "x", "--class", "c"}, `unexpected argument "x"`},
		{"unknown flag", []string{"stop", "w", "--force"}, "flag provided but not defined"},
		{"stop without name", []string{"stop"}, "missing the worker NAME"},
		{"restart two names", []string{"restart", "a", "b"}, `unexpected argument "b"`},
		{"status argument", []string{"status", "w"}, `unexpected argument "w"`},
		{"host without amqp", []string{"status", "--host", "h1"}, "go with -amqp"},
		{"amqp without target", []string{"status", "--amqp", "amqp://127.0.0.1:1/"}, "exactly one of -host NAME, -all or -any"},
		{"amqp two targets", []string{"status", "--amqp", "amqp://127.0.0.1:1/", "--all", "--any"}, "exactly one of"},
		{"amqp and http", []string{"status", "--amqp", "amqp://127.0.0.1:1/", "--all", "--http", "x:1"}, "-http, -token, -token-file and -tls-* are for the HTTP API"},
		{"amqp and tls", []string{"status", "--amqp", "amqp://127.0.0.1:1/", "--all", "--tls-ca", "ca.pem"}, "are for the HTTP API"},
		{"token and token file", []string{"status", "--token", "t", "--token-file", "f"}, "give -token or -token-file, not both"},
		{"tls key alone", []string{"status", "--tls-key", "k.pem"}, "-tls-cert and -tls-key go together"},
		{"tls flags with amqp://", []string{"status", "--amqp", "amqp://127.0.0.1:1/", "--host", "h1", "--amqp-ca", "ca.pem"}, "go with -amqp amqps://URL"},
		{"tls flags without amqp", []string{"status", "--amqp-cert", "c.pem", "--amqp-key", "k.pem"}, "go with -amqp amqps://URL"},
		{"send no file", []string{"send"}, "missing the FILE"},
		{"send missing file", []string{"send", "/nonexistent/msg.json"}, "no such file"},
	}
	d := &fakeDoer{}
	url := apiServer(t, d, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !strings.Contains(strings.Join(args, " "), "-amqp") {
				args = append(args, "--http", url)
			}
			_, stderr, rc := runCLI(t, args...)
			if rc != 2 {
				t.Errorf("rc %d, want 2; stderr:\n%s", rc, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
	if n := len(d.requests()); n != 0 {
		t.Errorf("the host got %d requests from usage errors", n)
	}
	// -h is not an error.
	if _, stderr, rc := runCLI(t, "start", "-h"); rc != 0 || !strings.Contains(stderr, "Usage: dynworkers start NAME -class CLASS") {
		t.Errorf("start -h: rc %d\n%s", rc, stderr)
	}
}

func TestHostErrorsExitOne(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		switch r.Operation {
		case control.OpStartWorker:
			if r.WorkerName == "taken" {
				return control.Reply{Error: control.Errorf(control.CodeConflict, "worker %q runs with a different spec", r.WorkerName)}
			}
			return control.Reply{Error: &control.Error{Code: control.CodeInvalidConfig, Message: "worker_config of worker \"w\" is invalid: port",
				Details: []control.Detail{{Attribute: "port", Summary: "Incorrect attribute value type", Detail: "a number is required"}}}}
		}
		return control.Reply{Error: control.Errorf(control.CodeNotFound, "no worker %q", r.WorkerName)}
	}}
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "start", "w", "--class", "c", "--set", "port=x", "--http", url)
	if rc != 1 || stdout != "" {
		t.Errorf("invalid config: rc %d stdout %q", rc, stdout)
	}
	for _, want := range []string{"dynworkers start: invalid_config: worker_config of worker", "  - port: Incorrect attribute value type: a number is required"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	_, stderr, rc = runCLI(t, "start", "taken", "--class", "c", "--http", url)
	if rc != 1 || !strings.Contains(stderr, "conflict: ") || !strings.Contains(stderr, "hint: -replace") {
		t.Errorf("conflict: rc %d\n%s", rc, stderr)
	}
	for _, cmd := range []string{"stop", "restart"} {
		_, stderr, rc = runCLI(t, cmd, "ghost", "--http", url)
		if rc != 1 || !strings.Contains(stderr, "dynworkers "+cmd+`: not_found: no worker "ghost"`) {
			t.Errorf("%s: rc %d\n%s", cmd, rc, stderr)
		}
	}
}

func TestStopAndRestart(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		action := map[string]string{control.OpStopWorker: "stopped", control.OpRestartWorker: "restarted"}[r.Operation]
		return control.Reply{OK: true, Result: map[string]string{"worker": r.WorkerName, "action": action}}
	}}
	url := apiServer(t, d, "")
	name := "SMPP Transport for account1"
	stdout, stderr, rc := runCLI(t, "stop", "--http", url, name)
	if rc != 0 || stdout != `stopped worker "SMPP Transport for account1"`+"\n" {
		t.Errorf("stop: rc %d stdout %q stderr %q", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "restart", name, "-http", strings.TrimPrefix(url, "http://"))
	if rc != 0 || stdout != `restarted worker "SMPP Transport for account1"`+"\n" {
		t.Errorf("restart: rc %d stdout %q stderr %q", rc, stdout, stderr)
	}
	want := []control.Request{{Operation: control.OpStopWorker, WorkerName: name}, {Operation: control.OpRestartWorker, WorkerName: name}}
	if got := d.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests %+v, want %+v", got, want)
	}
}

func TestSend(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		if r.Operation == control.OpStopWorker {
			return control.Reply{Error: control.Errorf(control.CodeNotFound, "no worker %q", r.WorkerName), RequestID: r.RequestID}
		}
		return control.Reply{OK: true, Result: map[string]string{"host": "h1"}, RequestID: r.RequestID}
	}}
	url := apiServer(t, d, "")
	dir := t.TempDir()
	envelope := filepath.Join(dir, "status.json")
	os.WriteFile(envelope, []byte(`{"message_version":"20110707","message_type":"control","payload":{"operation":"status","request_id":"r1"}}`), 0o644)
	stdout, stderr, rc := runCLI(t, "send", envelope, "--http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	var rep clientReply
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || !rep.OK || rep.RequestID != "r1" || !strings.Contains(string(rep.Result), `"h1"`) {
		t.Errorf("stdout %q: %v", stdout, err)
	}

	stdin = strings.NewReader(`{"operation":"stop_worker","worker_name":"w9"}`)
	t.Cleanup(func() { stdin = os.Stdin })
	stdout, _, rc = runCLI(t, "send", "--http", url, "-")
	if rc != 1 || !strings.Contains(stdout, `"code": "not_found"`) {
		t.Errorf("send - : rc %d stdout %q", rc, stdout)
	}

	// A body the host cannot decode is still sent: the host says why.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"operation": "stop_worker",`), 0o644)
	stdout, _, rc = runCLI(t, "send", bad, "--http", url)
	if rc != 1 || !strings.Contains(stdout, `"code": "malformed"`) {
		t.Errorf("send bad: rc %d stdout %q", rc, stdout)
	}
	want := []control.Request{{Operation: control.OpStatus, RequestID: "r1"}, {Operation: control.OpStopWorker, WorkerName: "w9"}}
	if got := d.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests %+v, want %+v", got, want)
	}
}

func TestUnreachableHostExitsThree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "host.hcl")
	os.WriteFile(cfg, []byte("host {\n  http_addr = \""+addr+"\"\n}\n"), 0o644)
	for _, args := range [][]string{
		{"status", "--http", addr},
		{"stop", "w", "--config", cfg},
		{"start", "w", "--class", "c", "--config", cfg},
	} {
		stdout, stderr, rc := runCLI(t, args...)
		if rc != 3 || stdout != "" {
			t.Errorf("%v: rc %d stdout %q", args, rc, stdout)
		}
		for _, want := range []string{"cannot reach the host at http://" + addr + ": connection refused", "is `dynworkers serve` running?"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, stderr)
			}
		}
		if args[1] != "--http" && !strings.Contains(stderr, "http_addr "+addr+" from "+cfg) {
			t.Errorf("%v: stderr does not say where the address comes from:\n%s", args, stderr)
		}
	}
	// Something that is not the API answers: unreachable too.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer other.Close()
	_, stderr, rc := runCLI(t, "status", "--http", other.URL)
	if rc != 3 || !strings.Contains(stderr, "HTTP 502 Bad Gateway, not a control reply") {
		t.Errorf("a non-API answer: rc %d\n%s", rc, stderr)
	}
}

func TestUnreadableConfigFallsBackToTheDefaultAddress(t *testing.T) {
	_, stderr, _ := runCLI(t, "status", "--config", filepath.Join(t.TempDir(), "none.hcl"), "--timeout", "2s")
	if !strings.Contains(stderr, "none.hcl does not exist; trying 127.0.0.1:7780") {
		t.Errorf("stderr lacks the note:\n%s", stderr)
	}
}

func TestToken(t *testing.T) {
	const token = "client-test-token-0123"
	d := &fakeDoer{}
	url := apiServer(t, d, token)
	t.Setenv(TokenEnv, "")

	_, stderr, rc := runCLI(t, "restart", "w", "--http", url)
	if rc != 1 || !strings.Contains(stderr, "unauthorized: missing bearer token") || !strings.Contains(stderr, "hint: pass -token") {
		t.Errorf("no token: rc %d\n%s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, "restart", "w", "--http", url, "--token", token); rc != 0 {
		t.Errorf("-token: rc %d\n%s", rc, stderr)
	}
	t.Setenv(TokenEnv, token)
	if _, stderr, rc := runCLI(t, "restart", "w", "--http", url); rc != 0 {
		t.Errorf("$%s: rc %d\n%s", TokenEnv, rc, stderr)
	}
	t.Setenv(TokenEnv, "")
	// The config gives both the address and the token.
	cfg := filepath.Join(t.TempDir(), "host.hcl")
	os.WriteFile(cfg, []byte("host {\n  http_addr = \""+strings.TrimPrefix(url, "http://")+"\"\n  http_token = \""+token+"\"\n}\n"), 0o644)
	if _, stderr, rc := runCLI(t, "restart", "w", "--config", cfg); rc != 0 {
		t.Errorf("config token: rc %d\n%s", rc, stderr)
	}
	if n := len(d.requests()); n != 3 {
		t.Errorf("the host got %d requests, want 3", n)
	}
}

func TestClassesRemote(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		return control.Reply{OK: true, Result: json.RawMessage(`{"classes":[{"name":"hello","version":"1.0.0","aliases":["examples.hello"],
			"binary":"/p/hello-worker","schema":[{"name":"greeting","type":"string","default":"hello","description":"what to say"},
			{"name":"password","type":"string","required":true,"sensitive":true}]}],"broken":[{"path":"/p/x","error":"not a plugin"}]}`)}
	}}
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "classes", "-remote", "-http", url)
	if rc != 0 {
		t.Fatalf("rc %d\n%s", rc, stderr)
	}
	for _, want := range []string{"hello 1.0.0  (/p/hello-worker)", "aliases: examples.hello",
		`    greeting  string  default "hello"      what to say`, "    password  string  required, sensitive", "broken:\n  /p/x: not a plugin"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, rc = runCLI(t, "classes", "-http", url, "-json", "--remote")
	if rc != 0 || !json.Valid([]byte(stdout)) || !strings.Contains(stdout, `"name": "hello"`) {
		t.Errorf("-json: rc %d\n%s", rc, stdout)
	}
	if got := d.requests(); len(got) != 2 || got[0].Operation != control.OpListClasses {
		t.Errorf("requests %+v", got)
	}
}
