package httpapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// clusterView is the view fakeClusterHost answers.
var clusterView = api.ClusterView{
	SystemID: "test", Prefix: "/dynworkers/test/", Leader: "host-a", From: "host-a", Revision: 42,
	ReadAt: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC),
	Hosts: []api.ClusterHost{
		{Name: "host-a", Alive: true, Leader: true, Capacity: 10, Assigned: 2, Load: 2, Labels: map[string]string{"zone": "a"}},
		{Name: "host-b", Alive: true, Draining: true, Capacity: 0, Assigned: 1, Load: 1},
	},
	Workers: []api.ClusterWorker{
		{Name: "w1", Class: "hello", Host: "host-a", RunningOn: "host-a", State: "running", Pid: 101, Moves: 1},
		{Name: "w2", Class: "hello", State: "pending", Pending: "no live host has the label zone=c"},
	},
}

// fakeClusterHost is a control.Host that is part of a cluster.
type fakeClusterHost struct {
	fakeHost
	mu     sync.Mutex
	drains []string // "on host" or "off host"
}

func (h *fakeClusterHost) ClusterStatus(context.Context) (api.ClusterView, error) {
	return clusterView, nil
}

func (h *fakeClusterHost) Drain(_ context.Context, host string, on bool) (api.DrainResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if host != "host-b" {
		return api.DrainResult{}, control.Errorf(control.CodeNotFound, "no host %q in the cluster", host)
	}
	if on {
		h.drains = append(h.drains, "on "+host)
		return api.DrainResult{Host: host, Action: "draining", Workers: []string{"w3"}}, nil
	}
	h.drains = append(h.drains, "off "+host)
	return api.DrainResult{Host: host, Action: "undrained", Workers: []string{}}, nil
}

// loneHost is a control.Host that implements ClusterHost as the daemon
// does without a cluster block: every call is a conflict.
type loneHost struct{ fakeHost }

func (loneHost) ClusterStatus(context.Context) (api.ClusterView, error) {
	return api.ClusterView{}, control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")
}

func (loneHost) Drain(context.Context, string, bool) (api.DrainResult, error) {
	return api.DrainResult{}, control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")
}

var (
	_ control.ClusterHost = (*fakeClusterHost)(nil)
	_ control.ClusterHost = loneHost{}
)

// TestClusterRoutesThroughTheDispatcher drives the cluster routes through
// a real control.Dispatcher (which routes cluster_status, drain and
// undrain to the Host's control.ClusterHost methods).
func TestClusterRoutesThroughTheDispatcher(t *testing.T) {
	const token = "cluster-token-0123456789"
	auth := []string{"Authorization", "Bearer " + token}
	h := &fakeClusterHost{}
	s := New(Options{Doer: control.NewDispatcher(h, nil), Token: token})

	w, rep := serve(t, s, "GET", "/v1/cluster", "", auth...)
	if w.Code != 200 || !rep.OK {
		t.Fatalf("GET /v1/cluster: %d %s", w.Code, w.Body)
	}
	var got struct {
		Result api.ClusterView `json:"result"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Result, clusterView) {
		t.Errorf("view\n got %+v\nwant %+v", got.Result, clusterView)
	}

	w, rep = serve(t, s, "POST", "/v1/cluster/hosts/host-b/drain", "", auth...)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"result":{"host":"host-b","action":"draining","workers":["w3"]}`) {
		t.Errorf("drain: %d %s", w.Code, w.Body)
	}
	w, _ = serve(t, s, "POST", "/v1/cluster/hosts/host-b/undrain", "", auth...)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"action":"undrained"`) {
		t.Errorf("undrain: %d %s", w.Code, w.Body)
	}
	w, rep = serve(t, s, "POST", "/v1/cluster/hosts/ghost/drain", "", auth...)
	if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound {
		t.Errorf("drain of an unknown host: %d %s", w.Code, w.Body)
	}
	if want := []string{"on host-b", "off host-b"}; !reflect.DeepEqual(h.drains, want) {
		t.Errorf("drains %q, want %q", h.drains, want)
	}

	// Without the token nothing reaches the host.
	w, _ = serve(t, s, "GET", "/v1/cluster", "")
	if w.Code != 401 {
		t.Errorf("GET /v1/cluster without the token: %d %s", w.Code, w.Body)
	}
	w, _ = serve(t, s, "POST", "/v1/cluster/hosts/host-b/drain", "")
	if w.Code != 401 || len(h.drains) != 2 {
		t.Errorf("drain without the token: %d %s (drains %q)", w.Code, w.Body, h.drains)
	}
}

// TestClusterRoutesWithoutACluster: a host without a cluster block, and a
// Host that does not implement control.ClusterHost at all, answer 409 with
// the control error body every route uses.
func TestClusterRoutesWithoutACluster(t *testing.T) {
	for name, host := range map[string]control.Host{"no cluster block": loneHost{}, "no ClusterHost": fakeHost{}} {
		t.Run(name, func(t *testing.T) {
			s := New(Options{Doer: control.NewDispatcher(host, nil)})
			for _, r := range []struct{ method, path string }{
				{"GET", "/v1/cluster"},
				{"POST", "/v1/cluster/hosts/host-b/drain"},
				{"POST", "/v1/cluster/hosts/host-b/undrain"},
			} {
				w, rep := serve(t, s, r.method, r.path, "")
				if w.Code != 409 || rep.OK || rep.Error == nil || rep.Error.Code != control.CodeConflict ||
					!strings.Contains(rep.Error.Message, "cluster") {
					t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
				}
				var shape map[string]json.RawMessage
				if err := json.Unmarshal(w.Body.Bytes(), &shape); err != nil || len(shape) != 2 || shape["ok"] == nil || shape["error"] == nil {
					t.Errorf("%s %s: the body is not {ok, error}: %s", r.method, r.path, w.Body)
				}
			}
		})
	}
}

// TestClusterRoutesUnderAPolicy: with a control policy that requires
// signatures, GET /v1/cluster is a read the token vouches for (as GET
// /v1/status), while drain and undrain must be signed by a principal that
// may use them.
func TestClusterRoutesUnderAPolicy(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	readerPub, readerPriv, _ := ed25519.GenerateKey(nil)
	p, err := auth.NewPolicy(auth.Options{Require: true, Principals: []auth.PrincipalConfig{
		{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"status", "drain", "undrain"}},
		{Name: "reader", KeyID: "reader", PublicKey: readerPub, Operations: []string{"status"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := auth.NewEd25519Signer("ops", priv)
	reader, _ := auth.NewEd25519Signer("reader", readerPriv)
	h := &fakeClusterHost{}
	d := control.NewDispatcher(h, nil)
	d.SetPolicy(p)
	s := New(Options{Doer: d})
	signed := func(signer *auth.Signer, method, path string) []string {
		hdr := http.Header{}
		signer.Sign(auth.HTTPScope(method, path), nil, time.Now()).SetHTTP(hdr)
		var out []string
		for k := range hdr {
			out = append(out, k, hdr.Get(k))
		}
		return out
	}

	if w, rep := serve(t, s, "GET", "/v1/cluster", ""); w.Code != 200 || !rep.OK {
		t.Errorf("unsigned GET /v1/cluster: %d %s", w.Code, w.Body)
	}
	const drain = "/v1/cluster/hosts/host-b/drain"
	if w, rep := serve(t, s, "POST", drain, ""); w.Code != 401 || rep.Error == nil || rep.Error.Code != control.CodeUnauthenticated {
		t.Errorf("unsigned drain: %d %s", w.Code, w.Body)
	}
	if w, rep := serve(t, s, "POST", drain, "", signed(reader, "POST", drain)...); w.Code != 403 || rep.Error == nil || rep.Error.Code != control.CodeForbidden {
		t.Errorf("drain signed by a principal without drain: %d %s", w.Code, w.Body)
	}
	// A signature for another host's drain is not this one's.
	if w, _ := serve(t, s, "POST", drain, "", signed(ops, "POST", "/v1/cluster/hosts/host-c/drain")...); w.Code != 401 {
		t.Errorf("drain with the signature of another path: %d %s", w.Code, w.Body)
	}
	if len(h.drains) != 0 {
		t.Fatalf("refused drains reached the host: %q", h.drains)
	}
	if w, rep := serve(t, s, "POST", drain, "", signed(ops, "POST", drain)...); w.Code != 200 || !rep.OK {
		t.Errorf("signed drain: %d %s", w.Code, w.Body)
	}
	const undrain = "/v1/cluster/hosts/host-b/undrain"
	if w, rep := serve(t, s, "POST", undrain, "", signed(ops, "POST", undrain)...); w.Code != 200 || !rep.OK {
		t.Errorf("signed undrain: %d %s", w.Code, w.Body)
	}
	if want := []string{"on host-b", "off host-b"}; !reflect.DeepEqual(h.drains, want) {
		t.Errorf("drains %q, want %q", h.drains, want)
	}
}
