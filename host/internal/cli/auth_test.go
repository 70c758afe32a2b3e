package cli

import (
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
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

	// The operator's broker user, with the permissions of the operator guide.
	opsUser := "dw-ops-" + strings.ReplaceAll(sys, ".", "-")
	rabbitmqctl(t, "add_user", opsUser, "ops-pass")
	t.Cleanup(func() { rabbitmqctl(t, "delete_user", opsUser) })
	rabbitmqctl(t, "set_permissions", "-p", "/", opsUser, `^amq\.gen-.*`, `^(vumi\.control|amq\.gen-.*)$`, `^amq\.gen-.*`)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.UserPassword(opsUser, "ops-pass")
	opsURL := u.String()

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
    broker_users    = [%q]
    operations      = ["*"]
  }
}
`, url, key+".pub", opsUser))
	replaceInFile(t, cfg, `system_id = "test"`, fmt.Sprintf("system_id = %q", sys))
	h := startServe(t, "-config", cfg)
	line := h.waitLine("HTTP API listening")
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	h.waitLine("connected to the broker")
	web := "http://" + m[1]
	amqpFlags := []string{"-amqp", opsURL, "-host", "cli-test", "-system-id", sys}

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
	// Signed, but from another broker user than the principal's.
	if _, stderr, rc := runCLI(t, "stop", "w2", "-amqp", url, "-host", "cli-test", "-system-id", sys, "-key", key); rc != exitHostError || !strings.Contains(stderr, "broker users") {
		t.Errorf("signed stop from broker user guest: rc %d %s", rc, stderr)
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

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
