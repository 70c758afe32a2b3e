package pluginproc

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// DefaultDescribeTimeout is Describe's timeout when given none.
const DefaultDescribeTimeout = 10 * time.Second

// describeShutdown bounds the graceful end of a process after Describe.
const describeShutdown = 5 * time.Second

// Describe launches the binary once, asks which classes it offers, and
// shuts it down again; it returns once the process is gone. The launch and
// the Describe call together get timeout. The binary is not checked against
// a checksum (see DescribeWith).
func Describe(ctx context.Context, path string, timeout time.Duration, logger hclog.Logger) (*proto.DescribeResponse, error) {
	return DescribeWith(ctx, path, DescribeOptions{Timeout: timeout, Logger: logger})
}

// DescribeOptions are the options of DescribeWith. Zero values mean the
// defaults of Describe.
type DescribeOptions struct {
	// Timeout bounds the launch and the Describe call together; default
	// DefaultDescribeTimeout.
	Timeout time.Duration
	// Logger receives the plugin's stderr; nil discards.
	Logger hclog.Logger
	// Checksum, if set, is the sha256 the binary must have when it is
	// executed (go-plugin's SecureConfig): the catalog passes the one it
	// hashed (and found in the lock file), so a file replaced between the
	// hash and the launch is not run.
	Checksum []byte
	// Env holds extra "KEY=value" entries for the plugin's environment, as
	// Options.Env.
	Env []string
	// Exec, if set with Checksum, is the store of verified executables the
	// binary is run from (see ExecStore): its copy is made (and verified)
	// by this launch, and later launches of the binary run it without
	// hashing. Nil hashes the binary at this launch.
	Exec *ExecStore
}

// DescribeWith is Describe with options.
func DescribeWith(ctx context.Context, path string, o DescribeOptions) (*proto.DescribeResponse, error) {
	timeout, logger := o.Timeout, o.Logger
	if timeout <= 0 {
		timeout = DefaultDescribeTimeout
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lc := launchConfig{
		path:     path,
		checksum: o.Checksum,
		exec:     o.Exec,
		logger:   logger,
		env:      pluginEnv(logger, o.Env),
		timeout:  fmt.Sprintf("describe timeout (%s)", timeout),
		name:     "describe",
	}
	p, err := launch(dctx, lc)
	if err != nil {
		return nil, err
	}
	resp, err := p.worker.Describe(dctx, &proto.DescribeRequest{})
	if err == nil && !p.markRunning() {
		err = dctx.Err()
	}
	if err != nil {
		p.signalKill()
		<-p.done
		if dctx.Err() != nil {
			return nil, deadlineError(dctx, lc, "waiting for Describe to return")
		}
		p.mu.Lock()
		final := p.final
		p.mu.Unlock()
		if final != nil && final.Signal == "" {
			return nil, fmt.Errorf("plugin %s exited during Describe: %w", path, final)
		}
		return nil, fmt.Errorf("plugin %s: describe: %s", path, rpcMessage(err))
	}
	sctx, scancel := context.WithTimeout(ctx, describeShutdown)
	defer scancel()
	go p.shutdown(sctx, false)
	select {
	case <-p.done:
	case <-sctx.Done():
		p.Kill("did not exit after Describe")
		<-p.done
	}
	return resp, nil
}
