package config

// OWNER: helper C1 (parsing, validation, docs). The struct is the contract.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/sdk"
)

// ClusterConfig is the top-level cluster block: the host is one of a system
// of hosts that share their desired state, membership and leader in etcd.
//
//	cluster {
//	  endpoints   = ["https://etcd-1:2379", "https://etcd-2:2379"]
//	  prefix      = "/dynworkers/global/"   # default "/dynworkers/<system_id>/"
//	  lease_ttl   = "10s"                   # default 10s, from 2s to 5m
//	  max_workers = 50                      # cluster workers this host takes; 0: no limit
//	  labels      = { zone = "a" }
//	  username      = "dynworkers"          # etcd auth, with password_file
//	  password_file = "/etc/dynworkers/etcd-password"
//	  secrets_key_file = "/etc/dynworkers/cluster.key"  # seals sensitive config values in etcd
//	  tls { ca_file = "..." cert_file = "..." key_file = "..." server_name = "..." }
//	}
type ClusterConfig struct {
	// Endpoints are the etcd client endpoints (host:port or http(s)://
	// URLs); at least one.
	Endpoints []string
	// Prefix is the key prefix of the system's state, ending in "/";
	// default "/dynworkers/<system_id>/".
	Prefix string
	// LeaseTTL is the TTL of the host's lease (default 10s): a host whose
	// lease expired is dead to the others, and a host that cannot renew it
	// stops its cluster workers before it can expire.
	LeaseTTL time.Duration
	// DialTimeout bounds each connection attempt to etcd (default 5s).
	DialTimeout time.Duration
	// MaxWorkers is how many cluster workers this host takes at most; 0
	// means no limit.
	MaxWorkers int
	// Labels describe the host for placement constraints.
	Labels map[string]string
	// Username and Password authenticate to etcd (password read from
	// password_file, mode 0600; sensitive: never printed).
	Username string
	Password string
	// PasswordFile is the file the password was read from ("" without
	// auth).
	PasswordFile string
	// TLS, if set, is how the host checks etcd's certificate and proves
	// who it is (the same attributes as the amqp block's tls block).
	TLS *AMQPTLS
	// SecretsKeyFile, if set, holds the key (the format of
	// host.state_key_file: the daemon reads it with state.LoadKey) that
	// seals the sensitive attributes of cluster workers' configs in etcd.
	SecretsKeyFile string
	// Range is where the block is, for diagnostics.
	Range hcl.Range
}

// Defaults and bounds of the cluster block.
const (
	DefaultLeaseTTL    = 10 * time.Second
	MinLeaseTTL        = 2 * time.Second
	MaxLeaseTTL        = 5 * time.Minute
	DefaultDialTimeout = 5 * time.Second
	MaxDialTimeout     = time.Minute
	// MaxClusterLabels bounds the labels of a host (and, in the control
	// protocol, the constraints of a start); MaxLabelBytes each key and
	// each value.
	MaxClusterLabels = 32
	MaxLabelBytes    = 256
)

// DefaultPrefix is the key prefix of a system's cluster state when the
// cluster block sets none: "/dynworkers/<system_id>/". (The cluster
// package has its own copy, cluster.DefaultPrefix; they must agree.)
func DefaultPrefix(systemID string) string { return "/dynworkers/" + systemID + "/" }

// ClientTLS returns the crypto/tls configuration to dial etcd with: nil
// when neither the tls block nor an https:// endpoint asks for TLS, else
// one built from the tls block (the system's roots and no client
// certificate without one). Its error names the file and the setting at
// fault. The files are read at each call.
func (c *ClusterConfig) ClientTLS() (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	t := c.TLS
	if t == nil {
		if !slices.ContainsFunc(c.Endpoints, func(e string) bool { return strings.HasPrefix(strings.ToLower(e), "https://") }) {
			return nil, nil
		}
		t = &AMQPTLS{}
	}
	cfg, problems := t.load(nil)
	if cfg == nil {
		for i := range problems {
			problems[i].msg = etcdWording(problems[i].msg)
		}
		return nil, tlsErrors("cluster tls ", problems)
	}
	return cfg, nil
}

// SameSettings reports whether c and o are the same settings (both nil, or
// equal but for where the block is: Range): a reload compares them to say
// that the block changed and applies at the next start.
func (c *ClusterConfig) SameSettings(o *ClusterConfig) bool {
	if c == nil || o == nil {
		return c == nil && o == nil
	}
	a, b := *c, *o
	a.Range, b.Range = hcl.Range{}, hcl.Range{}
	return reflect.DeepEqual(a, b)
}

// Redacted returns a copy whose Password is RedactedValue (when set), fit
// to be printed.
func (c *ClusterConfig) Redacted() ClusterConfig {
	r := *c
	if r.Password != "" {
		r.Password = RedactedValue
	}
	return r
}

// String returns a printable summary; it never holds the password.
func (c *ClusterConfig) String() string {
	if c == nil {
		return "<no cluster>"
	}
	return fmt.Sprintf("cluster{endpoints=%v prefix=%s lease_ttl=%s dial_timeout=%s max_workers=%d labels=%v username=%q password=%s tls=%v secrets_key_file=%q}",
		c.Endpoints, c.Prefix, c.LeaseTTL, c.DialTimeout, c.MaxWorkers, c.Labels, c.Username,
		c.Redacted().Password, c.TLS != nil, c.SecretsKeyFile)
}

// GoString is String, for %#v.
func (c *ClusterConfig) GoString() string { return c.String() }

// MarshalJSON writes the block with the password redacted.
func (c *ClusterConfig) MarshalJSON() ([]byte, error) {
	r := c.Redacted()
	return json.Marshal(struct {
		Endpoints      []string          `json:"endpoints"`
		Prefix         string            `json:"prefix"`
		LeaseTTL       string            `json:"lease_ttl"`
		DialTimeout    string            `json:"dial_timeout"`
		MaxWorkers     int               `json:"max_workers"`
		Labels         map[string]string `json:"labels,omitempty"`
		Username       string            `json:"username,omitempty"`
		Password       string            `json:"password,omitempty"`
		TLS            *AMQPTLS          `json:"tls,omitempty"`
		SecretsKeyFile string            `json:"secrets_key_file,omitempty"`
	}{r.Endpoints, r.Prefix, r.LeaseTTL.String(), r.DialTimeout.String(), r.MaxWorkers, r.Labels,
		r.Username, r.Password, r.TLS, r.SecretsKeyFile})
}

var clusterSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "endpoints", Required: true},
		{Name: "prefix"},
		{Name: "lease_ttl"},
		{Name: "dial_timeout"},
		{Name: "max_workers"},
		{Name: "labels"},
		{Name: "username"},
		{Name: "password_file"},
		{Name: "secrets_key_file"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
}

// maxPasswordFileSize bounds password_file.
const maxPasswordFileSize = 4096

// decodeCluster decodes the cluster block. The block is kept only when it
// has no error; the prefix is defaulted by Parse once system_id is known.
func (m *merger) decodeCluster(sc *scope, b *hcl.Block) {
	content, d := b.Body.Content(clusterSchema)
	for _, diag := range d {
		if diag.Summary == "Missing required argument" {
			diag.Subject = b.DefRange.Ptr()
			diag.Detail = "The cluster block needs endpoints: the etcd client endpoints, such as [\"127.0.0.1:2379\"] or [\"https://etcd-1:2379\", \"https://etcd-2:2379\"]."
		}
	}
	resuggest(d, schemaNames(clusterSchema), content.Attributes)
	sc.add(d...)
	ok := !d.HasErrors()
	attrs := content.Attributes
	c := &ClusterConfig{LeaseTTL: DefaultLeaseTTL, DialTimeout: DefaultDialTimeout, Range: b.DefRange}
	fail := func(r hcl.Range, summary, format string, args ...any) {
		sc.errorf(r, summary, format, args...)
		ok = false
	}

	var schemes []string
	if attr := attrs["endpoints"]; attr != nil {
		eps, good := stringList(sc, attr, func(string) string { return "" })
		switch {
		case !good:
			ok = false
		case len(eps) == 0:
			fail(attr.Expr.Range(), "Invalid etcd endpoints", "The argument \"endpoints\" must list at least one etcd endpoint, such as \"127.0.0.1:2379\" or \"https://etcd-1:2379\".")
		}
		seen := map[string]bool{}
		for i, e := range eps {
			scheme, problem := checkEndpoint(e)
			switch {
			case problem != "":
				fail(attr.Expr.Range(), "Invalid etcd endpoint", "Element %d of endpoints, %s, %s.", i, quoteValue(e), problem)
				continue
			case seen[e]:
				fail(attr.Expr.Range(), "Invalid etcd endpoint", "Element %d of endpoints, %q, is listed twice.", i, e)
				continue
			}
			seen[e] = true
			if scheme != "" && !slices.Contains(schemes, scheme) {
				schemes = append(schemes, scheme)
			}
		}
		if len(schemes) > 1 {
			fail(attr.Expr.Range(), "Invalid etcd endpoints", "The endpoints mix http:// and https://: a host talks to etcd with TLS or without it, not both; use https:// (or host:port with a tls block) for all of them.")
		}
		c.Endpoints = eps
	}

	if attr := attrs["prefix"]; attr != nil {
		var p string
		if sc.str(attr, &p) {
			if problem := checkPrefix(p); problem != "" {
				fail(attr.Expr.Range(), "Invalid prefix", "The argument \"prefix\" %s.", problem)
			} else {
				c.Prefix = p
			}
		} else {
			ok = false
		}
	}

	if attr := attrs["lease_ttl"]; attr != nil {
		v := time.Duration(0)
		sc.duration(attr, &v)
		switch {
		case v == 0:
			ok = false // reported
		case v < MinLeaseTTL || v > MaxLeaseTTL:
			fail(attr.Expr.Range(), "Invalid lease TTL", "The argument \"lease_ttl\" must be from %s to %s, not %s: a host that cannot reach etcd for that long is taken for dead and its workers are started elsewhere.", shortDuration(MinLeaseTTL), shortDuration(MaxLeaseTTL), shortDuration(v))
		case v%time.Second != 0:
			fail(attr.Expr.Range(), "Invalid lease TTL", "The argument \"lease_ttl\" must be a whole number of seconds (etcd leases count in seconds), not %s.", shortDuration(v))
		default:
			c.LeaseTTL = v
		}
	}
	if attr := attrs["dial_timeout"]; attr != nil {
		v := time.Duration(0)
		sc.duration(attr, &v)
		switch {
		case v == 0:
			ok = false
		case v > MaxDialTimeout:
			fail(attr.Expr.Range(), "Invalid dial timeout", "The argument \"dial_timeout\" must be at most %s, not %s.", shortDuration(MaxDialTimeout), shortDuration(v))
		default:
			c.DialTimeout = v
		}
	}
	if attr := attrs["max_workers"]; attr != nil {
		n := -1
		sc.wholeNumber(attr, &n)
		if n < 0 {
			ok = false
		} else {
			c.MaxWorkers = n
		}
	}
	if attr := attrs["labels"]; attr != nil {
		if labels, good := decodeLabels(sc, attr); good {
			c.Labels = labels
		} else {
			ok = false
		}
	}

	user, pass := attrs["username"], attrs["password_file"]
	switch {
	case user != nil && pass == nil:
		fail(user.NameRange, "Incomplete etcd authentication", "The cluster block sets username without password_file: give the file holding the etcd user's password (mode 0600) too, or remove username.")
	case user == nil && pass != nil:
		fail(pass.NameRange, "Incomplete etcd authentication", "The cluster block sets password_file without username: name the etcd user too, or remove password_file.")
	}
	if user != nil {
		var u string
		if sc.str(user, &u) {
			if u == "" || strings.IndexFunc(u, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 || !utf8.ValidString(u) || len(u) > maxNameLen {
				fail(user.Expr.Range(), "Invalid etcd user name", "The argument \"username\" must be an etcd user name: not empty, at most %d bytes, without white space or control characters.", maxNameLen)
			} else {
				c.Username = u
			}
		} else {
			ok = false
		}
	}
	if pass != nil {
		var p string
		switch {
		case !sc.str(pass, &p):
			ok = false
		case p == "":
			fail(pass.Expr.Range(), "Invalid password file", "The argument \"password_file\" must not be empty.")
		default:
			path := resolvePath(sc.dir, p)
			if pw, problem := readPasswordFile(path); problem != "" {
				fail(pass.Expr.Range(), "Invalid password file", "%s", problem)
			} else {
				c.Password, c.PasswordFile = pw, path
			}
		}
	}
	if attr := attrs["secrets_key_file"]; attr != nil {
		var p string
		switch {
		case !sc.str(attr, &p):
			ok = false
		case p == "":
			fail(attr.Expr.Range(), "Invalid secrets key file", "The argument \"secrets_key_file\" must not be empty: name a file of 32 random bytes (for example made with `head -c 32 /dev/urandom > cluster.key; chmod 600 cluster.key`), or remove the argument to store sensitive values in etcd as they are.")
		default:
			path := resolvePath(sc.dir, p)
			if problem := checkSecretsKeyFile(path); problem != "" {
				fail(attr.Expr.Range(), "Invalid secrets key file", "%s", problem)
			} else {
				c.SecretsKeyFile = path
			}
		}
	}

	var tb *hcl.Block
	for _, blk := range content.Blocks {
		if tb != nil {
			fail(blk.DefRange, "Duplicate tls block", "Only one \"tls\" block is allowed in the cluster block; the first is at %s.", position(tb.DefRange))
			continue
		}
		tb = blk
	}
	if tb != nil {
		if slices.Contains(schemes, "http") {
			fail(tb.DefRange, "TLS needs https:// endpoints",
				"The cluster block has a tls block but its endpoints start with \"http://\", which does not use TLS: write them as \"https://host:port\" or \"host:port\", or remove the tls block.")
		}
		t, good := decodeClusterTLS(sc, tb)
		if !good {
			ok = false
		}
		c.TLS = t
	}
	if ok {
		m.f.Cluster = c
	}
}

// finishCluster completes the cluster block once every file is merged:
// the default prefix needs the system_id, and the host name must not end
// in ".any" or ".all", since the control channel takes a start whose
// routing key ends so for a system-wide one (a cluster start).
func (m *merger) finishCluster() {
	c := m.f.Cluster
	if c == nil {
		return
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix(m.f.SystemID)
	}
	if name := m.f.Host.Name; strings.HasSuffix(name, ".any") || strings.HasSuffix(name, ".all") {
		*m.diags = append(*m.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid host name for a cluster",
			Detail: fmt.Sprintf("The host name %q ends in %q: on a host with a cluster block, a control message whose routing key ends in \".any\" or \".all\" is a start for the whole system, so this host's own key would be taken for one. Rename the host (host { name = ... }).",
				name, name[len(name)-4:]),
			Subject: c.Range.Ptr(),
		})
		m.f.Cluster = nil
	}
}

// schemaNames lists the attributes of s as an sdk.Schema, for resuggest.
func schemaNames(s *hcl.BodySchema) sdk.Schema {
	var out sdk.Schema
	for _, a := range s.Attributes {
		out = append(out, sdk.Attribute{Name: a.Name})
	}
	return out
}

// checkEndpoint returns the scheme of an endpoint ("http", "https" or ""
// for host:port), or why it is not one.
func checkEndpoint(e string) (string, string) {
	if e == "" {
		return "", "is empty"
	}
	if strings.IndexFunc(e, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", "contains white space or control characters"
	}
	hostPort, scheme := e, ""
	if i := strings.Index(e, "://"); i >= 0 {
		u, err := url.Parse(e)
		switch {
		case err != nil:
			return "", "cannot be parsed as a URL"
		case u.Scheme != "http" && u.Scheme != "https":
			return "", "must be host:port or start with \"http://\" or \"https://\""
		case u.User != nil:
			return "", "must not hold a user name or password: set username and password_file instead"
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
			return "", "must be scheme://host:port, without a path or query"
		}
		hostPort, scheme = u.Host, u.Scheme
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" {
		return "", "is not host:port (such as \"127.0.0.1:2379\" or \"https://etcd-1:2379\"): give the host and the port"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "has no valid port (1 to 65535)"
	}
	return scheme, ""
}

// quoteValue quotes a value from the configuration for a message, cut
// short.
func quoteValue(s string) string {
	if len(s) > 100 {
		return strconv.Quote(s[:100]) + "..."
	}
	return strconv.Quote(s)
}

// checkPrefix returns why p cannot be a key prefix, or "".
func checkPrefix(p string) string {
	switch {
	case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || len(p) < 2:
		return fmt.Sprintf("must start and end with \"/\", such as %q, not %s", DefaultPrefix("global"), quoteValue(p))
	case !utf8.ValidString(p):
		return "must be UTF-8 text"
	case strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "must not contain white space or control characters"
	case strings.Contains(p, "//"):
		return "must not contain an empty segment (\"//\")"
	case len(p) > 512:
		return "must be at most 512 bytes long"
	}
	return ""
}

// CheckLabelKey returns why k cannot be a label key, or nil: 1 to
// MaxLabelBytes of letters, digits, "_", "." and "-".
func CheckLabelKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("a label key must not be empty")
	case len(k) > MaxLabelBytes:
		return fmt.Errorf("a label key must be at most %d bytes long", MaxLabelBytes)
	}
	for _, r := range k {
		if !(r < utf8.RuneSelf && (r == '_' || r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return fmt.Errorf("a label key may hold only ASCII letters, digits, \"_\", \".\" and \"-\"")
		}
	}
	return nil
}

// CheckLabelValue returns why v cannot be a label value, or nil: 1 to
// MaxLabelBytes of UTF-8 without control characters.
func CheckLabelValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("a label value must not be empty")
	case len(v) > MaxLabelBytes:
		return fmt.Errorf("a label value must be at most %d bytes long", MaxLabelBytes)
	case !utf8.ValidString(v):
		return fmt.Errorf("a label value must be UTF-8 text")
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("a label value must not contain control characters")
	}
	return nil
}

func decodeLabels(sc *scope, attr *hcl.Attribute) (map[string]string, bool) {
	v, ok := sc.value(attr, cty.Map(cty.String))
	if !ok {
		return nil, false
	}
	if v.LengthInt() > MaxClusterLabels {
		sc.errorf(attr.Expr.Range(), "Invalid labels", "The argument \"labels\" holds %d labels: at most %d are allowed.", v.LengthInt(), MaxClusterLabels)
		return nil, false
	}
	labels := map[string]string{}
	good := true
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := k.AsString()
		if err := CheckLabelKey(key); err != nil {
			sc.errorf(attr.Expr.Range(), "Invalid label", "The label %s: %v.", quoteValue(key), err)
			good = false
			continue
		}
		if ev.IsNull() {
			sc.errorf(attr.Expr.Range(), "Invalid label", "The label %q is null: give it a value.", key)
			good = false
			continue
		}
		if err := CheckLabelValue(ev.AsString()); err != nil {
			sc.errorf(attr.Expr.Range(), "Invalid label", "The value of label %q: %v.", key, err)
			good = false
			continue
		}
		labels[key] = ev.AsString()
	}
	return labels, good
}

// secretFileProblem checks a file that holds a secret: it must be a
// regular file that group and others cannot access. It returns why not,
// as a sentence, or "". what names the file ("password file").
func secretFileProblem(path, what string) string {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Sprintf("Cannot read the %s: %v.", what, err)
	case !st.Mode().IsRegular():
		return fmt.Sprintf("The %s %s is not a regular file.", what, path)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Sprintf("The %s %s is accessible to its group or to others (mode %04o): it holds a secret; run `chmod 600 %s`.",
			what, path, st.Mode().Perm(), path)
	}
	return ""
}

// readPasswordFile reads a password_file: the password is its content
// without the trailing line break. The message never holds the password.
func readPasswordFile(path string) (string, string) {
	if problem := secretFileProblem(path, "password file"); problem != "" {
		return "", problem
	}
	b, err := readAtMost(path, maxPasswordFileSize+1)
	switch {
	case err != nil:
		return "", fmt.Sprintf("Cannot read the password file: %v.", unwrapPathError(err))
	case len(b) > maxPasswordFileSize:
		return "", fmt.Sprintf("The password file %s is larger than %d bytes: it must hold the password alone.", path, maxPasswordFileSize)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	switch {
	case pw == "":
		return "", fmt.Sprintf("The password file %s is empty.", path)
	case strings.ContainsAny(pw, "\r\n"):
		return "", fmt.Sprintf("The password file %s must hold the password on one line.", path)
	}
	return pw, ""
}

// readAtMost reads at most n bytes of the file at path.
func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// checkSecretsKeyFile checks a secrets_key_file: private, and holding a
// key state.LoadKey reads (32 bytes, raw or as 64 hex digits).
func checkSecretsKeyFile(path string) string {
	if problem := secretFileProblem(path, "secrets key file"); problem != "" {
		return problem
	}
	if _, err := state.LoadKey(path); err != nil {
		return upperFirst(strings.Replace(err.Error(), "state_key_file", "secrets key file", 1)) + "."
	}
	return ""
}

// decodeClusterTLS decodes the cluster block's tls block: the attributes
// of the amqp block's, checked the same way (insecure_skip_verify is
// refused).
func decodeClusterTLS(sc *scope, tb *hcl.Block) (*AMQPTLS, bool) {
	content, d := tb.Body.Content(amqpTLSSchema)
	resuggest(d, schemaNames(amqpTLSSchema), content.Attributes)
	sc.add(d...)
	ok := !d.HasErrors()
	attrs := content.Attributes
	if attr := attrs["insecure_skip_verify"]; attr != nil {
		sc.errorf(attr.NameRange, "Unsupported argument",
			"The host always verifies etcd's certificate and name: insecure_skip_verify is not supported. Give the CA that signed etcd's certificate with ca_file, and the name in that certificate with server_name if it is not the endpoint's host.")
		ok = false
	}
	t := &AMQPTLS{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}} {
		attr := attrs[f.name]
		if attr == nil {
			continue
		}
		var p string
		switch {
		case !sc.str(attr, &p):
			ok = false
		case p == "":
			sc.errorf(attr.Expr.Range(), "Invalid file name", "The argument %q must not be empty; remove it instead.", f.name)
			ok = false
		default:
			*f.dst = resolvePath(sc.dir, p)
		}
	}
	if attr := attrs["server_name"]; attr != nil {
		if !sc.str(attr, &t.ServerName) {
			ok = false
		} else if t.ServerName == "" {
			sc.errorf(attr.Expr.Range(), "Invalid server name", "The argument \"server_name\" must not be empty; remove it to check each endpoint's host.")
			ok = false
		}
	}
	if !ok {
		return nil, false
	}
	_, problems := t.load(nil)
	for _, p := range problems {
		r := tb.DefRange
		if attr := attrs[p.attr]; attr != nil {
			r = attr.Expr.Range()
		}
		sc.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unusable cluster TLS setting", Detail: upperFirst(etcdWording(p.msg)) + ".", Subject: r.Ptr()})
	}
	if len(problems) > 0 {
		return nil, false
	}
	return t, true
}

// etcdWording rewrites a message of the amqp tls block's checks for the
// cluster block's.
func etcdWording(msg string) string { return strings.ReplaceAll(msg, "the broker's", "etcd's") }

// shortDuration formats d as time.Duration does, without the zero units
// it ends with ("5m" rather than "5m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
