package bench

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/dynworkers/dynworkers/internal/wire"
)

const (
	checksumRuns = 50
	execRuns     = 30
)

// TestPluginBinary measures what every worker start pays before the worker
// runs: go-plugin's SecureConfig.Check (sha256 of the whole plugin binary,
// read from the page cache) and the plugin's own start-up, from exec to the
// go-plugin handshake line on its stdout.
func TestPluginBinary(t *testing.T) {
	f := setup(t)
	res := &BinaryResult{}
	for p, size := range map[string]*int64{f.plugin: &res.PluginBytes, f.host: &res.HostBytes} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		*size = fi.Size()
	}

	want := sha256File(t, f.plugin) // also brings the file into the page cache
	var sums []time.Duration
	for range checksumRuns {
		sc := &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}
		t0 := time.Now()
		ok, err := sc.Check(f.plugin)
		d := time.Since(t0)
		if err != nil || !ok {
			t.Fatalf("SecureConfig.Check = %v, %v", ok, err)
		}
		sums = append(sums, d)
	}
	res.Checksum, res.ChecksumUS = Summarize(sums), Micros(sums)

	socketDir(t)
	var execs []time.Duration
	for range execRuns {
		execs = append(execs, execToHandshake(t, f.plugin))
	}
	res.ExecToHandshake, res.ExecToHandshakeUS = Summarize(execs), Micros(execs)

	t.Logf("plugin %d bytes; sha256 (SecureConfig.Check) p50 %v max %v; exec→handshake p50 %v max %v",
		res.PluginBytes, res.Checksum.P50, res.Checksum.Max, res.ExecToHandshake.P50, res.ExecToHandshake.Max)
	record(func(r *Results) { r.Binary = res })
}

func sha256File(t *testing.T, path string) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// execToHandshake starts the plugin as go-plugin's client would (magic
// cookie, protocol version, parent pid) and times exec → the handshake
// line, e.g. "1|1|unix|/tmp/.../plugin123|grpc|". The process is then
// killed and reaped.
func execToHandshake(t *testing.T, path string) time.Duration {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(),
		wire.Handshake.MagicCookieKey+"="+wire.Handshake.MagicCookieValue,
		fmt.Sprintf("PLUGIN_PROTOCOL_VERSIONS=%d", wire.Handshake.ProtocolVersion),
		fmt.Sprintf("%s=%d", wire.EnvParentPID, os.Getpid()),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	d := time.Since(t0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil || !strings.Contains(line, "|unix|") || !strings.Contains(line, "|grpc") {
		t.Fatalf("plugin handshake line = %q, %v", line, err)
	}
	return d
}
