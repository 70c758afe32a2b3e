package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// testView is a cluster of 3 hosts, one drained, and 3 workers, one not
// placed.
func testView() api.ClusterView {
	return api.ClusterView{
		SystemID: "prod", Prefix: "/dynworkers/prod/", Leader: "host-a", From: "host-b", Revision: 4711,
		ReadAt: statusNow,
		Hosts: []api.ClusterHost{
			{Name: "host-a", Alive: true, Leader: true, Capacity: 10, Assigned: 1, Load: 1, Labels: map[string]string{"zone": "a", "disk": "ssd"}},
			{Name: "host-b", Alive: true, Capacity: 0, Assigned: 1, Load: 1, Labels: map[string]string{"zone": "b"}},
			{Name: "host-c", Alive: false, Draining: true, Capacity: 5},
		},
		Workers: []api.ClusterWorker{
			{Name: "sms-in", Class: "smpp", Host: "host-a", RunningOn: "host-a", State: "running", Pid: 4242,
				Since: statusNow.Add(-3*time.Minute - 12*time.Second), Moves: 2},
			{Name: "sms-out", Class: "smpp", Host: "host-a", RunningOn: "host-b", State: "moving", Pid: 99, Since: statusNow.Add(-2 * time.Hour), Moves: 0},
			{Name: "zone-c", Class: "hello", State: "pending", Pending: "no live host has the label zone=c", Constraints: map[string]string{"zone": "c"}},
		},
	}
}

const testViewTables = `cluster prod (/dynworkers/prod/) · leader host-a · 2/3 hosts alive · 3 workers · read by host-b at revision 4711

HOSTS
NAME    ALIVE  DRAINING  LEADER  CAPACITY  ASSIGNED  LOAD  LABELS
host-a  yes    no        yes     10        1         1     disk=ssd,zone=a
host-b  yes    no        no      -         1         1     zone=b
host-c  no     yes       no      5         0         0     -

WORKERS
NAME     CLASS  HOST              STATE    PID   SINCE  MOVES  PENDING
sms-in   smpp   host-a            running  4242  3m12s  2
sms-out  smpp   host-b -> host-a  moving   99    2h0m   0
zone-c   hello  -                 pending  -     -      0      no live host has the label zone=c
`

// clusterDoer answers cluster_status with view() and drain, undrain and
// starts as a host of a cluster would.
func clusterDoer(view func() api.ClusterView) *fakeDoer {
	return &fakeDoer{reply: func(r *control.Request) control.Reply {
		switch r.Operation {
		case control.OpClusterStatus:
			return control.Reply{OK: true, Result: view()}
		case control.OpDrain:
			return control.Reply{OK: true, Result: api.DrainResult{Host: r.Host, Action: "draining", Workers: []string{"sms-in", "sms-out"}}}
		case control.OpUndrain:
			return control.Reply{OK: true, Result: api.DrainResult{Host: r.Host, Action: "undrained", Workers: []string{}}}
		case control.OpStartWorker:
			if r.Constraints["zone"] == "c" {
				return control.Reply{OK: true, Result: api.StartResult{Worker: r.WorkerName, Action: "started", State: "pending",
					Pending: "no live host has the label zone=c"}}
			}
			return control.Reply{OK: true, Result: api.StartResult{Worker: r.WorkerName, Action: "started", State: "running", Pid: 7, Host: "host-b"}}
		}
		return control.Reply{Error: control.Errorf(control.CodeUnknownOperation, "unexpected %q", r.Operation)}
	}}
}

func TestStatusClusterOverHTTP(t *testing.T) {
	fixClock(t)
	d := clusterDoer(testView)
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "status", "-cluster", "--http", url)
	if rc != 0 || stdout != testViewTables {
		t.Fatalf("rc %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", rc, stdout, testViewTables, stderr)
	}
	if got := d.requests(); len(got) != 1 || got[0].Operation != control.OpClusterStatus {
		t.Errorf("requests %+v", got)
	}
	stdout, _, rc = runCLI(t, "status", "-cluster", "-json", "--http", url)
	var round api.ClusterView
	if err := json.Unmarshal([]byte(stdout), &round); rc != 0 || err != nil || !reflect.DeepEqual(round, testView()) {
		t.Errorf("-json: rc %d, %v\n%s", rc, err, stdout)
	}
	// No PENDING column when no worker is pending; no worker at all.
	empty := apiServer(t, clusterDoer(func() api.ClusterView {
		v := testView()
		v.Workers = nil
		return v
	}), "")
	stdout, _, rc = runCLI(t, "status", "-cluster", "--http", empty)
	if rc != 0 || !strings.HasSuffix(stdout, "WORKERS\n(no cluster workers)\n") || strings.Contains(stdout, "PENDING") {
		t.Errorf("no workers: rc %d\n%s", rc, stdout)
	}
	// A view without a system id names the cluster by its prefix.
	noID := apiServer(t, clusterDoer(func() api.ClusterView {
		v := testView()
		v.SystemID = ""
		return v
	}), "")
	stdout, _, rc = runCLI(t, "status", "-cluster", "--http", noID)
	if rc != 0 || !strings.HasPrefix(stdout, "cluster /dynworkers/prod/ · leader host-a · ") {
		t.Errorf("no system id: rc %d\n%s", rc, stdout)
	}
}

func TestStatusClusterOnAHostWithoutCluster(t *testing.T) {
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{Error: control.Errorf(control.CodeConflict, "this host is not part of a cluster (it has no cluster block)")}
	}}
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "status", "-cluster", "--http", url)
	if rc != 1 || stdout != "" || !strings.Contains(stderr, "conflict: this host is not part of a cluster") ||
		!strings.Contains(stderr, "hint: this host is not part of a cluster: ask a host whose config has a cluster block") {
		t.Errorf("rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
}

// status -cluster -watch redraws the cluster view.
func TestStatusClusterWatch(t *testing.T) {
	fixClock(t)
	var mu sync.Mutex
	n := 0
	reached := make(chan struct{})
	d := clusterDoer(func() api.ClusterView {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 3 {
			close(reached)
		}
		v := testView()
		v.Revision = int64(n)
		return v
	})
	o := &clientOptions{cmd: "status", httpURL: apiServer(t, d, ""), timeout: time.Minute}
	stdout, stderr := runWatch(t, o, watchOptions{interval: time.Millisecond, cluster: true}, reached)
	for _, want := range []string{"read by host-b at revision 1\n", "read by host-b at revision 2\n", "sms-out  smpp   host-b -> host-a  moving"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the frames lack %q:\n%s\n%s", want, stdout, stderr)
		}
	}
	for _, r := range d.requests() {
		if r.Operation != control.OpClusterStatus {
			t.Errorf("request %+v", r)
		}
	}
}

func TestDrainAndUndrainOverHTTP(t *testing.T) {
	d := clusterDoer(testView)
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "drain", "host-c", "--http", url)
	if rc != 0 || stdout != "draining host host-c: 2 cluster workers to move (sms-in, sms-out)\n" {
		t.Fatalf("drain: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "undrain", "--http", url, "host-c")
	if rc != 0 || stdout != "undrained host host-c: it takes new cluster workers again\n" {
		t.Fatalf("undrain: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	want := []control.Request{{Operation: control.OpDrain, Host: "host-c"}, {Operation: control.OpUndrain, Host: "host-c"}}
	if got := d.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests\n got %+v\nwant %+v", got, want)
	}
	for _, args := range [][]string{
		{"drain", "--http", url},
		{"drain", "a", "b", "--http", url},
		{"undrain", "-wait", "h", "--http", url},
	} {
		if _, stderr, rc := runCLI(t, args...); rc != 2 {
			t.Errorf("%q: rc %d\n%s", args, rc, stderr)
		}
	}
	if _, stderr, rc := runCLI(t, "drain", "h", "-amqp", "amqp://127.0.0.1:1/", "-all"); rc != 2 || !strings.Contains(stderr, "not -all") {
		t.Errorf("drain -all: rc %d\n%s", rc, stderr)
	}
	if n := len(d.requests()); n != 2 {
		t.Errorf("usage errors sent %d requests", n)
	}
}

// TestDrainWait: drain -wait polls cluster_status and prints each move
// once the worker runs on its new host, then returns when the host has no
// cluster worker left.
func TestDrainWait(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	view := func() api.ClusterView {
		mu.Lock()
		defer mu.Unlock()
		polls++
		v := api.ClusterView{SystemID: "prod", Hosts: []api.ClusterHost{{Name: "host-a", Alive: true}, {Name: "host-b", Alive: true, Draining: true}, {Name: "host-c", Alive: true}}}
		w1 := api.ClusterWorker{Name: "w1", Class: "c", Host: "host-b", RunningOn: "host-b", State: "running"}
		w2 := api.ClusterWorker{Name: "w2", Class: "c", Host: "host-b", RunningOn: "host-b", State: "running"}
		other := api.ClusterWorker{Name: "w3", Class: "c", Host: "host-a", RunningOn: "host-a", State: "running"}
		switch {
		case polls >= 4:
			w1.Host, w1.RunningOn, w1.Moves = "host-a", "host-a", 1
			w2.Host, w2.RunningOn, w2.Moves = "host-c", "host-c", 1
		case polls == 3:
			w1.Host, w1.RunningOn, w1.Moves = "host-a", "host-a", 1
			w2.Host, w2.State = "host-c", "moving"
		case polls == 2:
			w1.Host, w1.RunningOn, w1.State = "host-a", "", "starting" // placed, not yet running
		}
		v.Workers = []api.ClusterWorker{w1, w2, other}
		return v
	}
	d := clusterDoer(view)
	d.reply = func(orig func(*control.Request) control.Reply) func(*control.Request) control.Reply {
		return func(r *control.Request) control.Reply {
			if r.Operation == control.OpDrain {
				return control.Reply{OK: true, Result: api.DrainResult{Host: r.Host, Action: "draining", Workers: []string{"w1", "w2"}}}
			}
			return orig(r)
		}
	}(d.reply)
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "drain", "-wait", "host-b", "--http", url, "-timeout", "60s")
	want := "draining host host-b: 2 cluster workers to move (w1, w2)\n" +
		"moved w1: host-b -> host-a\n" +
		"moved w2: host-b -> host-c\n" +
		"host host-b is drained: no cluster worker left on it\n"
	if rc != 0 || stdout != want {
		t.Errorf("rc %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", rc, stdout, want, stderr)
	}
	mu.Lock()
	if polls != 4 {
		t.Errorf("%d polls, want 4", polls)
	}
	mu.Unlock()

	// A move done before the first poll is printed the same way; one not
	// running yet says its state.
	done := clusterDoer(func() api.ClusterView {
		return api.ClusterView{Workers: []api.ClusterWorker{
			{Name: "w1", Class: "c", Host: "host-a", RunningOn: "host-a", State: "running", Moves: 1},
			{Name: "w2", Class: "c", Host: "host-c", State: "starting", Moves: 1},
		}}
	})
	done.reply = func(orig func(*control.Request) control.Reply) func(*control.Request) control.Reply {
		return func(r *control.Request) control.Reply {
			if r.Operation == control.OpDrain {
				return control.Reply{OK: true, Result: api.DrainResult{Host: r.Host, Action: "draining", Workers: []string{"w1", "w2"}}}
			}
			return orig(r)
		}
	}(done.reply)
	stdout, stderr, rc = runCLI(t, "drain", "-wait", "host-b", "--http", apiServer(t, done, ""))
	want = "draining host host-b: 2 cluster workers to move (w1, w2)\n" +
		"moved w1: host-b -> host-a\n" +
		"moved w2: host-b -> host-c (starting)\n" +
		"host host-b is drained: no cluster worker left on it\n"
	if rc != 0 || stdout != want {
		t.Errorf("moved before the first poll: rc %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", rc, stdout, want, stderr)
	}

	// A drain that does not end within -timeout: exit 1, naming what is
	// left.
	stuck := apiServer(t, clusterDoer(testView), "")
	start := time.Now()
	stdout, stderr, rc = runCLI(t, "drain", "-wait", "-timeout", "1200ms", "host-a", "--http", stuck)
	if rc != 1 || !strings.Contains(stderr, "host host-a still has 2 cluster workers after 1.2s: sms-in, sms-out") {
		t.Errorf("stuck: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %s, before -timeout", d)
	}
}

func TestStartCluster(t *testing.T) {
	d := clusterDoer(testView)
	url := apiServer(t, d, "")
	stdout, stderr, rc := runCLI(t, "start", "w1", "-class", "smpp", "-cluster", "-constraint", "zone=a", "-constraint", "disk=ssd", "--http", url)
	if rc != 0 || stdout != `started worker "w1" (on host-b, pid 7, running)`+"\n" {
		t.Fatalf("rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start", "w2", "-class", "smpp", "-cluster", "-constraint", "zone=c", "--http", url)
	if rc != 0 || stdout != `started worker "w2" (pending, not placed: no live host has the label zone=c)`+"\n" {
		t.Fatalf("pending: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	want := []control.Request{
		{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "smpp", Cluster: true, Constraints: map[string]string{"zone": "a", "disk": "ssd"}},
		{Operation: control.OpStartWorker, WorkerName: "w2", WorkerClass: "smpp", Cluster: true, Constraints: map[string]string{"zone": "c"}},
	}
	if got := d.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests\n got %+v\nwant %+v", got, want)
	}
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"start", "w", "-class", "c", "-constraint", "zone=a"}, "-constraint goes with -cluster"},
		{[]string{"start", "w", "-class", "c", "-cluster", "-constraint", "zone"}, "want KEY=VALUE"},
		{[]string{"start", "w", "-class", "c", "-cluster", "-constraint", "zone=a", "-constraint", "zone=b"}, `"zone" is set twice`},
	} {
		if _, stderr, rc := runCLI(t, append(tt.args, "--http", url)...); rc != 2 || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%q: rc %d\n%s", tt.args, rc, stderr)
		}
	}
	if n := len(d.requests()); n != 2 {
		t.Errorf("usage errors sent %d requests", n)
	}
}

// TestClusterOverAMQP: status -cluster, drain and a cluster start as
// control messages through a real broker.
func TestClusterOverAMQP(t *testing.T) {
	fixClock(t)
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	d := clusterDoer(testView)
	got := fakeAMQPHost(t, url, []string{sys + ".h1", sys + ".any"}, func(r control.Request) *control.Reply {
		rep := d.Do(t.Context(), &r)
		return &rep
	})
	stdout, stderr, rc := runCLI(t, "status", "-cluster", "--amqp", url, "--host", "h1", "--system-id", sys)
	if rc != 0 || stdout != testViewTables {
		t.Fatalf("status -cluster: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if m := <-got; m.body.Operation != control.OpClusterStatus {
		t.Errorf("the message: %+v", m.body)
	}
	stdout, stderr, rc = runCLI(t, "drain", "host-c", "--amqp", url, "--any", "--system-id", sys)
	if rc != 0 || !strings.HasPrefix(stdout, "draining host host-c") {
		t.Fatalf("drain: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if m := <-got; m.body.Operation != control.OpDrain || m.body.Host != "host-c" {
		t.Errorf("the drain message: %+v", m.body)
	}
	stdout, stderr, rc = runCLI(t, "start", "w1", "-class", "smpp", "-cluster", "-constraint", "zone=a", "--amqp", url, "--any", "--system-id", sys)
	if rc != 0 || stdout != `started worker "w1" (on host-b, pid 7, running)`+"\n" {
		t.Fatalf("start: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if m := <-got; !m.body.Cluster || m.body.Constraints["zone"] != "a" {
		t.Errorf("the start message: %+v", m.body)
	}
	// drain -wait polls cluster_status over AMQP too.
	stdout, stderr, rc = runCLI(t, "drain", "-wait", "host-x", "--amqp", url, "--host", "h1", "--system-id", sys)
	if rc != 0 || !strings.HasSuffix(stdout, "host host-x is drained: no cluster worker left on it\n") {
		t.Fatalf("drain -wait: rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}
	if m := <-got; m.body.Operation != control.OpDrain || m.body.Host != "host-x" {
		t.Errorf("the drain message: %+v", m.body)
	}
	if m := <-got; m.body.Operation != control.OpClusterStatus {
		t.Errorf("the poll: %+v", m.body)
	}
}

func TestClusterSummaryHidesThePassword(t *testing.T) {
	c := &config.ClusterConfig{
		Endpoints: []string{"https://etcd-1:2379", "https://etcd-2:2379"}, Prefix: "/dynworkers/prod/", LeaseTTL: 10 * time.Second,
		MaxWorkers: 50, Labels: map[string]string{"zone": "a"}, Username: "dynworkers", Password: "etcd-s3cret-pw",
		TLS: &config.AMQPTLS{CAFile: "/etc/ca.pem"}, SecretsKeyFile: "/etc/dynworkers/cluster.key",
	}
	got := clusterSummary(c)
	want := "cluster: 2 etcd endpoints (https://etcd-1:2379, https://etcd-2:2379), prefix /dynworkers/prod/, lease_ttl 10s, max_workers 50, labels zone=a, etcd auth as dynworkers, TLS, secrets sealed"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if strings.Contains(got, "s3cret") || strings.Contains(got, "cluster.key") {
		t.Errorf("the summary holds a secret: %s", got)
	}
	c.Endpoints = []string{"http://root:pw-in-url@127.0.0.1:2379"}
	if got := clusterSummary(c); strings.Contains(got, "pw-in-url") || !strings.Contains(got, "http://root:xxxxx@127.0.0.1:2379") {
		t.Errorf("an endpoint's password: %s", got)
	}
}

func TestUsageListsTheClusterCommands(t *testing.T) {
	stdout, _, rc := runCLI(t, "help")
	for _, want := range []string{"drain [-wait] HOST", "undrain HOST", "-cluster: the whole cluster", "[-cluster [-constraint k=v ...]]"} {
		if rc != 0 || !strings.Contains(stdout, want) {
			t.Errorf("usage lacks %q:\n%s", want, stdout)
		}
	}
}

// TestValidateClusterNeverPrintsThePassword: validate of a config with a
// cluster block prints a summary of it, and never the etcd password (read
// from password_file), whether the config is good or not.
func TestValidateClusterNeverPrintsThePassword(t *testing.T) {
	const password = "etcd-pw-must-not-show-0123"
	for _, tt := range []struct {
		name string
		mode os.FileMode
		rc   int
		want string
	}{
		{"good", 0o600, 0, "cluster: 1 etcd endpoints (http://127.0.0.1:2379), prefix /dynworkers/test/, lease_ttl 10s, max_workers 4, labels zone=a, etcd auth as dynworkers"},
		{"password file readable by others", 0o644, 1, "password_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pw := filepath.Join(dir, "etcd-password")
			if err := os.WriteFile(pw, []byte(password+"\n"), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pw, tt.mode); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, fmt.Sprintf(`
cluster {
  endpoints     = ["http://127.0.0.1:2379"]
  max_workers   = 4
  labels        = { zone = "a" }
  username      = "dynworkers"
  password_file = %q
}
`, pw))
			rc, out, errOut := runMain("validate", cfg)
			if rc != tt.rc || !strings.Contains(out+errOut, tt.want) {
				t.Errorf("rc %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", rc, tt.rc, tt.want, out, errOut)
			}
			if strings.Contains(out+errOut, password) {
				t.Errorf("validate printed the etcd password:\n%s%s", out, errOut)
			}
		})
	}
}
