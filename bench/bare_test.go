package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

const (
	// bareSpawns is how many plugin processes one bare run starts: as many
	// as the host's start-up target has workers.
	bareSpawns = 100
)

// bareConcurrencies are the numbers of spawns a bare run keeps in flight:
// one after another, and the values a host's start_concurrency is likely
// to have on a small machine. The floor the host is compared with is the
// fastest of them, so the ratio does not depend on the host's default.
var bareConcurrencies = []int{1, 2, 4, 8}

// bareClient is one plugin process started with plain go-plugin.
type bareClient struct {
	c   *plugin.Client
	cmd *exec.Cmd
}

// bareSpawn starts path with plain go-plugin, as a program that embeds
// go-plugin without the host would: the project's handshake and plugin
// set (internal/wire), gRPC, no SecureConfig, no socket directory of its
// own, no log plumbing, then makes the first RPC (Describe, which needs no
// Start) and returns once it is answered. The process keeps running until
// kill.
func bareSpawn(path string) (*bareClient, error) {
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", wire.EnvParentPID, os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.VersionedPlugins(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     time.Minute,
	})
	b := &bareClient{c: c, cmd: cmd}
	rpc, err := c.Client()
	if err != nil {
		b.kill()
		return nil, fmt.Errorf("go-plugin start of %s: %w", path, err)
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		b.kill()
		return nil, fmt.Errorf("dispensing %s: %w", wire.PluginName, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := raw.(proto.WorkerClient).Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		b.kill()
		return nil, fmt.Errorf("first RPC (Describe) of %s: %w", path, err)
	}
	if len(d.GetClasses()) == 0 {
		b.kill()
		return nil, fmt.Errorf("%s describes no class", path)
	}
	return b, nil
}

// kill kills the process and waits until go-plugin has reaped it.
func (b *bareClient) kill() { b.c.Kill() }

// pid is the plugin process's, or 0 if it has none.
func (b *bareClient) pid() int {
	if b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// bareRun starts n plugin processes with plain go-plugin, concurrency at a
// time, and returns the time from the first exec to the last first RPC
// answered and each spawn's own time (exec → first RPC answered). All n
// processes run until the last has answered, as a host's workers do; then
// they are killed and reaped, and the run checks that none is left.
func bareRun(path string, n, concurrency int) (time.Duration, []time.Duration, error) {
	clients := make([]*bareClient, n)
	each := make([]time.Duration, n)
	errs := make([]error, n)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s := time.Now()
			clients[i], errs[i] = bareSpawn(path)
			each[i] = time.Since(s)
		})
	}
	wg.Wait()
	total := time.Since(t0)
	var procs []Proc
	for _, c := range clients {
		if c == nil {
			continue
		}
		if p, err := Identify(c.pid()); err == nil {
			procs = append(procs, p)
		}
	}
	for _, c := range clients {
		if c != nil {
			c.kill()
		}
	}
	for _, err := range errs {
		if err != nil {
			return 0, nil, err
		}
	}
	if len(procs) != n {
		return 0, nil, fmt.Errorf("%d of %d bare plugin processes found running after their first RPC", len(procs), n)
	}
	for _, p := range procs {
		if !p.WaitGone(5 * time.Second) {
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			return 0, nil, fmt.Errorf("bare plugin process %d still alive 5s after go-plugin's Kill", p.Pid)
		}
	}
	return total, each, nil
}

// TestBareGoPlugin measures the floor the host's start-up is compared
// with: 100 spawns of the same hello-worker binary with plain go-plugin +
// their first RPC, one after another and with 2, 4 and 8 in flight, each
// configuration run bareRuns times after an unmeasured warm-up.
func TestBareGoPlugin(t *testing.T) {
	f := setup(t)
	socketDir(t)
	res := &BareResult{Spawns: bareSpawns}
	for _, c := range bareConcurrencies {
		run := BareRun{Concurrency: c}
		for i := range 1 + bareRuns {
			total, each, err := bareRun(f.plugin, bareSpawns, c)
			if err != nil {
				t.Fatalf("concurrency %d: %v", c, err)
			}
			if i == 0 {
				continue // warm-up
			}
			run.Totals = append(run.Totals, total)
			run.Each = append(run.Each, each...)
		}
		run.TotalUS, run.EachSummary = Micros(run.Totals), Summarize(run.Each)
		t.Logf("bare go-plugin, %d spawns + first RPC, %d in flight: median %v (runs %v); each p50 %v p99 %v",
			bareSpawns, c, Median(run.Totals), run.Totals, run.EachSummary.P50, run.EachSummary.P99)
		res.Runs = append(res.Runs, run)
	}
	record(func(r *Results) { r.Bare = res })
}
