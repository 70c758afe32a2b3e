package cli

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
)

// clusterServe runs `dynworkers serve` as host name of the cluster on e,
// with labels zone=zone, and returns its HTTP API's URL.
func clusterServe(t *testing.T, e *etcdtest.Server, name, zone string) string {
	t.Helper()
	cfg := writeConfig(t, fmt.Sprintf(`
cluster {
  endpoints = [%q]
  labels    = { zone = %q }
}
`, e.Endpoint(), zone))
	replaceInFile(t, cfg, `name = "cli-test"`, fmt.Sprintf("name = %q", name))
	h := startServe(t, "-config", cfg)
	line := h.waitLine("HTTP API listening")
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	return "http://" + m[1]
}

// clusterView asks the API at url for the cluster view.
func clusterView(t *testing.T, url string) (api.ClusterView, string) {
	t.Helper()
	var v api.ClusterView
	stdout, stderr, rc := runCLI(t, "status", "-cluster", "-json", "-http", url)
	if rc == 0 {
		if err := json.Unmarshal([]byte(stdout), &v); err != nil {
			t.Fatalf("status -cluster -json: %v\n%s", err, stdout)
		}
	}
	return v, stdout + stderr
}

// TestClusterCommandsOnRealHosts: two real hosts on a real etcd, driven by
// the CLI only: cluster starts placed by constraint and load, the view
// from either host, a drain that moves a worker (drain -wait prints it)
// and undrain. NEEDS the cluster Store and Agent and the daemon's
// ClusterHost.
func TestClusterCommandsOnRealHosts(t *testing.T) {
	e := etcdtest.Start(t)
	a := clusterServe(t, e, "host-a", "a")
	b := clusterServe(t, e, "host-b", "b")

	deadline := time.Now().Add(waitTimeout)
	for {
		v, out := clusterView(t, a)
		alive := 0
		for _, h := range v.Hosts {
			if h.Alive {
				alive++
			}
		}
		if alive == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two hosts are not both alive within %s:\n%s", waitTimeout, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	stdout, stderr, rc := runCLI(t, "start", "w-b", "-class", "chaos", "-cluster", "-constraint", "zone=b", "-http", a)
	if rc != 0 || !regexp.MustCompile(`^started worker "w-b" \(on host-b, pid [0-9]+, running\)\n$`).MatchString(stdout) {
		t.Fatalf("start -constraint zone=b through host-a: rc %d\n%s%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start", "w-free", "-class", "chaos", "-cluster", "-http", b)
	if rc != 0 || !regexp.MustCompile(`^started worker "w-free" \(on host-a, pid [0-9]+, running\)\n$`).MatchString(stdout) {
		t.Fatalf("start through host-b (host-a has fewer workers): rc %d\n%s%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start", "w-b", "-class", "chaos", "-cluster", "-constraint", "zone=b", "-http", b)
	if rc != 0 || !strings.Contains(stdout, `worker "w-b" already runs with this spec: unchanged (on host-b`) {
		t.Errorf("the same start through the other host: rc %d\n%s%s", rc, stdout, stderr)
	}

	// The hosts report their load as it changes: wait for the view to
	// settle.
	rows := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^host-a +yes +no +(yes|no) +- +1 +1 +zone=a$`),
		regexp.MustCompile(`(?m)^host-b +yes +no +(yes|no) +- +1 +1 +zone=b$`),
		regexp.MustCompile(`(?m)^w-b +chaos +host-b +running +[0-9]+ +[0-9]+s +0$`),
		regexp.MustCompile(`(?m)^w-free +chaos +host-a +running +[0-9]+ +[0-9]+s +0$`),
	}
	deadline = time.Now().Add(waitTimeout)
	for {
		stdout, stderr, rc = runCLI(t, "status", "-cluster", "-http", b)
		missing := ""
		for _, want := range rows {
			if !want.MatchString(stdout) {
				missing = want.String()
			}
		}
		if rc == 0 && missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status -cluster lacks %s within %s: rc %d\n%s%s", missing, waitTimeout, rc, stdout, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	stdout, stderr, rc = runCLI(t, "drain", "-wait", "-timeout", "2m", "host-a", "-http", b)
	want := "draining host host-a: 1 cluster workers to move (w-free)\n" +
		"moved w-free: host-a -> host-b\n" +
		"host host-a is drained: no cluster worker left on it\n"
	if rc != 0 || stdout != want {
		t.Fatalf("drain -wait: rc %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", rc, stdout, want, stderr)
	}
	v, out := clusterView(t, a)
	if v.SystemID != "test" || v.Prefix != "/dynworkers/test/" || v.From != "host-a" {
		t.Errorf("the view names system %q, prefix %q, from %q; want test, /dynworkers/test/, host-a", v.SystemID, v.Prefix, v.From)
	}
	for _, w := range v.Workers {
		if w.RunningOn != "host-b" || w.State != "running" {
			t.Errorf("after the drain: %+v\n%s", w, out)
		}
	}
	for _, h := range v.Hosts {
		if h.Draining != (h.Name == "host-a") {
			t.Errorf("after the drain: %+v", h)
		}
	}
	stdout, stderr, rc = runCLI(t, "undrain", "host-a", "-http", a)
	if rc != 0 || stdout != "undrained host host-a: it takes new cluster workers again\n" {
		t.Errorf("undrain: rc %d\n%s%s", rc, stdout, stderr)
	}
	stdout, stderr, rc = runCLI(t, "start", "w-next", "-class", "chaos", "-cluster", "-http", b)
	if rc != 0 || !strings.Contains(stdout, "(on host-a,") {
		t.Errorf("a start after undrain goes to the emptier host-a: rc %d\n%s%s", rc, stdout, stderr)
	}
}
