package control

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// locatingHost is a fakeHost that is also a Locator: worker "w-camp" runs
// under root/campaigns/a with class smpp; "smpp-alias" is an alias of
// smpp; supervisor "a" is root/campaigns/a.
type locatingHost struct{ fakeHost }

func (*locatingHost) WorkerPlace(name string) (string, string, bool) {
	if name == "w-camp" {
		return "root/campaigns/a", "smpp", true
	}
	if name == "w-root" {
		return "root", "smpp", true
	}
	return "", "", false
}

func (*locatingHost) SupervisorPath(p string) (string, bool) {
	switch strings.Trim(p, "/") {
	case "", "root":
		return "root", true
	case "a", "campaigns/a", "root/campaigns/a":
		return "root/campaigns/a", true
	}
	return "", false
}

func (*locatingHost) CanonicalClass(name string) (string, bool) {
	if name == "smpp-alias" || name == "smpp" {
		return "smpp", true
	}
	return "", false
}

func testPolicy(t *testing.T, require bool) (*auth.Policy, *auth.Signer) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	p, err := auth.NewPolicy(auth.Options{Require: require, Principals: []auth.PrincipalConfig{
		{Name: "camp", KeyID: "camp", PublicKey: pub, Operations: []string{"vumi_worker", "stop_worker", "status"},
			Classes: []string{"smpp"}, Supervisors: []string{"/campaigns"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewEd25519Signer("camp", priv)
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

// signedCtx is the context the AMQP transport makes for a message signed
// by s for routing key "k".
func signedCtx(s *auth.Signer, body string) context.Context {
	return auth.WithCredentials(context.Background(), auth.Credentials{
		Transport: "amqp", Signature: s.Sign(auth.AMQPScope("k"), []byte(body), time.Now()), Scope: auth.AMQPScope("k"),
	})
}

// The dispatcher authorises by where a request acts, through the Locator:
// the supervisor a name designates, the canonical class of an alias, the
// place and class of a worker to stop. Refused requests never reach the
// host.
func TestDispatcherAuthorizesByPlace(t *testing.T) {
	h := &locatingHost{}
	d, _ := newTestDispatcher(h)
	p, s := testPolicy(t, true)
	d.SetPolicy(p)
	cases := []struct {
		body string
		code Code
	}{
		{`{"operation": "vumi_worker", "worker_name": "n1", "worker_class": "smpp-alias", "supervisor": "a"}`, ""},
		{`{"operation": "vumi_worker", "worker_name": "n2", "worker_class": "smpp", "supervisor": "root"}`, CodeForbidden},
		{`{"operation": "vumi_worker", "worker_name": "n3", "worker_class": "telnet", "supervisor": "a"}`, CodeForbidden},
		{`{"operation": "stop_worker", "worker_name": "w-camp"}`, ""},
		{`{"operation": "stop_worker", "worker_name": "w-root"}`, CodeForbidden},
		{`{"operation": "stop_worker", "worker_name": "unknown"}`, CodeForbidden},
		{`{"operation": "restart_worker", "worker_name": "w-camp"}`, CodeForbidden},
		{`{"operation": "status"}`, ""},
	}
	for _, tc := range cases {
		rep := d.Handle(signedCtx(s, tc.body), []byte(tc.body))
		got := Code("")
		if rep.Error != nil {
			got = rep.Error.Code
		}
		if got != tc.code {
			t.Errorf("%s: %+v, want code %q", tc.body, rep.Error, tc.code)
		}
	}
	want := []string{"start n1", "stop w-camp", "status"}
	if calls := h.Calls(); !slices.Equal(calls, want) {
		t.Errorf("host calls %v, want %v", calls, want)
	}
	// Unsigned and without credentials: unauthenticated, unless a read the
	// HTTP API marked.
	if rep := d.Handle(context.Background(), []byte(`{"operation": "status", "request_id": "r1"}`)); rep.Error == nil || rep.Error.Code != CodeUnauthenticated || rep.RequestID != "r1" {
		t.Errorf("no credentials: %+v", rep)
	}
	if rep := d.Do(auth.WithLocalRead(context.Background()), &Request{Operation: OpStatus}); !rep.OK {
		t.Errorf("local read of status: %+v", rep.Error)
	}
	if rep := d.Do(auth.WithLocalRead(context.Background()), &Request{Operation: OpReload}); rep.Error == nil || rep.Error.Code != CodeUnauthenticated {
		t.Errorf("a local read mark does not allow reload: %+v", rep)
	}
	if st := d.Stats(); st.Errors[CodeForbidden] != 5 {
		t.Errorf("forbidden counted %d times, want 5", st.Errors[CodeForbidden])
	}
}

// require = false: nothing is refused, what would be is logged.
func TestDispatcherAuditMode(t *testing.T) {
	h := &locatingHost{}
	d, logs := newTestDispatcher(h)
	p, s := testPolicy(t, false)
	d.SetPolicy(p)
	body := `{"operation": "vumi_worker", "worker_name": "n2", "worker_class": "smpp", "supervisor": "root"}`
	if rep := d.Handle(signedCtx(s, body), []byte(body)); !rep.OK {
		t.Fatalf("audit mode refused: %+v", rep.Error)
	}
	unsigned := `{"operation": "reload"}`
	ctx := auth.WithCredentials(context.Background(), auth.Credentials{Transport: "amqp", Scope: auth.AMQPScope("k")})
	if rep := d.Handle(ctx, []byte(unsigned)); !rep.OK {
		t.Fatalf("audit mode refused an unsigned message: %+v", rep.Error)
	}
	out := logs.String()
	for _, want := range []string{"would be refused as forbidden", "would be refused as unauthenticated"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	if calls := h.Calls(); !slices.Equal(calls, []string{"start n2", "reload"}) {
		t.Errorf("host calls %v", calls)
	}
}
