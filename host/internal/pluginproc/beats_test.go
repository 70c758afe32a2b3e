package pluginproc

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// killMargin is what a test allows beyond a health bound for the kill
// itself, its reaping and a loaded machine's scheduling (the race detector
// and other test binaries running at the same time).
const killMargin = 1500 * time.Millisecond

// healthBound is the documented bound within which a worker whose health
// checks fail or that stopped answering is killed.
func healthBound(o Options) time.Duration {
	return o.HealthInterval*time.Duration(o.HealthFailures) + o.HealthTimeout
}

// healthChecks returns how many health checks the test plugin answered, from
// its status details.
func healthChecks(t *testing.T, p *Process) int {
	t.Helper()
	raw, err := p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		HealthChecks int `json:"health_checks"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Status %s: %v", raw, err)
	}
	return st.HealthChecks
}

// TestHungHealthIsKilledWithinBound runs a worker whose Health hangs from
// its first check, once with health beats and once polled, and requires the
// kill within health_interval × health_failures + health_timeout of Start.
func TestHungHealthIsKilledWithinBound(t *testing.T) {
	for _, poll := range []bool{false, true} {
		name := "beats"
		if poll {
			name = "polled"
		}
		t.Run(name, func(t *testing.T) {
			o := chaosOptions(t, map[string]any{"mode": "hang_health"})
			o.HealthInterval = 300 * time.Millisecond
			o.HealthTimeout = 200 * time.Millisecond
			o.HealthFailures = 3
			o.pollHealth = poll
			p := start(t, o)
			began := time.Now()
			waitDone(t, p, 20*time.Second)
			took := time.Since(began)
			t.Logf("killed %s after Start (bound %s)", took, healthBound(o))
			ee := exitError(t, p)
			if ee.Signal != "SIGKILL" || !strings.Contains(ee.Reason, "health check failed 3 times in a row") ||
				!strings.Contains(ee.Reason, "no answer within health_timeout (200ms)") {
				t.Errorf("ExitError = %v, want a kill for 3 health checks without an answer", ee)
			}
			if bound := healthBound(o); took > bound+killMargin {
				t.Errorf("killed %s after Start, want within the bound %s (+%s for the kill on a loaded machine)", took, bound, killMargin)
			}
			if got := p.beats.Load(); poll != (got == 0) {
				t.Errorf("%d health beats received, polled %v", got, poll)
			}
		})
	}
}

// TestFrozenPluginIsKilledWithinBound freezes a healthy worker's plugin
// process with SIGSTOP. Its health beats stop; the silence counts as failed
// checks, and the process is killed within the same bound as a hung Health.
func TestFrozenPluginIsKilledWithinBound(t *testing.T) {
	o := chaosOptions(t, map[string]any{})
	o.HealthInterval = 400 * time.Millisecond
	o.HealthTimeout = 200 * time.Millisecond
	o.HealthFailures = 3
	p := start(t, o)
	sdktest.Eventually(t, 10*time.Second, func() bool { return p.beats.Load() >= 2 }, "no health beats from a healthy worker")
	if err := syscall.Kill(p.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	waitDone(t, p, 20*time.Second)
	took := time.Since(frozen)
	t.Logf("killed %s after SIGSTOP (bound %s)", took, healthBound(o))
	ee := exitError(t, p)
	if ee.Signal != "SIGKILL" || !strings.Contains(ee.Reason, "health check failed 3 times in a row") ||
		!strings.Contains(ee.Reason, "no health beat for") {
		t.Errorf("ExitError = %v, want a kill for 3 silent health intervals", ee)
	}
	// The slack given to the first beat's delivery is part of the bound.
	bound := healthBound(o) + min(o.HealthInterval/4, healthBeatSlackMax)
	if took > bound+killMargin {
		t.Errorf("killed %s after SIGSTOP, want within the bound %s (+%s for the kill on a loaded machine)", took, bound, killMargin)
	}
	// Frozen just after a beat, the first silence that counts ends an
	// interval and a timeout later, the last two intervals after it.
	if low := o.HealthInterval*time.Duration(o.HealthFailures-1) + o.HealthTimeout - o.HealthInterval; took < low {
		t.Errorf("killed %s after SIGSTOP, sooner than the silence allows (%s)", took, low)
	}
}

// TestHealthBeatsKeepAHealthyWorker runs a healthy worker with short
// intervals, with health beats and polled: it is never judged unhealthy.
func TestHealthBeatsKeepAHealthyWorker(t *testing.T) {
	for _, poll := range []bool{false, true} {
		name := "beats"
		if poll {
			name = "polled"
		}
		t.Run(name, func(t *testing.T) {
			o := chaosOptions(t, map[string]any{})
			logger, sink := testLogger(t)
			o.Logger = logger
			o.HealthInterval = 20 * time.Millisecond
			o.HealthTimeout = time.Second
			o.pollHealth = poll
			p := start(t, o)
			sdktest.Eventually(t, 10*time.Second, func() bool { return healthChecks(t, p) >= 10 }, "the worker did not answer 10 health checks")
			if !poll {
				// The worker answered ten checks; the beats of all but the
				// last were sent, and each is judged as it arrives.
				sdktest.Eventually(t, 10*time.Second, func() bool { return p.beats.Load() >= 9 }, "the host did not receive the beats")
			} else if n := p.beats.Load(); n != 0 {
				t.Errorf("%d health beats received by a host told to poll", n)
			}
			if isClosed(p.Done()) || !p.Healthy() {
				t.Fatalf("healthy worker ended or judged unhealthy: %v", p.ExitErr())
			}
			if strings.Contains(sink.String(), "health check failed") {
				t.Errorf("health checks failed:\n%s", sink.String())
			}
		})
	}
}

// TestUnhealthyWorkerRecovers runs a worker whose Health fails for a while
// after Start and then passes: the failures are logged and Healthy says so,
// and once a check passes the worker is healthy again and not killed.
func TestUnhealthyWorkerRecovers(t *testing.T) {
	o := chaosOptions(t, map[string]any{"unhealthy_for": "250ms", "message": "warming up"})
	logger, sink := testLogger(t)
	o.Logger = logger
	o.HealthInterval = 100 * time.Millisecond
	o.HealthTimeout = time.Second
	o.HealthFailures = 100 // so that only recovery ends the failures
	failed := sink.seen("unhealthy: warming up")
	p := start(t, o)
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker's failing health check was not logged")
	}
	sdktest.Eventually(t, 10*time.Second, p.Healthy, "the worker did not become healthy again")
	if isClosed(p.Done()) {
		t.Fatalf("recovering worker ended: %v", p.ExitErr())
	}
	if p.beats.Load() == 0 {
		t.Error("no health beats received")
	}
}

// TestPluginWithoutHealthBeatsIsPolled runs a plugin that serves the Worker
// service without HealthBeats, as one built with an older SDK: the host
// polls its Health instead, and keeps it while it is healthy.
func TestPluginWithoutHealthBeatsIsPolled(t *testing.T) {
	path := filepath.Join(pluginDir, "oldsdk")
	o := chaosOptions(t, map[string]any{})
	o.Path, o.Checksum, o.Class, o.ConfigJSON = path, sha(t, path), "oldsdk", []byte("{}")
	logger, sink := testLogger(t)
	o.Logger = logger
	o.HealthInterval = 20 * time.Millisecond
	o.HealthTimeout = time.Second
	p := start(t, o)
	sdktest.Eventually(t, 10*time.Second, func() bool { return healthChecks(t, p) >= 5 }, "the host did not poll the worker's Health")
	if n := p.beats.Load(); n != 0 {
		t.Errorf("%d health beats received from a plugin without them", n)
	}
	if isClosed(p.Done()) || !p.Healthy() {
		t.Fatalf("healthy worker ended or judged unhealthy: %v", p.ExitErr())
	}
	if strings.Contains(sink.String(), "health check failed") {
		t.Errorf("health checks failed:\n%s", sink.String())
	}
}
