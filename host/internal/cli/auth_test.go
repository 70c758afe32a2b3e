package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// keygen writes a key pair (private 0600); -key signs start, stop and
// status over HTTP and AMQP for a real host that requires signatures, and
// the same commands without -key are refused.
func TestKeygenAndSigning(t *testing.T) {
	url := brokerURL(t)
	sys := brokertest.ID(t)
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, "cli-test"), control.AnyQueue(sys)}, nil)

	keys := t.TempDir()
	key := filepath.Join(keys, "ops.key")
	stdout, stderr, rc := runCLI(t, "keygen", key)
	if rc != 0 || !strings.Contains(stdout, key+".pub") {
		t.Fatalf("keygen: rc %d\n%s%s", rc, stdout, stderr)
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v, want mode 0600", st.Mode(), err)
	}
	if _, stderr, rc := runCLI(t, "keygen", key); rc == 0 || !strings.Contains(stderr, "exists") {
		t.Fatalf("keygen over an existing key: rc %d %s", rc, stderr)
	}

	cfg := writeConfig(t, fmt.Sprintf(`amqp {
  url = %q
}
control {
  require = true
  principal "ops" {
    public_key_file = %q
    operations      = ["*"]
  }
}
`, url, key+".pub"))
	replaceInFile(t, cfg, `system_id = "test"`, fmt.Sprintf("system_id = %q", sys))
	h := startServe(t, "-config", cfg)
	line := h.waitLine("HTTP API listening")
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	h.waitLine("connected to the broker")
	web := "http://" + m[1]
	amqpFlags := []string{"-amqp", url, "-host", "cli-test", "-system-id", sys}

	// Unsigned: refused over both transports.
	if _, stderr, rc := runCLI(t, "start", "w1", "-class", "chaos", "-http", web); rc != exitHostError || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("unsigned start over HTTP: rc %d %s", rc, stderr)
	}
	if _, stderr, rc := runCLI(t, append([]string{"start", "w1", "-class", "chaos"}, amqpFlags...)...); rc != exitHostError || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("unsigned start over AMQP: rc %d %s", rc, stderr)
	}
	// Signed: carried out.
	if stdout, stderr, rc := runCLI(t, "start", "w1", "-class", "chaos", "-http", web, "-key", key); rc != 0 {
		t.Fatalf("signed start over HTTP: rc %d %s%s", rc, stdout, stderr)
	}
	if stdout, stderr, rc := runCLI(t, append([]string{"start", "w2", "-class", "chaos", "-key", key}, amqpFlags...)...); rc != 0 {
		t.Fatalf("signed start over AMQP: rc %d %s%s", rc, stdout, stderr)
	}
	if stdout, stderr, rc := runCLI(t, append([]string{"status", "-key", key}, amqpFlags...)...); rc != 0 || !strings.Contains(stdout, "w1") || !strings.Contains(stdout, "w2") {
		t.Fatalf("signed status over AMQP: rc %d %s%s", rc, stdout, stderr)
	}
	if stdout, stderr, rc := runCLI(t, "stop", "w2", "-http", web, "-key", key); rc != 0 {
		t.Fatalf("signed stop over HTTP: rc %d %s%s", rc, stdout, stderr)
	}
	// A wrong key id, and a key others can read, are refused clearly.
	if _, stderr, rc := runCLI(t, "stop", "w1", "-http", web, "-key", key, "-key-id", "nobody"); rc != exitHostError || !strings.Contains(stderr, `unknown key id "nobody"`) {
		t.Errorf("wrong key id: rc %d %s", rc, stderr)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, rc := runCLI(t, "stop", "w1", "-http", web, "-key", key); rc != exitUsage || !strings.Contains(stderr, "chmod 600") {
		t.Errorf("world-readable key: rc %d %s", rc, stderr)
	}
}
