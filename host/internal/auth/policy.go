package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Operation names, as in control messages; "*" allows them all.
const (
	OpStartWorker     = "vumi_worker"
	OpStartAlias      = "start_worker" // an alias of vumi_worker
	OpStopWorker      = "stop_worker"
	OpRestartWorker   = "restart_worker"
	OpStatus          = "status"
	OpListClasses     = "list_classes"
	OpReload          = "reload"
	OpStartSupervisor = "start_supervisor"
	OpStopSupervisor  = "stop_supervisor"
	// The operations of cluster mode: drain and undrain change the
	// system; cluster_status reads it, and a principal that may use
	// status may use cluster_status too.
	OpDrain         = "drain"
	OpUndrain       = "undrain"
	OpClusterStatus = "cluster_status"
	// OpLogs reads a worker's log; OpKillWorker kills a worker's process
	// (chaos drills).
	OpLogs        = "logs"
	OpKillWorker  = "kill_worker"
	AllOperations = "*"
)

// Operations lists the operation names a principal's operations may hold
// (besides "*"), canonical names first, then the alias.
var Operations = []string{OpStartWorker, OpStopWorker, OpRestartWorker, OpStatus, OpListClasses, OpReload,
	OpStartSupervisor, OpStopSupervisor, OpDrain, OpUndrain, OpClusterStatus, OpLogs, OpKillWorker, OpStartAlias}

// DefaultReplayWindow is the replay window when none is configured.
const DefaultReplayWindow = 5 * time.Minute

// DefaultNonceCache bounds the nonces remembered when no bound is
// configured.
const DefaultNonceCache = 100000

// RootPath is the path of the root supervisor.
const RootPath = "root"

// PrincipalConfig is one principal of a policy.
type PrincipalConfig struct {
	Name string
	// KeyID names the principal's key in signed requests; "" when it has
	// none.
	KeyID string
	// PublicKey (Ed25519) or Secret (HMAC-SHA256): at most one.
	PublicKey ed25519.PublicKey
	Secret    Secret
	// BrokerUsers are the RabbitMQ users its AMQP messages may come from
	// (the user_id property). A principal without a key is identified by
	// them alone; one with a key must also come from one of them, if any
	// are listed.
	BrokerUsers []string
	// Operations are the operation names it may use, or "*".
	Operations []string
	// Classes are path.Match patterns of the classes it may start, stop and
	// restart; Supervisors the subtrees ("root", "root/campaigns") it may
	// act in.
	Classes     []string
	Supervisors []string
}

// Options configure a Policy.
type Options struct {
	// Require refuses what cannot be authenticated or authorised. When
	// false, the policy is checked and its verdicts logged but nothing is
	// refused (a migration mode).
	Require bool
	// Window is the replay window: a signed request's timestamp must be
	// within it of the host's clock, either side. 0 means
	// DefaultReplayWindow.
	Window time.Duration
	// MaxNonces bounds the nonces remembered; 0 means DefaultNonceCache.
	MaxNonces int
	// NonceFile, if set, keeps the accepted nonces across restarts of the
	// host, so that a request accepted before a restart cannot be replayed
	// after it within its window. Each accepted nonce is appended and
	// synced before the request is accepted; the file is created with mode
	// 0600.
	NonceFile  string
	Principals []PrincipalConfig
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Policy authenticates and authorises control requests. It is safe for
// concurrent use.
type Policy struct {
	require  bool
	window   time.Duration
	now      func() time.Time
	byKey    map[string]*Principal
	byBroker map[string]*Principal // principals without a key
	keyed    map[string][]string   // broker user -> principals with a key that list it
	nonces   *nonceCache
}

// Principal is an authenticated identity and what it may do.
type Principal struct {
	name        string
	keyID       string
	pub         ed25519.PublicKey
	secret      Secret
	brokerUsers []string
	allOps      bool
	ops         []string
	classes     []string
	supervisors []string
}

// Name returns the principal's name.
func (p *Principal) Name() string { return p.name }

// NewPolicy checks o and returns its Policy.
func NewPolicy(o Options) (*Policy, error) {
	p := &Policy{
		require:  o.Require,
		window:   o.Window,
		now:      o.Now,
		byKey:    map[string]*Principal{},
		byBroker: map[string]*Principal{},
		keyed:    map[string][]string{},
	}
	if p.window <= 0 {
		p.window = DefaultReplayWindow
	}
	if p.now == nil {
		p.now = time.Now
	}
	n := o.MaxNonces
	if n <= 0 {
		n = DefaultNonceCache
	}
	nc, err := openNonceCache(n, o.NonceFile, p.now())
	if err != nil {
		return nil, err
	}
	p.nonces = nc
	names := map[string]bool{}
	for _, pc := range o.Principals {
		pr, err := newPrincipal(pc)
		if err != nil {
			return nil, err
		}
		if names[pc.Name] {
			return nil, fmt.Errorf("principal %q is defined twice", pc.Name)
		}
		names[pc.Name] = true
		if pr.keyID != "" {
			if other := p.byKey[pr.keyID]; other != nil {
				return nil, fmt.Errorf("principals %q and %q have the same key id %q", other.name, pr.name, pr.keyID)
			}
			p.byKey[pr.keyID] = pr
			for _, u := range pr.brokerUsers {
				p.keyed[u] = append(p.keyed[u], pr.name)
			}
			continue
		}
		for _, u := range pr.brokerUsers {
			if other := p.byBroker[u]; other != nil {
				return nil, fmt.Errorf("principals %q and %q both identify broker user %q without a key: a broker user may stand for one principal only", other.name, pr.name, u)
			}
			p.byBroker[u] = pr
		}
	}
	return p, nil
}

func newPrincipal(pc PrincipalConfig) (*Principal, error) {
	pr := &Principal{name: pc.Name, keyID: pc.KeyID, pub: pc.PublicKey, secret: pc.Secret,
		brokerUsers: slices.Clone(pc.BrokerUsers)}
	if pc.Name == "" {
		return nil, errors.New("a principal has no name")
	}
	hasKey := len(pc.PublicKey) > 0 || len(pc.Secret) > 0
	switch {
	case len(pc.PublicKey) > 0 && len(pc.Secret) > 0:
		return nil, fmt.Errorf("principal %q has both a public key and an HMAC secret: give it one", pc.Name)
	case len(pc.PublicKey) > 0 && len(pc.PublicKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("principal %q: not an Ed25519 public key", pc.Name)
	case len(pc.Secret) > 0 && len(pc.Secret) < MinSecretLen:
		return nil, fmt.Errorf("principal %q: the HMAC secret is shorter than %d bytes", pc.Name, MinSecretLen)
	case hasKey && pc.KeyID == "":
		return nil, fmt.Errorf("principal %q has a key but no key id", pc.Name)
	case !hasKey && pc.KeyID != "":
		return nil, fmt.Errorf("principal %q has a key id but no key", pc.Name)
	case !hasKey && len(pc.BrokerUsers) == 0:
		return nil, fmt.Errorf("principal %q has neither a key nor broker users: nothing could identify it", pc.Name)
	}
	if pc.KeyID != "" {
		if err := checkKeyID(pc.KeyID); err != nil {
			return nil, fmt.Errorf("principal %q: %w", pc.Name, err)
		}
	}
	for _, op := range pc.Operations {
		switch {
		case op == AllOperations:
			pr.allOps = true
		case op == OpStartAlias:
			pr.ops = append(pr.ops, OpStartWorker)
		case slices.Contains(Operations, op):
			pr.ops = append(pr.ops, op)
		default:
			return nil, fmt.Errorf("principal %q: unknown operation %q", pc.Name, op)
		}
	}
	pr.classes = slices.Clone(pc.Classes)
	if pc.Classes == nil {
		pr.classes = []string{"*"}
	}
	for _, c := range pr.classes {
		if _, err := path.Match(c, ""); err != nil {
			return nil, fmt.Errorf("principal %q: class pattern %q: %w", pc.Name, c, err)
		}
	}
	if pc.Supervisors == nil {
		pr.supervisors = []string{RootPath}
	}
	for _, s := range pc.Supervisors {
		pr.supervisors = append(pr.supervisors, CanonicalPath(s))
	}
	return pr, nil
}

// CanonicalPath writes a supervisor path from the root: "", "/" and
// "root" are "root"; "campaigns", "/campaigns/" and "root/campaigns" are
// "root/campaigns".
func CanonicalPath(p string) string {
	p = strings.Trim(p, "/")
	switch {
	case p == "" || p == RootPath:
		return RootPath
	case strings.HasPrefix(p, RootPath+"/"):
		return p
	}
	return RootPath + "/" + p
}

// Required reports whether the policy refuses what it cannot authenticate
// or authorise.
func (p *Policy) Required() bool { return p.require }

// Window returns the replay window.
func (p *Policy) Window() time.Duration { return p.window }

// Credentials are what a transport knows of a request's sender.
type Credentials struct {
	// Transport is "amqp" or "http".
	Transport string
	// BrokerUser is the AMQP message's user_id, "" if it has none.
	// RabbitMQ refuses a publish whose user_id is not the connection's
	// user, so a non-empty value is that user.
	BrokerUser string
	// Signature is what the signature headers hold (empty if none).
	Signature Signature
	// Scope is what the request was sent to (AMQPScope, HTTPScope).
	Scope string
	// Redelivered is set for an AMQP message the broker delivers again
	// after a lost connection: its nonce was seen when it was first
	// delivered, and that is not a replay.
	Redelivered bool
}

// Error is why a request is refused; Forbidden distinguishes an
// authenticated principal without the right from a sender who could not
// be authenticated.
type Error struct {
	Forbidden bool
	Message   string
}

func (e *Error) Error() string { return e.Message }

func unauthenticated(format string, args ...any) *Error {
	return &Error{Message: fmt.Sprintf(format, args...)}
}

func (s Signature) empty() bool {
	return s.KeyID == "" && s.Timestamp == "" && s.Nonce == "" && s.Value == ""
}

// Authenticate identifies the sender of body: by its signature when it
// carries one, else by its broker user. The error is an *Error.
func (p *Policy) Authenticate(c Credentials, body []byte) (*Principal, error) {
	if c.Signature.empty() {
		return p.byBrokerUser(c)
	}
	s := c.Signature
	var missing []string
	for _, h := range []struct{ name, v string }{{HeaderKeyID, s.KeyID}, {HeaderTimestamp, s.Timestamp}, {HeaderNonce, s.Nonce}, {HeaderSignature, s.Value}} {
		if h.v == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return nil, unauthenticated("incomplete signature: the header(s) %s are missing", strings.Join(missing, ", "))
	}
	if err := checkKeyID(s.KeyID); err != nil {
		return nil, unauthenticated("bad %s: %v", HeaderKeyID, err)
	}
	pr := p.byKey[s.KeyID]
	if pr == nil {
		return nil, unauthenticated("unknown key id %q: no principal of this host has it", s.KeyID)
	}
	ts, err := strconv.ParseInt(s.Timestamp, 10, 64)
	if err != nil || len(s.Timestamp) > 12 || ts < 0 {
		return nil, unauthenticated("bad %s: it must be the Unix time in seconds, such as %d", HeaderTimestamp, p.now().Unix())
	}
	if !validNonce(s.Nonce) {
		return nil, unauthenticated("bad %s: it must be 16 to 128 characters of A-Z, a-z, 0-9, '-' and '_'", HeaderNonce)
	}
	now := p.now()
	sent := time.Unix(ts, 0)
	switch d := now.Sub(sent); {
	case d > p.window:
		return nil, unauthenticated("expired: the request was signed %s ago, longer than the replay window of %s (check the sender's clock)", d.Round(time.Second), p.window)
	case -d > p.window:
		return nil, unauthenticated("the request's timestamp is %s in the future, beyond the replay window of %s (check the sender's clock)", (-d).Round(time.Second), p.window)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil {
		return nil, unauthenticated("bad %s: it is not standard base64", HeaderSignature)
	}
	msg := SignedString(s.KeyID, s.Timestamp, s.Nonce, c.Scope, body)
	if !pr.verify(msg, sig) {
		return nil, unauthenticated("bad signature for key id %q (signed over other bytes, for another destination, or with another key)", s.KeyID)
	}
	if c.Transport == "amqp" && len(pr.brokerUsers) > 0 && !slices.Contains(pr.brokerUsers, c.BrokerUser) {
		if c.BrokerUser == "" {
			return nil, unauthenticated("principal %q takes AMQP messages only from broker users %s; this message has no user_id (publish it with user_id set to your broker user)", pr.name, quoteList(pr.brokerUsers))
		}
		return nil, unauthenticated("principal %q takes AMQP messages only from broker users %s, not from %q", pr.name, quoteList(pr.brokerUsers), c.BrokerUser)
	}
	if err := p.nonces.add(s.KeyID, s.Nonce, sent.Add(p.window), now, c.Redelivered); err != nil {
		return nil, err
	}
	return pr, nil
}

// byBrokerUser authenticates an unsigned request by its broker user.
func (p *Policy) byBrokerUser(c Credentials) (*Principal, error) {
	if c.Transport != "amqp" {
		return nil, unauthenticated("the request is not signed: sign it (headers %s, %s, %s, %s; the CLI's -key does it)", HeaderKeyID, HeaderTimestamp, HeaderNonce, HeaderSignature)
	}
	if c.BrokerUser == "" {
		return nil, unauthenticated("the message is neither signed nor published with a user_id: sign it, or set user_id to your broker user")
	}
	if pr := p.byBroker[c.BrokerUser]; pr != nil {
		return pr, nil
	}
	if names := p.keyed[c.BrokerUser]; len(names) > 0 {
		return nil, unauthenticated("the message is not signed: principal(s) %s of broker user %q must sign their messages", quoteList(names), c.BrokerUser)
	}
	return nil, unauthenticated("broker user %q is not one of this host's principals, and the message is not signed", c.BrokerUser)
}

func (pr *Principal) verify(msg, sig []byte) bool {
	if pr.pub != nil {
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pr.pub, msg, sig)
	}
	m := hmac.New(sha256.New, pr.secret)
	m.Write(msg)
	return hmac.Equal(m.Sum(nil), sig)
}

// Action is what a request asks to do, as the policy judges it.
type Action struct {
	// Operation is the canonical operation name.
	Operation string
	// Class is the canonical class a start starts, or the class of the
	// worker a stop, restart or kill acts on; "" when unknown.
	Class string
	// Supervisor is the path from the root (CanonicalPath) of the
	// supervisor the request acts in: the one a worker starts under, the
	// one a worker to stop or restart runs under, the one started (its
	// parent's path + "/" + its name) or stopped; "" when unknown.
	Supervisor string
}

// Authorize says whether the principal may do a. The error is an *Error
// with Forbidden set.
func (pr *Principal) Authorize(a Action) error {
	op := a.Operation
	if op == OpStartAlias {
		op = OpStartWorker
	}
	if !pr.allOps && !slices.Contains(pr.ops, op) && (op != OpClusterStatus || !slices.Contains(pr.ops, OpStatus)) {
		return forbidden("principal %q may not use %q (its operations: %s)", pr.name, op, quoteList(pr.opNames()))
	}
	if op == OpLogs {
		// Reading a worker's log is allowed on the workers the principal
		// may act on: checked as stop_worker, by class and supervisor.
		op = OpStopWorker
	}
	switch op {
	case OpStartWorker, OpStopWorker, OpRestartWorker, OpKillWorker:
		if !pr.classAllowed(a.Class) {
			if a.Class == "" {
				return forbidden("principal %q may act only on workers of classes %s, and the worker's class is not known", pr.name, quoteList(pr.classes))
			}
			return forbidden("principal %q may not act on class %q (its classes: %s)", pr.name, a.Class, quoteList(pr.classes))
		}
	}
	switch op {
	case OpStartWorker, OpStopWorker, OpRestartWorker, OpKillWorker, OpStartSupervisor, OpStopSupervisor:
		if !pr.subtreeAllowed(a.Supervisor) {
			if a.Supervisor == "" {
				return forbidden("principal %q may act only in the supervisors %s, and where this request acts is not known", pr.name, quoteList(pr.supervisors))
			}
			return forbidden("principal %q may not act in supervisor %q (its supervisors: %s)", pr.name, a.Supervisor, quoteList(pr.supervisors))
		}
	}
	return nil
}

func forbidden(format string, args ...any) *Error {
	return &Error{Forbidden: true, Message: fmt.Sprintf(format, args...)}
}

func (pr *Principal) opNames() []string {
	if pr.allOps {
		return []string{AllOperations}
	}
	return pr.ops
}

func (pr *Principal) classAllowed(class string) bool {
	for _, pat := range pr.classes {
		if ok, _ := path.Match(pat, class); ok {
			return true
		}
	}
	return false
}

func (pr *Principal) subtreeAllowed(sup string) bool {
	for _, s := range pr.supervisors {
		if s == RootPath || (sup != "" && (sup == s || strings.HasPrefix(sup, s+"/"))) {
			return true
		}
	}
	return false
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// checkKeyID accepts 1 to 64 of [A-Za-z0-9._-].
func checkKeyID(id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("a key id must be 1 to 64 characters long")
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("a key id may hold only A-Z, a-z, 0-9, '.', '_' and '-'")
		}
	}
	return nil
}

// CheckKeyID reports whether id can be a key id.
func CheckKeyID(id string) error { return checkKeyID(id) }

func validNonce(n string) bool {
	if len(n) < 16 || len(n) > 128 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Context values: what the transport knows (Credentials), who was
// authenticated (Principal), and an HTTP read the token vouches for.
type ctxKey int

const (
	credKey ctxKey = iota
	principalKey
	localReadKey
)

// WithCredentials returns ctx carrying c, for the dispatcher to
// authenticate.
func WithCredentials(ctx context.Context, c Credentials) context.Context {
	return context.WithValue(ctx, credKey, c)
}

// CredentialsFrom returns the Credentials of ctx, if any.
func CredentialsFrom(ctx context.Context) (Credentials, bool) {
	c, ok := ctx.Value(credKey).(Credentials)
	return c, ok
}

// WithPrincipal returns ctx carrying an authenticated principal.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// PrincipalFrom returns the authenticated principal of ctx, if any.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey).(*Principal)
	return p, ok && p != nil
}

// WithLocalRead marks ctx as an unsigned read-only HTTP request (GET),
// which the HTTP API's bearer token guards rather than the policy.
func WithLocalRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, localReadKey, true)
}

// IsLocalRead reports whether ctx was marked by WithLocalRead.
func IsLocalRead(ctx context.Context) bool {
	v, _ := ctx.Value(localReadKey).(bool)
	return v
}

func shorten(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}
