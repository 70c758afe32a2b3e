package pluginproc

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/sdk/proto"
)

// DefaultDescribeTimeout is Describe's timeout when given none.
const DefaultDescribeTimeout = 10 * time.Second

// describeShutdown bounds the graceful end of a process after Describe.
const describeShutdown = 5 * time.Second

// Describe launches the binary once, asks which classes it offers, and
// shuts it down again; it returns once the process is gone. The launch and
// the Describe call together get timeout. The binary is not checked against
// a checksum: the caller hashes it (the catalog does, before and after).
func Describe(ctx context.Context, path string, timeout time.Duration, logger hclog.Logger) (*proto.DescribeResponse, error) {
	if timeout <= 0 {
		timeout = DefaultDescribeTimeout
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lc := launchConfig{
		path:    path,
		logger:  logger,
		env:     pluginEnv(logger, nil),
		timeout: fmt.Sprintf("describe timeout (%s)", timeout),
		name:    "describe",
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
