// Command leaky is a test-only worker plugin that tries to leak its
// sensitive config value through every channel a worker has to the host,
// so that tests can check the host scrubs it everywhere. It offers the
// class "leaky" with a sensitive "secret" (and a sensitive short "pin").
//
// At Start it logs the secret with its logger (message and fields, also
// %q-quoted), with the standard log package (a plain stderr line), to
// stdout and to os.Stderr, and reports a metric whose name holds it. Its
// Status details hold it. Then, as configured: fail_start returns it in
// Start's error; crash_after panics with it after that delay; unhealthy
// answers health checks with it. spam_bytes writes that many bytes of
// plain log lines (spam_line_len long) to its stderr at Start, then logs
// "spam done".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	Secret      string        `config:"secret,sensitive,required" help:"the value that must not leak"`
	Pin         string        `config:"pin,sensitive" help:"a short sensitive value"`
	FailStart   bool          `config:"fail_start" help:"Start fails with the secret in its error"`
	CrashAfter  time.Duration `config:"crash_after" help:"panic with the secret this long after Start (0: never)"`
	Unhealthy   bool          `config:"unhealthy" help:"health checks fail with the secret"`
	SpamBytes   int           `config:"spam_bytes" help:"bytes of log lines to write to stderr at Start"`
	SpamLineLen int           `config:"spam_line_len" default:"100" help:"length of a spam line"`
}

// rawStderr is the process's stderr (fd 2) as it was before sdk.Serve
// redirected os.Stderr: what a C library or a crash writes to.
var rawStderr io.Writer = os.Stderr

type worker struct {
	cfg config
	env *sdk.Env
}

func (w *worker) Start(ctx context.Context, env *sdk.Env) error {
	w.env = env
	s := w.cfg.Secret
	env.Logger().Info("connecting with password "+s, "password", s, "pin", w.cfg.Pin, "url", "amqp://user:"+s+"@broker/")
	env.Logger().Warn(fmt.Sprintf("quoted %q", s))
	log.Printf("plain stderr line with %s", s)
	fmt.Println("stdout line with", s)
	fmt.Fprintln(os.Stderr, "redirected stderr line with", s)
	_ = env.Metric("logins."+s, 1, sdk.AggSum)
	if w.cfg.SpamBytes > 0 {
		line := strings.Repeat("x", max(w.cfg.SpamLineLen-1, 0)) + "\n"
		for n := 0; n < w.cfg.SpamBytes; n += len(line) {
			if _, err := io.WriteString(rawStderr, line); err != nil {
				break
			}
		}
		env.Logger().Info("spam done")
	}
	if w.cfg.FailStart {
		return fmt.Errorf("cannot bind: server refused password %s", s)
	}
	if d := w.cfg.CrashAfter; d > 0 {
		go func() {
			time.Sleep(d)
			env.Logger().Error("giving up", "error", errors.New("lost password "+s))
			panic(fmt.Sprintf("connection lost (password %q)", s))
		}()
	}
	return nil
}

func (w *worker) Stop(context.Context) error { return nil }

func (w *worker) Health(context.Context) error {
	if w.cfg.Unhealthy {
		return fmt.Errorf("bind failed for password %s", w.cfg.Secret)
	}
	return nil
}

func (w *worker) Status(context.Context) (map[string]any, error) {
	return map[string]any{
		"password": w.cfg.Secret,
		"bind":     "smpp://u:" + w.cfg.Secret + "@smsc",
		"pin":      w.cfg.Pin,
		"nested":   []any{map[string]any{"k": w.cfg.Secret}},
	}, nil
}

func main() {
	log.SetFlags(0)
	sdk.Serve(sdk.Class{
		Name:        "leaky",
		Description: "Tries to leak its secret everywhere (tests only).",
		Version:     "0.1.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			return &worker{cfg: cfg}, nil
		}),
	})
}
