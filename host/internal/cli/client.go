package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// Exit statuses of the client commands (start, stop, restart,
// start-supervisor, stop-supervisor, status, send, classes -remote).
const (
	exitOK          = 0
	exitHostError   = 1 // the host answered with an error
	exitUsage       = 2
	exitUnreachable = 3 // no host answered: not running, wrong address, no broker...
)

// TokenEnv is the environment variable the client commands take the HTTP
// API's bearer token from when -token is not given.
const TokenEnv = "DYNWORKERS_HTTP_TOKEN"

// Default waits for an answer: a start may take the worker's start_timeout.
const (
	defaultTimeout    = 60 * time.Second
	defaultAllTimeout = 5 * time.Second
	maxAnswerBytes    = 64 << 20
)

// clientFlagsUsage is the usage text of the flags addClientFlags adds.
const clientFlagsUsage = "[-config PATH | -http URL [-token T | -token-file F] [-tls-ca F] [-tls-cert F -tls-key F] | -amqp URL (-host NAME | -all | -any) [-system-id ID]] [-key FILE [-key-id ID]] [-timeout D]"

// clientOptions are the flags every client command shares: which host to
// ask, over which transport, and how long to wait.
type clientOptions struct {
	cmd        string
	configPath string
	httpURL    string
	token      string
	tokenFile  string
	tlsCA      string
	tlsCert    string
	tlsKey     string
	amqpURL    string
	amqpTLS    config.AMQPTLS // -amqp-ca, -amqp-cert, -amqp-key, -amqp-server-name (amqp_client.go)
	host       string
	all, any   bool
	systemID   string
	timeout    time.Duration
	keyFile    string
	keyID      string
	signer     *auth.Signer // loaded from -key by check

	file        *config.File // the parsed -config, once loaded
	fileProblem string       // why it could not be, if so
	fileLoaded  bool
}

func addClientFlags(fs *flag.FlagSet) *clientOptions {
	o := &clientOptions{cmd: fs.Name()}
	fs.StringVar(&o.configPath, "config", DefaultConfig, "HCL config whose host.http_addr, host.http_token and system_id to use")
	fs.StringVar(&o.httpURL, "http", "", "the host's HTTP API, e.g. http://127.0.0.1:7780 (default: host.http_addr of -config)")
	fs.StringVar(&o.token, "token", "", "bearer token for the HTTP API (default: $"+TokenEnv+", else host.http_token of -config)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token, mode 0600 (default: $"+TokenFileEnv+", else host.http_token_file of -config)")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "with an https API: PEM file of the CA (or the certificate) to trust besides the system's (default: $"+TLSCAEnv+"; with -config, its http_tls cert_file)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "with an https API that requires client certificates: the client certificate (PEM)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the key (PEM) of -tls-cert")
	fs.StringVar(&o.amqpURL, "amqp", "", "send over AMQP through this broker (amqp://user:pass@host:5672/vhost) instead of HTTP")
	fs.StringVar(&o.amqpTLS.CAFile, "amqp-ca", "", "with -amqp amqps://…: PEM file of the CA the broker's certificate must chain to (default: the system's)")
	fs.StringVar(&o.amqpTLS.CertFile, "amqp-cert", "", "with -amqp amqps://…: PEM client certificate to present to the broker (with -amqp-key)")
	fs.StringVar(&o.amqpTLS.KeyFile, "amqp-key", "", "with -amqp amqps://…: PEM private key of -amqp-cert")
	fs.StringVar(&o.amqpTLS.ServerName, "amqp-server-name", "", "with -amqp amqps://…: the name the broker's certificate must be valid for (default: the URL's host)")
	fs.StringVar(&o.host, "host", "", "with -amqp: the host to ask, by its host name")
	fs.BoolVar(&o.all, "all", false, "with -amqp: ask every host, and print every reply that comes within -timeout")
	fs.BoolVar(&o.any, "any", false, "with -amqp: ask whichever host takes the message first (the shared queue)")
	fs.StringVar(&o.systemID, "system-id", "", "with -amqp: the system_id of the hosts (default: system_id of -config)")
	fs.StringVar(&o.keyFile, "key", "", "sign the request with this private key file (Ed25519 PEM from `dynworkers keygen`, or an HMAC secret file); mode 0600")
	fs.StringVar(&o.keyID, "key-id", "", "with -key: the key id the host knows the key by (default: the key file's name without .key, e.g. ops for keys/ops.key)")
	fs.DurationVar(&o.timeout, "timeout", 0, "how long to wait for the answer (default 60s; with -all, how long to gather replies: 5s)")
	return o
}

// check reports a usage error in the client flags, or "".
func (o *clientOptions) check() string {
	targets := 0
	for _, set := range []bool{o.host != "", o.all, o.any} {
		if set {
			targets++
		}
	}
	switch {
	case o.timeout < 0:
		return "-timeout must not be negative"
	case o.amqpURL == "" && (targets > 0 || o.systemID != ""):
		return "-host, -all, -any and -system-id go with -amqp URL"
	case o.amqpURL != "" && (o.httpURL != "" || o.token != "" || o.tokenFile != "" || o.tlsCA != "" || o.tlsCert != ""):
		return "-http, -token, -token-file and -tls-* are for the HTTP API: drop them, or drop -amqp"
	case o.token != "" && o.tokenFile != "":
		return "give -token or -token-file, not both"
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return "-tls-cert and -tls-key go together"
	case o.amqpTLS != (config.AMQPTLS{}) && !strings.HasPrefix(strings.ToLower(o.amqpURL), "amqps://"):
		return "-amqp-ca, -amqp-cert, -amqp-key and -amqp-server-name go with -amqp amqps://URL"
	case o.amqpURL != "" && targets != 1:
		return "-amqp needs exactly one of -host NAME, -all or -any"
	case o.keyID != "" && o.keyFile == "":
		return "-key-id goes with -key FILE"
	}
	if o.keyFile != "" && o.signer == nil {
		id := o.keyID
		if id == "" {
			id = strings.TrimSuffix(filepath.Base(o.keyFile), ".key")
		}
		s, err := auth.LoadSigner(o.keyFile, id)
		if err != nil {
			return fmt.Sprintf("-key: %v", err)
		}
		o.signer = s
	}
	return ""
}

func (o *clientOptions) wait() time.Duration {
	switch {
	case o.timeout > 0:
		return o.timeout
	case o.all:
		return defaultAllTimeout
	}
	return defaultTimeout
}

// config returns the parsed -config file, or nil and the reason when it
// cannot be read. Only what Parse reads is used (no plugin scan).
func (o *clientOptions) config() (*config.File, string) {
	if !o.fileLoaded {
		o.fileLoaded = true
		o.file, o.fileProblem = loadClientConfig(o.configPath)
	}
	return o.file, o.fileProblem
}

// loadClientConfig parses a config for the client commands. A file with
// errors elsewhere (say, in a worker block) still gives its host block.
func loadClientConfig(path string) (*config.File, string) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, "does not exist"
	}
	f, diags := config.Parse(path)
	if f == nil {
		reason := "cannot be read"
		if len(diags) > 0 {
			reason = "cannot be read: " + strings.TrimSuffix(diags[0].Detail, ".")
		}
		return nil, reason
	}
	return f, ""
}

// call is one request, in the shape of each transport.
type call struct {
	method, path string // the HTTP route
	body         []byte // the HTTP body, nil for none
	message      []byte // the control message body for AMQP
}

// clientReply is a control.Reply as read back: the result stays JSON.
type clientReply struct {
	OK        bool            `json:"ok"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *control.Error  `json:"error,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
}

// answer is one reply, from one host.
type answer struct {
	host  string // the replying host, when the reply says
	reply clientReply
	raw   []byte // the reply body as received
}

// do sends c to the target the flags name and returns the answers. When no
// host answers it prints why to stderr and returns exitUnreachable.
func (o *clientOptions) do(c call, stderr io.Writer) ([]answer, int) {
	answers, err := o.fetch(context.Background(), c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers %s: %v\n", o.cmd, err)
		return nil, exitUnreachable
	}
	return answers, exitOK
}

// fetch sends c to the target the flags name and returns the answers,
// sorted by host, or why none came. Notes (such as a -config that cannot
// be read) go to notes.
func (o *clientOptions) fetch(ctx context.Context, c call, notes io.Writer) ([]answer, error) {
	var answers []answer
	var err error
	if o.amqpURL != "" {
		answers, err = o.doAMQP(ctx, c.message, notes)
	} else {
		var a answer
		a, err = o.doHTTP(ctx, c, notes)
		answers = []answer{a}
	}
	if err != nil {
		return nil, err
	}
	sort.SliceStable(answers, func(i, j int) bool { return answers[i].host < answers[j].host })
	return answers, nil
}

// httpTarget returns the API's base URL and a note on where it comes from.
func (o *clientOptions) httpTarget(stderr io.Writer) (string, string, error) {
	if o.httpURL != "" {
		base, err := baseURL(o.httpURL)
		return base, "-http " + o.httpURL, err
	}
	addr := config.DefaultHTTPAddr
	var from string
	if f, reason := o.config(); f != nil {
		addr = f.Host.HTTPAddr
		from = fmt.Sprintf("http_addr %s from %s", addr, o.configPath)
	} else {
		fmt.Fprintf(stderr, "dynworkers %s: note: %s %s; trying %s (set -config or -http)\n", o.cmd, o.configPath, reason, addr)
		from = fmt.Sprintf("the default http_addr %s; %s %s", addr, o.configPath, reason)
	}
	target := dialable(addr)
	if tlsOn, _ := o.configTLS(); tlsOn {
		target = "https://" + target
	}
	base, err := baseURL(target)
	return base, from, err
}

// dialable turns a listen address into one to connect to: a wildcard host
// ("", 0.0.0.0, ::) means this machine.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// baseURL checks an API address, host:port or an http(s) URL.
func baseURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not the address of an HTTP API: use host:port or http://host:port", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func (o *clientOptions) doHTTP(ctx context.Context, c call, stderr io.Writer) (answer, error) {
	base, from, err := o.httpTarget(stderr)
	if err != nil {
		return answer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.wait())
	defer cancel()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, body)
	if err != nil {
		return answer{}, fmt.Errorf("building the request: %w", err)
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dynworkers-cli/"+Version)
	tok, err := o.httpToken()
	if err != nil {
		return answer{}, err
	}
	setAPIHeaders(req, tok)
	if o.signer != nil {
		o.signer.Sign(auth.HTTPScope(req.Method, req.URL.RequestURI()), c.body, time.Now()).SetHTTP(req.Header)
	}
	client, err := o.httpClient()
	if err != nil {
		return answer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return answer{}, fmt.Errorf("cannot reach the host at %s: connection refused\n  is `dynworkers serve` running? (%s)", base, from)
		case errors.Is(err, context.DeadlineExceeded):
			return answer{}, fmt.Errorf("no answer from the host at %s within %s (-timeout waits longer)", base, o.wait())
		}
		return answer{}, fmt.Errorf("cannot reach the host at %s (%s): %w", base, from, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer of %s: %w", base, err)
	}
	rep, ok := parseReply(raw)
	if !ok {
		return answer{}, fmt.Errorf("unexpected answer from %s: HTTP %s, not a control reply: is %s the dynworkers HTTP API?", base, resp.Status, base)
	}
	return answer{reply: rep, raw: raw}, nil
}

// parseReply reads a control reply: a JSON object with "ok", and an error
// when not ok.
func parseReply(raw []byte) (clientReply, bool) {
	var probe struct {
		OK *bool `json:"ok"`
	}
	var rep clientReply
	if json.Unmarshal(raw, &probe) != nil || probe.OK == nil || json.Unmarshal(raw, &rep) != nil {
		return clientReply{}, false
	}
	if !rep.OK && rep.Error == nil {
		rep.Error = control.Errorf(control.CodeInternal, "the host failed without saying why")
	}
	return rep, true
}

// report prints every answer, each ok result with ok and each error to
// stderr with the hint that hint returns (if any). It returns exitOK when
// every answer is ok, else exitHostError.
func (o *clientOptions) report(answers []answer, stdout, stderr io.Writer,
	ok func(w io.Writer, prefix string, a answer), hint func(*control.Error) string) int {
	rc := exitOK
	for _, a := range answers {
		prefix := ""
		if o.all && a.host != "" {
			prefix = "[" + a.host + "] "
		}
		if a.reply.OK {
			ok(stdout, prefix, a)
			continue
		}
		rc = exitHostError
		printError(stderr, "dynworkers "+o.cmd+": "+prefix, a.reply.Error)
		if a.reply.Error.Code == control.CodeUnauthorized && o.amqpURL == "" {
			fmt.Fprintf(stderr, "  hint: pass -token or -token-file, set $%s or $%s, or host.http_token_file in -config\n", TokenEnv, TokenFileEnv)
		} else if hint != nil {
			if h := hint(a.reply.Error); h != "" {
				fmt.Fprintf(stderr, "  hint: %s\n", h)
			}
		}
	}
	return rc
}

// printError prints a control error: its code and message, then one line
// per detail.
func printError(w io.Writer, prefix string, e *control.Error) {
	fmt.Fprintf(w, "%s%s: %s\n", prefix, e.Code, e.Message)
	for _, d := range e.Details {
		line := d.Summary
		if d.Attribute != "" && !strings.Contains(line, d.Attribute) {
			line = d.Attribute + ": " + line
		}
		if d.Detail != "" && d.Detail != d.Summary {
			line += ": " + d.Detail
		}
		fmt.Fprintf(w, "  - %s\n", line)
	}
}

// printJSON prints raw JSON indented, or as it is when it cannot be.
func printJSON(w io.Writer, raw []byte) {
	var buf bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("null")
	}
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		w.Write(raw)
		fmt.Fprintln(w)
		return
	}
	buf.WriteByte('\n')
	w.Write(buf.Bytes())
}

// parseArgs parses flags and positional arguments in any order ("start
// NAME -class C" as well as "start -class C NAME"): Go's flag package stops
// at the first positional argument, so parsing resumes after each one.
// Everything after "--" is positional. It returns the positional arguments,
// and the exit status to use when the command must not go on (-h, a bad
// flag, too few or too many arguments), else -1.
func parseArgs(fs *flag.FlagSet, args []string, names string, minArgs, maxArgs int) ([]string, int) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK
			}
			return nil, exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	pos = append(pos, tail...)
	switch {
	case len(pos) < minArgs:
		fmt.Fprintf(fs.Output(), "dynworkers %s: missing %s\n", fs.Name(), names)
	case len(pos) > maxArgs:
		fmt.Fprintf(fs.Output(), "dynworkers %s: unexpected argument %q\n", fs.Name(), pos[maxArgs])
	default:
		return pos, -1
	}
	fs.Usage()
	return nil, exitUsage
}

// usageError prints a usage error for cmd and returns exitUsage.
func usageError(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "dynworkers %s: %s\n", cmd, fmt.Sprintf(format, args...))
	fmt.Fprintf(stderr, "Run `dynworkers %s -h` for its flags.\n", cmd)
	return exitUsage
}
