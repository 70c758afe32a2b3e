package sdktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The plugin and test an outside author writes (docs/plugin-guide.md,
// "Depending on the SDK").
const (
	outsideMain = `package main

import (
	"context"

	"github.com/dynworkers/dynworkers/sdk"
)

type Config struct {
	Name string ` + "`" + `config:"name" default:"world" help:"who is ready"` + "`" + `
}

// Class greets what arrives on greeter.in, on greeter.out.
var Class = sdk.Class{
	Name:    "outside.greeter",
	Version: "0.1.0",
	New: sdk.Construct(func(cfg Config) (sdk.Worker, error) {
		return sdk.Run(func(ctx context.Context, env *sdk.Env) error {
			err := env.Consume("greeter.in", func(ctx context.Context, m sdk.Message) error {
				return env.Publish(ctx, "greeter.out", append([]byte("hello, "), m.Body...), nil)
			})
			if err != nil {
				return err
			}
			env.Logger().Info("greeter ready", "name", cfg.Name)
			<-ctx.Done()
			return nil
		}), nil
	}),
}

func main() { sdk.Serve(Class) }
`
	outsideTest = `package main

import (
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

func TestGreeter(t *testing.T) {
	w := sdktest.Run(t, Class, map[string]any{"name": "unit"})
	w.Env.WaitLog("greeter ready")
	sdktest.Eventually(t, 10*time.Second, func() bool { return len(w.Env.Consumers()) == 1 }, "no consumer")
	if out, err := w.Env.Deliver("greeter.in", []byte("bob")); out != sdk.OutcomeAck || err != nil {
		t.Fatalf("Deliver = %v, %v", out, err)
	}
	if p := w.Env.WaitPublished("greeter.out", 1); string(p[0].Body) != "hello, bob" {
		t.Errorf("published %q", p[0].Body)
	}
}

func TestGreeterUnderHost(t *testing.T) {
	h := sdktest.StartHost(t, sdktest.HostOptions{
		Plugins: []string{sdktest.BuildPlugin(t, ".")},
		Config:  ` + "`" + `worker "g" {
  class = "outside.greeter"
  config { name = "acceptance" }
}` + "`" + `,
	})
	h.WaitLog("greeter ready")
	if w, ok := h.Status().Worker("g"); !ok || w.State != "running" || w.Pid == 0 {
		t.Errorf("status of g: %+v", w)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("the host exited with %v", err)
	}
}
`
)

// An author outside this repository depends on the SDK, writes a plugin
// and its tests (a unit test, and one under the real host that sdktest
// builds), and runs them with only the steps docs/plugin-guide.md gives:
// go mod init, go mod edit -replace (no tag needed), go get, go mod tidy,
// go test. The must-hold of issue 14: it passes in make test.
func TestOutsideModule(t *testing.T) {
	ci := os.Getenv("CI") != ""
	if testing.Short() && !ci {
		t.Skip("builds a module outside the repository, the plugin and the host")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if ci {
			t.Fatalf("the go command is not on PATH: %v", err)
		}
		t.Skipf("the go command is not on PATH: %v", err)
	}
	repo, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if rel, err := filepath.Rel(repo, dir); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the temporary module %s is inside the repository %s", dir, repo)
	}
	// The author's environment: no workspace, nothing of this repository's.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=", EnvHostBinary+"=")
	run := func(timeout time.Duration, args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = env
		done := make(chan struct{})
		timer := time.AfterFunc(timeout, func() {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
			}
		})
		b, err := cmd.CombinedOutput()
		close(done)
		timer.Stop()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(time.Minute, "mod", "init", "example.com/greeter")
	run(time.Minute, "mod", "edit",
		"-require", "github.com/dynworkers/dynworkers@v0.0.0-00010101000000-000000000000",
		"-replace", "github.com/dynworkers/dynworkers="+repo)
	write("main.go", outsideMain)
	write("main_test.go", outsideTest)
	run(2*time.Minute, "mod", "tidy")
	out := run(4*time.Minute, "test", "-count=1", "-v", "./...")
	for _, want := range []string{"--- PASS: TestGreeter ", "--- PASS: TestGreeterUnderHost "} {
		if !strings.Contains(out, want) {
			t.Errorf("go test output lacks %q:\n%s", want, out)
		}
	}
}
