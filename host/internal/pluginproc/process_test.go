package pluginproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// start starts a worker and makes sure it is gone at the end of the test.
func start(t *testing.T, o Options) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		p.Kill("test over")
		waitDone(t, p, 10*time.Second)
		assertGone(t, p.Pid())
	})
	return p
}

func exitError(t *testing.T, p *Process) *ExitError {
	t.Helper()
	var ee *ExitError
	if err := p.ExitErr(); !errors.As(err, &ee) {
		t.Fatalf("ExitErr = %v (%T), want an *ExitError", err, err)
	}
	return ee
}

func TestStartHealthStatusStop(t *testing.T) {
	launchLog(t)
	p := start(t, chaosOptions(t, map[string]any{}))
	if p.Pid() <= 0 {
		t.Fatalf("Pid = %d", p.Pid())
	}
	ctx := context.Background()
	if err := p.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
	raw, err := p.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var st struct {
		Mode string
		Pid  int
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Status %s: %v", raw, err)
	}
	if st.Mode != "run" || st.Pid != p.Pid() {
		t.Errorf("Status = %s, want mode run and pid %d", raw, p.Pid())
	}
	if isClosed(p.Done()) || p.ExitErr() != nil {
		t.Fatalf("running process: Done closed or ExitErr %v", p.ExitErr())
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Stop(sctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !isClosed(p.Done()) {
		t.Fatal("Stop returned before Done was closed")
	}
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr after Stop = %v", err)
	}
	assertGone(t, p.Pid())
	if err := p.Stop(sctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Health(ctx); err == nil {
		t.Error("Health of a stopped process succeeded")
	}
}

func TestPluginLogsAreRelogged(t *testing.T) {
	o := chaosOptions(t, map[string]any{})
	logger, sink := testLogger(t)
	o.Logger = logger
	seen := sink.seen("chaos worker starting")
	p := start(t, o)
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker's start log line did not reach the host logger")
	}
	for _, line := range strings.Split(sink.String(), "\n") {
		if strings.Contains(line, "chaos worker starting") && !strings.Contains(line, "test."+o.WorkerName) {
			t.Errorf("plugin log line not under the worker's name %q: %s", o.WorkerName, line)
		}
	}
	if !strings.Contains(sink.String(), fmt.Sprintf("pid=%d", p.Pid())) {
		t.Errorf("the worker's log line lacks its pid %d", p.Pid())
	}
}

func TestPanicEndsProcess(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{"mode": "panic", "delay": "300ms", "message": "boom"}))
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if ee.Code != 2 || ee.Signal != "" {
		t.Errorf("Code %d Signal %q, want exit status 2", ee.Code, ee.Signal)
	}
	if !strings.Contains(ee.Error(), "exit status 2: panic: chaos: boom") {
		t.Errorf("Error() = %q, want the exit status and panic message", ee.Error())
	}
	if !strings.Contains(ee.StderrTail, "goroutine") {
		t.Errorf("StderrTail lacks the stack trace:\n%s", ee.StderrTail)
	}
}

func TestExitCode(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{"mode": "exit", "code": 3, "delay": "300ms"}))
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if ee.Code != 3 {
		t.Errorf("Code = %d, want 3", ee.Code)
	}
	if got := ee.Error(); !strings.HasPrefix(got, "exit status 3") || !strings.Contains(got, "exiting as asked") {
		t.Errorf("Error() = %q, want exit status 3 and the last error logged", got)
	}
}

func TestExitClean(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{"mode": "exit_clean", "delay": "300ms"}))
	waitDone(t, p, 10*time.Second)
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr = %v, want nil for exit status 0", err)
	}
}

func TestKilledFromOutside(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{}))
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if ee.Code != -1 || ee.Signal != "SIGKILL" || ee.Reason != "" {
		t.Errorf("ExitError = %+v, want signal SIGKILL, code -1, no reason", ee)
	}
	if ee.Error() != "killed by SIGKILL" {
		t.Errorf("Error() = %q", ee.Error())
	}
}

func TestKillWithReason(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{}))
	p.Kill("because the test says so")
	p.Kill("second reason is ignored")
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if got := ee.Error(); got != "because the test says so: killed by SIGKILL" {
		t.Errorf("Error() = %q", got)
	}
}

// A worker that ignores Stop is killed when Stop's deadline passes, and
// Stop reports the kill. In mode ignore_stop the chaos process cannot end
// by itself (see the chaos command), so the test does not race with it:
// SIGKILL from the host is the only way out.
func TestIgnoreStopIsKilledAtDeadline(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{"mode": "ignore_stop"}))
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	begin := time.Now()
	err := p.Stop(ctx)
	took := time.Since(begin)
	if !isClosed(p.Done()) {
		t.Fatal("Stop returned before the process was gone")
	}
	// Generous slack above: the kill and the reaping may be slow on a
	// busy machine, but Stop must not give up waiting before the deadline.
	if took < timeout || took > timeout+5*time.Second {
		t.Errorf("Stop took %s with a %s deadline", took, timeout)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != "SIGKILL" || !strings.Contains(ee.Reason, "did not stop within shutdown_timeout") {
		t.Errorf("Stop = %v, want an *ExitError: killed by SIGKILL after shutdown_timeout", err)
	}
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr after Stop = %v, want nil", err)
	}
	assertGone(t, p.Pid())
}

// expiredCtx has a deadline that has passed but is not done yet, as a
// context whose timer has not fired yet on a busy machine.
type expiredCtx struct{ context.Context }

func (expiredCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// Once Stop's deadline has passed, shutdown leaves the process to Stop's
// kill even if ctx does not say so yet. Shutting go-plugin down then let
// the plugin exit 0 just before the kill, and Stop reported a clean exit
// of a worker whose Stop never returned (TestIgnoreStopIsKilledAtDeadline
// failed so under load).
func TestShutdownPastDeadlineDoesNotEndThePlugin(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{}))
	p.shutdown(expiredCtx{context.Background()}, true)
	// shutdown is synchronous: had it shut go-plugin down, the connection
	// would be closed by now and the plugin exiting.
	if err := p.Health(context.Background()); err != nil {
		t.Errorf("Health after shutdown past the deadline: %v", err)
	}
}

func TestConcurrentStop(t *testing.T) {
	p := start(t, chaosOptions(t, map[string]any{}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = p.Stop(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Stop %d: %v", i, err)
		}
	}
	assertGone(t, p.Pid())
}

func TestHungHealthIsKilled(t *testing.T) {
	o := chaosOptions(t, map[string]any{"mode": "hang_health"})
	o.HealthInterval = 50 * time.Millisecond
	o.HealthTimeout = 50 * time.Millisecond
	p := start(t, o)
	waitDone(t, p, 10*time.Second)
	ee := exitError(t, p)
	if ee.Signal != "SIGKILL" || !strings.Contains(ee.Reason, "health check failed 3 times in a row") {
		t.Errorf("ExitError = %v, want a kill for failed health checks", ee)
	}
	if !strings.Contains(ee.Reason, "health_timeout") {
		t.Errorf("Reason %q does not say the check timed out", ee.Reason)
	}
}

func TestHealthyWorkerIsNotKilled(t *testing.T) {
	o := chaosOptions(t, map[string]any{})
	logger, sink := testLogger(t)
	o.Logger = logger
	o.HealthInterval = 20 * time.Millisecond
	o.HealthTimeout = time.Second
	p := start(t, o)
	// The chaos worker counts the health checks it answered. The host
	// sends a check only once it has dealt with the answer to the one
	// before (a failure is logged, a third in a row kills the process and
	// ends the checks), so after five the first four answers have been
	// judged and anything they caused is in the log.
	sdktest.Eventually(t, 10*time.Second, func() bool {
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
		return st.HealthChecks >= 5
	}, "the worker did not answer 5 health checks")
	if isClosed(p.Done()) {
		t.Fatalf("healthy worker ended: %v", p.ExitErr())
	}
	if strings.Contains(sink.String(), "health check failed") {
		t.Errorf("health checks failed:\n%s", sink.String())
	}
}

func TestSlowStartTimesOut(t *testing.T) {
	pids := launchLog(t)
	o := chaosOptions(t, map[string]any{"mode": "slow_start", "delay": "1h"})
	// Long enough for the launch itself on a loaded machine (the timeout
	// covers it too; with 200 ms the process was sometimes never
	// launched), short next to the worker's hour-long Start.
	o.StartTimeout = 2 * time.Second
	begin := time.Now()
	p, err := Start(context.Background(), o)
	took := time.Since(begin)
	if p != nil || err == nil {
		t.Fatalf("Start = %v, %v; want an error", p, err)
	}
	var se *StartError
	if !errors.As(err, &se) || se.Permanent || IsPermanent(err) {
		t.Errorf("err = %#v, want a non-permanent *StartError", err)
	}
	if !strings.Contains(err.Error(), "start_timeout") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want start_timeout exceeded", err)
	}
	if took > o.StartTimeout+3*time.Second {
		t.Errorf("Start took %s with StartTimeout %s", took, o.StartTimeout)
	}
	if len(pids()) != 1 {
		t.Errorf("launched %d processes, want 1", len(pids()))
	}
	for _, pid := range pids() {
		assertGone(t, pid) // gone when Start returns, not just eventually
	}
}

func TestStartCancelled(t *testing.T) {
	pids := launchLog(t)
	o := chaosOptions(t, map[string]any{"mode": "slow_start", "delay": "1h"})
	logger, sink := testLogger(t)
	o.Logger = logger
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sink.seen("chaos worker starting")
		cancel()
	}()
	_, err := Start(ctx, o)
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("Start = %v, want cancelled", err)
	}
	for _, pid := range pids() {
		assertGone(t, pid)
	}
}

func TestStartError(t *testing.T) {
	pids := launchLog(t)
	_, err := Start(context.Background(), chaosOptions(t, map[string]any{"mode": "start_error", "permanent": true, "message": "bad port"}))
	if !IsPermanent(err) || !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "bad port") {
		t.Errorf("permanent start error: %v (permanent %v)", err, IsPermanent(err))
	}
	_, err = Start(context.Background(), chaosOptions(t, map[string]any{"mode": "start_error", "message": "flaky"}))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "chaos: flaky") {
		t.Errorf("transient start error: %v (permanent %v)", err, IsPermanent(err))
	}
	_, err = Start(context.Background(), chaosOptions(t, map[string]any{"mode": "nonsense"}))
	if !IsPermanent(err) || !strings.Contains(err.Error(), `mode "nonsense"`) {
		t.Errorf("invalid config: %v (permanent %v)", err, IsPermanent(err))
	}
	if n := len(pids()); n != 3 {
		t.Errorf("launched %d processes, want 3", n)
	}
	for _, pid := range pids() {
		assertGone(t, pid)
	}
}

func TestChecksumMismatch(t *testing.T) {
	pids := launchLog(t)
	path := testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "chaos"))
	o := chaosOptions(t, map[string]any{})
	o.Path = path
	o.Checksum = sha(t, path)
	testplugins.Copy(t, filepath.Join(pluginDir, "other"), path)
	_, err := Start(context.Background(), o)
	if !errors.Is(err, ErrBinaryChanged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "changed since it was described") {
		t.Errorf("Start = %v, want ErrBinaryChanged naming %s", err, path)
	}
	if n := len(pids()); n != 0 {
		t.Errorf("a changed binary was run %d times", n)
	}
}

func TestNoChecksum(t *testing.T) {
	o := chaosOptions(t, map[string]any{})
	o.Checksum = nil
	if _, err := Start(context.Background(), o); !IsPermanent(err) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("Start without checksum = %v", err)
	}
}

// startBinary starts a worker of a binary that is no proper plugin.
func startBinary(t *testing.T, path string, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	o := chaosOptions(t, map[string]any{})
	o.Path = path
	o.Checksum = sha(t, path)
	o.StartTimeout = timeout
	begin := time.Now()
	p, err := Start(context.Background(), o)
	if p != nil {
		p.Kill("test")
		t.Fatal("Start succeeded")
	}
	return time.Since(begin), err
}

func TestBrokenBinaries(t *testing.T) {
	pids := launchLog(t)
	dir := t.TempDir()
	copyAs := func(name string) string {
		return testplugins.Copy(t, chaosPath(), filepath.Join(dir, name))
	}
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		name string
		path string
		want []string
	}{
		{"stdout", copyAs("chaos-stdout"), []string{"printed", "to stdout", "chaos: hello on stdout"}},
		{"crash", copyAs("chaos-crash"), []string{"exited before the go-plugin handshake", "exit status 2", "panic: chaos: crashing"}},
		{"hang", copyAs("chaos-hang"), []string{"start_timeout", "handshake"}},
		{"script", write("script.sh", "#!/bin/sh\necho hi\n", 0o755), []string{`printed "hi" to stdout`}},
		{"text", write("notes.txt", "just some text\n", 0o755), []string{"cannot be executed", "exec format error"}},
		{"not executable", write("noexec", "#!/bin/sh\n", 0o644), []string{"cannot be executed", "permission denied"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			took, err := startBinary(t, tc.path, time.Second)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.path) {
				t.Errorf("error does not name the binary %s: %v", tc.path, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if took > 5*time.Second {
				t.Errorf("took %s", took)
			}
			for _, pid := range pids() {
				assertGone(t, pid)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	pids := launchLog(t)
	logger, _ := testLogger(t)
	resp, err := Describe(context.Background(), chaosPath(), 10*time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetClasses()) != 1 || resp.GetClasses()[0].GetName() != "chaos" {
		t.Fatalf("classes = %v", resp.GetClasses())
	}
	var mode bool
	for _, a := range resp.GetClasses()[0].GetSchema() {
		if a.GetName() == "mode" && a.GetDefaultJson() == `"run"` {
			mode = true
		}
	}
	if !mode {
		t.Errorf("schema lacks mode with default \"run\": %v", resp.GetClasses()[0].GetSchema())
	}
	if resp.GetSdkVersion() != sdk.Version {
		t.Errorf("sdk version %q", resp.GetSdkVersion())
	}
	if len(pids()) != 1 {
		t.Errorf("launched %d processes, want 1", len(pids()))
	}
	for _, pid := range pids() {
		assertGone(t, pid)
	}

	hang := testplugins.Copy(t, chaosPath(), filepath.Join(t.TempDir(), "chaos-hang"))
	_, err = Describe(context.Background(), hang, 300*time.Millisecond, logger)
	if err == nil || !strings.Contains(err.Error(), hang) || !strings.Contains(err.Error(), "describe timeout") {
		t.Errorf("Describe of a hanging binary = %v", err)
	}
}
