package auth

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestPolicy(t *testing.T, o Options) (*Policy, *Signer, *Signer, *clock) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := Secret(strings.Repeat("s", 44))
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	o.Now = c.now
	o.Principals = append(o.Principals,
		PrincipalConfig{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"*"}},
		PrincipalConfig{Name: "deploy", KeyID: "deploy-1", Secret: secret, BrokerUsers: []string{"deployer"},
			Operations: []string{"start_worker", "status"}, Classes: []string{"smpp.*"}, Supervisors: []string{"/campaigns"}},
		PrincipalConfig{Name: "monitor", BrokerUsers: []string{"nagios"}, Operations: []string{"status", "list_classes"}},
	)
	p, err := NewPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := NewEd25519Signer("ops", priv)
	if err != nil {
		t.Fatal(err)
	}
	hm, err := NewHMACSigner("deploy-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	return p, ed, hm, c
}

func creds(sig Signature, scope string) Credentials {
	return Credentials{Transport: "amqp", Signature: sig, Scope: scope}
}

func wantRefused(t *testing.T, err error, forbidden bool, contains string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want an *auth.Error", err)
	}
	if ae.Forbidden != forbidden {
		t.Fatalf("Forbidden = %v, want %v (%v)", ae.Forbidden, forbidden, err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not say %q", err, contains)
	}
}

func TestVerifySignatures(t *testing.T) {
	p, ed, hm, c := newTestPolicy(t, Options{Require: true, Window: time.Minute})
	body := []byte(`{"operation":"status"}`)
	scope := AMQPScope("global.h1")

	t.Run("good ed25519", func(t *testing.T) {
		pr, err := p.Authenticate(creds(ed.Sign(scope, body, c.now()), scope), body)
		if err != nil || pr.Name() != "ops" {
			t.Fatalf("Authenticate = %v, %v; want ops", pr, err)
		}
	})
	t.Run("good hmac from its broker user", func(t *testing.T) {
		cr := creds(hm.Sign(scope, body, c.now()), scope)
		cr.BrokerUser = "deployer"
		pr, err := p.Authenticate(cr, body)
		if err != nil || pr.Name() != "deploy" {
			t.Fatalf("Authenticate = %v, %v; want deploy", pr, err)
		}
	})
	t.Run("hmac from another broker user", func(t *testing.T) {
		cr := creds(hm.Sign(scope, body, c.now()), scope)
		cr.BrokerUser = "guest"
		_, err := p.Authenticate(cr, body)
		wantRefused(t, err, false, `not from "guest"`)
	})
	t.Run("bad signature: body changed", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		_, err := p.Authenticate(creds(sig, scope), []byte(`{"operation":"reload"}`))
		wantRefused(t, err, false, "bad signature")
	})
	t.Run("bad signature: other destination", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		_, err := p.Authenticate(creds(sig, AMQPScope("global.h2")), body)
		wantRefused(t, err, false, "bad signature")
	})
	t.Run("bad signature: garbage", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		sig.Value = "AAAA"
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "bad signature")
	})
	t.Run("wrong key id", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		sig.KeyID = "deploy-1" // the HMAC key cannot verify an Ed25519 signature
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "bad signature")
		sig.KeyID = "nobody"
		_, err = p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, `unknown key id "nobody"`)
	})
	t.Run("expired", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now().Add(-61*time.Second))
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "expired")
	})
	t.Run("future", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now().Add(61*time.Second))
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "in the future")
	})
	t.Run("edge of the window", func(t *testing.T) {
		for _, d := range []time.Duration{-time.Minute, time.Minute} {
			if _, err := p.Authenticate(creds(ed.Sign(scope, body, c.now().Add(d)), scope), body); err != nil {
				t.Fatalf("signed %s from now: %v", d, err)
			}
		}
	})
	t.Run("replayed", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		if _, err := p.Authenticate(creds(sig, scope), body); err != nil {
			t.Fatal(err)
		}
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "replayed")
		// The broker's redelivery of the same message is not a replay.
		cr := creds(sig, scope)
		cr.Redelivered = true
		if _, err := p.Authenticate(cr, body); err != nil {
			t.Fatalf("redelivered: %v", err)
		}
		// Past its window it is refused as expired, not accepted.
		c.add(61 * time.Second)
		_, err = p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "expired")
	})
	t.Run("incomplete", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		sig.Nonce = ""
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, HeaderNonce)
	})
	t.Run("bad nonce and timestamp", func(t *testing.T) {
		sig := ed.Sign(scope, body, c.now())
		sig.Nonce = "short"
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "bad "+HeaderNonce)
		sig = ed.Sign(scope, body, c.now())
		sig.Timestamp = "1e9"
		_, err = p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "bad "+HeaderTimestamp)
	})
	t.Run("unsigned", func(t *testing.T) {
		_, err := p.Authenticate(Credentials{Transport: "amqp"}, body)
		wantRefused(t, err, false, "neither signed nor published with a user_id")
		_, err = p.Authenticate(Credentials{Transport: "amqp", BrokerUser: "guest"}, body)
		wantRefused(t, err, false, `broker user "guest" is not one of`)
		_, err = p.Authenticate(Credentials{Transport: "amqp", BrokerUser: "deployer"}, body)
		wantRefused(t, err, false, "must sign")
		pr, err := p.Authenticate(Credentials{Transport: "amqp", BrokerUser: "nagios"}, body)
		if err != nil || pr.Name() != "monitor" {
			t.Fatalf("broker user nagios: %v, %v", pr, err)
		}
		_, err = p.Authenticate(Credentials{Transport: "http", BrokerUser: "nagios"}, body)
		wantRefused(t, err, false, "not signed")
	})
}

func TestNonceCacheBounded(t *testing.T) {
	p, ed, _, c := newTestPolicy(t, Options{Require: true, Window: time.Minute, MaxNonces: 3})
	body := []byte(`{}`)
	scope := AMQPScope("k")
	for i := range 3 {
		if _, err := p.Authenticate(creds(ed.Sign(scope, body, c.now()), scope), body); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := p.Authenticate(creds(ed.Sign(scope, body, c.now()), scope), body)
	wantRefused(t, err, false, "too many signed requests")
	if n := p.nonces.len(); n != 3 {
		t.Fatalf("cache holds %d nonces, want 3", n)
	}
	// Once the first ones' window ended (a nonce is kept until its
	// timestamp + window), room is made.
	c.add(61 * time.Second)
	if _, err := p.Authenticate(creds(ed.Sign(scope, body, c.now()), scope), body); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := p.nonces.len(); n != 1 {
		t.Fatalf("cache holds %d nonces after expiry, want 1", n)
	}
}

func TestAuthorize(t *testing.T) {
	p, _, _, _ := newTestPolicy(t, Options{Require: true})
	deploy := p.byKey["deploy-1"]
	monitor := p.byBroker["nagios"]
	ops := p.byKey["ops"]
	cases := []struct {
		pr      *Principal
		a       Action
		refused string
	}{
		{ops, Action{Operation: OpReload}, ""},
		{ops, Action{Operation: OpStopWorker}, ""},
		{deploy, Action{Operation: OpStartWorker, Class: "smpp.transport", Supervisor: "root/campaigns"}, ""},
		{deploy, Action{Operation: OpStartAlias, Class: "smpp.transport", Supervisor: "root/campaigns/a"}, ""},
		{deploy, Action{Operation: OpStatus}, ""},
		{deploy, Action{Operation: OpStartWorker, Class: "telnet", Supervisor: "root/campaigns"}, `class "telnet"`},
		{deploy, Action{Operation: OpStartWorker, Class: "smpp.x", Supervisor: "root"}, `supervisor "root"`},
		{deploy, Action{Operation: OpStartWorker, Class: "smpp.x", Supervisor: "root/campaignsX"}, `supervisor "root/campaignsX"`},
		{deploy, Action{Operation: OpStartWorker, Class: "smpp.x"}, "not known"},
		{deploy, Action{Operation: OpStopWorker, Class: "smpp.x", Supervisor: "root/campaigns"}, `may not use "stop_worker"`},
		{monitor, Action{Operation: OpListClasses}, ""},
		{monitor, Action{Operation: OpStartSupervisor, Supervisor: "root/x"}, `may not use "start_supervisor"`},
		// cluster mode: status allows cluster_status; drain and undrain
		// must be listed (or "*").
		{monitor, Action{Operation: OpClusterStatus}, ""},
		{deploy, Action{Operation: OpClusterStatus}, ""},
		{monitor, Action{Operation: OpDrain}, `may not use "drain"`},
		{deploy, Action{Operation: OpUndrain}, `may not use "undrain"`},
		{ops, Action{Operation: OpDrain}, ""},
		{ops, Action{Operation: OpUndrain}, ""},
		{ops, Action{Operation: OpClusterStatus}, ""},
	}
	for _, tc := range cases {
		err := tc.pr.Authorize(tc.a)
		if tc.refused == "" {
			if err != nil {
				t.Errorf("%s %+v: %v", tc.pr.Name(), tc.a, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s %+v: allowed, want refused", tc.pr.Name(), tc.a)
			continue
		}
		wantRefused(t, err, true, tc.refused)
	}
}

// The cluster operations can be listed on their own: drain does not
// allow undrain, cluster_status does not allow status.
func TestAuthorizeClusterOperations(t *testing.T) {
	p, err := NewPolicy(Options{Require: true, Principals: []PrincipalConfig{
		{Name: "maint", BrokerUsers: []string{"maint"}, Operations: []string{"drain", "cluster_status"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	maint := p.byBroker["maint"]
	for op, refused := range map[string]bool{OpDrain: false, OpClusterStatus: false, OpUndrain: true, OpStatus: true, OpStopWorker: true} {
		err := maint.Authorize(Action{Operation: op})
		if (err != nil) != refused {
			t.Errorf("%s: %v, want refused %v", op, err, refused)
		}
		if refused && err != nil {
			wantRefused(t, err, true, `its operations: ["drain", "cluster_status"]`)
		}
	}
}

func TestNewPolicyErrors(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	cases := []struct {
		ps   []PrincipalConfig
		want string
	}{
		{[]PrincipalConfig{{Name: "a", Operations: []string{"*"}}}, "neither a key nor broker users"},
		{[]PrincipalConfig{{Name: "a", BrokerUsers: []string{"u"}, Operations: []string{"stop"}}}, `unknown operation "stop"`},
		{[]PrincipalConfig{{Name: "a", BrokerUsers: []string{"u"}}, {Name: "b", BrokerUsers: []string{"u"}}}, "both identify broker user"},
		{[]PrincipalConfig{{Name: "a", KeyID: "k", PublicKey: pub}, {Name: "b", KeyID: "k", PublicKey: pub}}, "same key id"},
		{[]PrincipalConfig{{Name: "a", KeyID: "k", PublicKey: pub, Classes: []string{"["}}}, "class pattern"},
		{[]PrincipalConfig{{Name: "a", KeyID: "k k", PublicKey: pub}}, "key id may hold only"},
	}
	for _, tc := range cases {
		_, err := NewPolicy(Options{Principals: tc.ps})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.ps, err, tc.want)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "ops.key")
	pubPath, err := GenerateKeyFiles(priv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(priv)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st.Mode(), err)
	}
	if _, err := GenerateKeyFiles(priv); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrite: %v", err)
	}
	pemPub, _ := os.ReadFile(pubPath)
	pub, err := ParsePublicKey(pemPub)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(priv, "ops")
	if err != nil {
		t.Fatal(err)
	}
	sig := s.Sign("s", []byte("b"), time.Unix(1, 0))
	p, err := NewPolicy(Options{Principals: []PrincipalConfig{{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"*"}}},
		Now: func() time.Time { return time.Unix(1, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authenticate(creds(sig, "s"), []byte("b")); err != nil {
		t.Fatalf("a key pair from GenerateKeyFiles does not verify: %v", err)
	}
	// A private key others can read is refused, naming the file and the fix.
	if err := os.Chmod(priv, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(priv, "ops"); err == nil || !strings.Contains(err.Error(), "chmod 600 "+priv) {
		t.Fatalf("LoadSigner of a 0644 key: %v", err)
	}
	// HMAC secret files.
	sec := filepath.Join(dir, "short.secret")
	os.WriteFile(sec, []byte("tooshort\n"), 0o600)
	if _, err := ReadSecretFile(sec); err == nil || !strings.Contains(err.Error(), sec) {
		t.Fatalf("short secret: %v", err)
	}
	if s := Secret("x"); s.String() != "(sensitive)" {
		t.Fatal("a Secret prints")
	}
}

// With a nonce file, a request accepted before a restart of the host is
// still refused as a replay after it (within its window); expired nonces
// are dropped from the file; the file is 0600.
func TestNonceFileSurvivesRestart(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := NewEd25519Signer("ops", priv)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	file := filepath.Join(t.TempDir(), "control-nonces")
	open := func() *Policy {
		t.Helper()
		p, err := NewPolicy(Options{Require: true, Window: time.Minute, NonceFile: file, Now: c.now,
			Principals: []PrincipalConfig{{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"*"}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	body, scope := []byte(`{"operation": "reload"}`), AMQPScope("k")
	p := open()
	old := s.Sign(scope, body, c.now().Add(-50*time.Second)) // its window ends in 10s
	recent := s.Sign(scope, body, c.now())
	for _, sig := range []Signature{old, recent} {
		if _, err := p.Authenticate(creds(sig, scope), body); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	// The host restarts: both are still replays.
	p = open()
	for _, sig := range []Signature{old, recent} {
		_, err := p.Authenticate(creds(sig, scope), body)
		wantRefused(t, err, false, "replayed")
	}
	// A redelivery of a message handled before the restart is not.
	cr := creds(recent, scope)
	cr.Redelivered = true
	if _, err := p.Authenticate(cr, body); err != nil {
		t.Fatalf("redelivered after a restart: %v", err)
	}
	p.Close()

	// 20s later the old nonce's window has ended: the next start drops it.
	c.add(20 * time.Second)
	p = open()
	if n := p.nonces.len(); n != 1 {
		t.Errorf("%d nonces loaded, want 1", n)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\n"); n != 1 {
		t.Errorf("the nonce file has %d lines after compaction, want 1:\n%s", n, raw)
	}
	if strings.Contains(string(raw), recent.Nonce) {
		t.Error("the nonce file holds a nonce in clear; it keeps digests")
	}
	st, _ := os.Stat(file)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("nonce file mode %o, want 600", st.Mode().Perm())
	}
	// A torn last line is skipped, not fatal.
	f, _ := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("deadbeef")
	f.Close()
	p.Close()
	p = open()
	_, err = p.Authenticate(creds(recent, scope), body)
	wantRefused(t, err, false, "replayed")
}
