package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

// pikaPython is the interpreter the pika example runs with: Debian's
// python3-pika installs pika for /usr/bin/python3 (scripts/ensure-pika.sh).
func pikaPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("PIKA_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import pika").CombinedOutput(); err != nil {
		msg := "pika is not importable by " + py + " (run scripts/ensure-pika.sh, or apt-get install python3-pika): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// docExample returns the code block that follows marker in a doc file.
func docExample(t *testing.T, doc, marker string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "..", "docs", doc)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("%s has no %q", path, marker)
	}
	text = text[i:]
	start := strings.Index(text, "```python\n")
	if start < 0 {
		t.Fatalf("no python block after %q in %s", marker, path)
	}
	text = text[start+len("```python\n"):]
	end := strings.Index(text, "\n```")
	if end < 0 {
		t.Fatalf("unterminated python block in %s", path)
	}
	return text[:end+1]
}

// The pika signing example of docs/control-protocol.md, run as written
// (with this test's key file, routing key and broker URL), starts a worker
// on a host whose policy requires signed control messages.
func TestPikaSigningExample(t *testing.T) {
	py := pikaPython(t)
	sys := brokertest.ID(t)
	k := newAuthKeys(t)
	h := amqpHost(t, sys, "h1", k.policy())
	script := docExample(t, "control-protocol.md", "<!-- pika-signing-example")
	for old, new := range map[string]string{
		`"keys/deploy.secret"`:                    `"` + filepath.Join(k.dir, "deploy.secret") + `"`,
		`"global.host-a"`:                         `"` + sys + `.h1"`,
		`"amqp://guest:guest@127.0.0.1:5672/%2F"`: `"` + strings.TrimSuffix(brokertest.URL(t), "/") + `/%2F"`,
	} {
		if !strings.Contains(script, old) {
			t.Fatalf("the example no longer has %s:\n%s", old, script)
		}
		script = strings.ReplaceAll(script, old, new)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the pika example failed: %v\n%s", err, out)
	}
	h.waitStarted("smpp-1")

	// The Ed25519 variant: the same script with the signing line replaced
	// by the documented one (Debian's python3-cryptography).
	ed := docExample(t, "control-protocol.md", "With an Ed25519 key")
	ed = strings.ReplaceAll(ed, `"keys/ops.key"`, `"`+filepath.Join(k.dir, "ops.key")+`"`)
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if strings.Contains(l, "hmac.new(SECRET") {
			for _, el := range strings.Split(strings.TrimSpace(ed), "\n") {
				lines = append(lines, "    "+el)
			}
			continue
		}
		lines = append(lines, l)
	}
	edScript := strings.Join(lines, "\n")
	for old, new := range map[string]string{`KEY_ID, SECRET = "deploy"`: `KEY_ID, SECRET = "ops"`, `"smpp-1"`: `"smpp-ed"`} {
		if !strings.Contains(edScript, old) {
			t.Fatalf("the example no longer has %s", old)
		}
		edScript = strings.ReplaceAll(edScript, old, new)
	}
	if out, err := exec.CommandContext(ctx, py, "-c", edScript).CombinedOutput(); err != nil {
		t.Fatalf("the Ed25519 variant failed: %v\n%s\n%s", err, out, edScript)
	}
	h.waitStarted("smpp-ed")
	if strings.Contains(h.logs.String(), "control request failed") {
		t.Errorf("a control request failed:\n%s", h.logs.String())
	}
}
