package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/hcl/v2"
)

var hostSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "name"},
		{Name: "plugin_dir"},
		{Name: "state_dir"},
		{Name: "exec_dir"},
		{Name: "http_addr"},
		{Name: "log_level"},
		{Name: "start_concurrency"},
		{Name: "http_token"},
		{Name: "warm_spares"},
		{Name: "metrics_interval"},
		{Name: "heartbeat_interval"},
		{Name: "http_token_file"},    // config/http.go
		{Name: "http_allowed_hosts"}, // config/http.go
		{Name: "plugin_log_rate"},
		{Name: "plugin_log_lines"},
		{Name: "plugin_log_line_max"},
		{Name: "state_key_file"},
		{Name: "plugin_lock"},
		{Name: "plugin_env"},
		{Name: "log_lines"}, // worklog.go
	},
	Blocks: append([]hcl.BlockHeaderSchema{{Type: "limits"}, {Type: "log_files"}, {Type: "bus"}}, hostHTTPBlocks...), // limits_worker.go, worklog.go, bus.go, http.go
}

var amqpSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "url", Required: true}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "tls"}}, // amqp_tls.go
}

func (m *merger) decodeHost(sc *scope, b *hcl.Block) {
	content, d := b.Body.Content(hostSchema)
	sc.add(d...)
	attrs := content.Attributes
	h := &m.f.Host

	var name string
	if attr := attrs["name"]; sc.str(attr, &name) {
		if err := ValidateHostName(name); err != nil {
			sc.errorf(attr.Expr.Range(), "Invalid host name", "%s.", upperFirst(err.Error()))
		} else {
			h.Name = name
		}
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"plugin_dir", &h.PluginDir}, {"state_dir", &h.StateDir}, {"exec_dir", &h.ExecDir}} {
		var dir string
		if attr := attrs[p.name]; sc.str(attr, &dir) {
			if dir == "" {
				sc.errorf(attr.Expr.Range(), "Invalid directory", "The argument %q must not be empty.", p.name)
				continue
			}
			*p.dst = resolvePath(sc.dir, dir)
		}
	}
	var addr string
	if attr := attrs["http_addr"]; sc.str(attr, &addr) {
		if !validAddr(addr) {
			sc.errorf(attr.Expr.Range(), "Invalid address",
				"%q is not a listen address: use host:port, such as %q or \":7780\".", addr, DefaultHTTPAddr)
		} else {
			h.HTTPAddr = addr
		}
	}
	sc.enum(attrs["log_level"], "log level", LogLevels, &h.LogLevel)
	if attr := attrs["http_token"]; attr != nil {
		// The token is a secret: no diagnostic repeats it.
		m.secretScopes = append(m.secretScopes, secretScope{attrs: []*hcl.Attribute{attr}, ctx: sc.ctx})
		var tok string
		if sc.str(attr, &tok) {
			if len(tok) < minTokenLen {
				sc.errorf(attr.Expr.Range(), "Invalid HTTP token", "The http_token must be at least %d characters long.", minTokenLen)
			} else {
				h.HTTPToken = tok
			}
		}
	}
	m.decodeHTTP(sc, content, h)
	if attrs["http_token"] == nil && attrs["http_token_file"] == nil && !loopbackAddr(h.HTTPAddr) {
		r := b.DefRange
		if attr := attrs["http_addr"]; attr != nil {
			r = attr.Expr.Range()
		}
		sc.errorf(r, "HTTP token required",
			"The HTTP API listens on %s, beyond the loopback interface: set http_token_file (a file of mode 0600 holding the token) or http_token (for example http_token = env(\"DYNWORKERS_HTTP_TOKEN\")), which every call but /healthz must then present.", h.HTTPAddr)
	}
	if attr := attrs["warm_spares"]; attr != nil {
		n := h.WarmSpares
		sc.wholeNumber(attr, &n)
		if n > maxWarmSpares {
			sc.errorf(attr.Expr.Range(), "Invalid value", "The argument \"warm_spares\" must be a whole number from 0 to %d.", maxWarmSpares)
		} else {
			h.WarmSpares = n
		}
	}
	m.decodePluginLog(sc, attrs)
	m.decodeStateKey(sc, attrs)
	m.decodePluginTrust(sc, attrs, h)
	decodeHostLimits(sc, content.Blocks, &h.WorkerLimits) // limits_worker.go
	m.decodeWorkerLogs(sc, attrs, content.Blocks)         // worklog.go
	m.decodeBus(sc, content.Blocks)                       // bus.go
	sc.duration(attrs["metrics_interval"], &h.MetricsInterval)
	sc.duration(attrs["heartbeat_interval"], &h.HeartbeatInterval)
	if attr := attrs["start_concurrency"]; attr != nil {
		n := h.StartConcurrency
		sc.wholeNumber(attr, &n)
		if n < 1 || n > maxStartConcurrency {
			sc.errorf(attr.Expr.Range(), "Invalid value", "The argument \"start_concurrency\" must be a whole number from 1 to %d.", maxStartConcurrency)
		} else {
			h.StartConcurrency = n
		}
	}
}

// minTokenLen is the shortest http_token accepted.
const minTokenLen = 16

// loopbackAddr reports whether a listen address is on the loopback
// interface only ("127.0.0.1:7780", "[::1]:7780", "localhost:7780").
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxWarmSpares bounds host.warm_spares.
const maxWarmSpares = 16

// maxStartConcurrency bounds host.start_concurrency.
const maxStartConcurrency = 256

// resolvePath joins a relative path to dir, the directory of the file that
// sets it.
func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func validAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func (m *merger) decodeAMQP(sc *scope, b *hcl.Block) {
	content, d := b.Body.Content(amqpSchema)
	for _, diag := range d {
		if diag.Summary == "Missing required argument" {
			diag.Subject = b.DefRange.Ptr()
		}
	}
	sc.add(d...)
	attr := content.Attributes["url"]
	if attr == nil {
		return
	}
	m.secretScopes = append(m.secretScopes, secretScope{attrs: []*hcl.Attribute{attr}, ctx: sc.ctx})
	var raw string
	if !sc.str(attr, &raw) {
		return
	}
	// The URL may hold a password: no message repeats it.
	if raw == "" {
		sc.errorf(attr.Expr.Range(), "Invalid AMQP URL",
			"The url must not be empty; remove the amqp block to run without a broker.")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		sc.errorf(attr.Expr.Range(), "Invalid AMQP URL", "The url cannot be parsed as a URL.")
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		sc.errorf(attr.Expr.Range(), "Invalid AMQP URL",
			"The url must start with \"amqp://\" or \"amqps://\", such as \"amqp://guest:guest@127.0.0.1:5672/\".")
	case u.Host == "":
		sc.errorf(attr.Expr.Range(), "Invalid AMQP URL", "The url has no host.")
	default:
		m.f.AMQP = &AMQPConfig{URL: raw, TLS: decodeAMQPTLS(sc, content.Blocks, attr, u)}
	}
}
