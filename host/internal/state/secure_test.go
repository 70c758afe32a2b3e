package state

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestSecondOpenIsRefusedNamingTheHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	s, err := OpenWith(dir, Options{Holder: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to an open file description: a second Open in
	// this process conflicts as another process's would.
	_, err = OpenWith(dir, Options{Holder: "host-2"})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{"pid=" + strconv.Itoa(os.Getpid()), "host=host-1", filepath.Join(dir, LockFileName)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, LockFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v; want mode 0600", fi, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenWith(dir, Options{Holder: "host-2"})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// TestLockHolderProcess is not a test on its own: run by
// TestSecondProcessIsRefused as a separate process, it holds the lock of
// $STATE_LOCK_DIR until its stdin closes.
func TestLockHolderProcess(t *testing.T) {
	dir := os.Getenv("STATE_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := OpenWith(dir, Options{Holder: "holder-host"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

func TestSecondProcessIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), "STATE_LOCK_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	_, err = OpenWith(dir, Options{Holder: "second"})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid="+strconv.Itoa(cmd.Process.Pid)) ||
		!strings.Contains(err.Error(), "host=holder-host") {
		t.Fatalf("Open while another process holds the dir = %v; want ErrLocked naming pid %d and holder-host", err, cmd.Process.Pid)
	}
	// Once the holder is gone, the directory is free.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenWith(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the holder exited: %v", err)
	}
	s.Close()
}

func TestOpenTightensModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	file := filepath.Join(dir, FileName)
	if err := os.WriteFile(file, []byte(`{"version":1,"workers":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := OpenWith(dir, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, file: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %04o", path, fi.Mode().Perm(), err, want)
		}
	}
	if strings.Count(logs.String(), "made a state path private") != 2 {
		t.Errorf("log does not say both were made private:\n%s", logs.String())
	}
}

func writeKey(t *testing.T, content []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state.key")
	if err := os.WriteFile(p, content, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKey(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, KeySize)
	if k, err := LoadKey(writeKey(t, raw, 0o600)); err != nil || !bytes.Equal(k, raw) {
		t.Errorf("raw key: %x, %v", k, err)
	}
	if k, err := LoadKey(writeKey(t, []byte(hex.EncodeToString(raw)+"\n"), 0o400)); err != nil || !bytes.Equal(k, raw) {
		t.Errorf("hex key: %x, %v", k, err)
	}
	p := writeKey(t, raw, 0o640)
	if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.Contains(err.Error(), "0640") {
		t.Errorf("group-readable key: %v; want a refusal naming the mode and the fix", err)
	}
	if _, err := LoadKey(writeKey(t, raw[:16], 0o600)); err == nil || !strings.Contains(err.Error(), "holds 16 bytes") {
		t.Errorf("short key: %v", err)
	}
	if _, err := LoadKey(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing key file accepted")
	}
}

func TestEncryptedState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	key := bytes.Repeat([]byte{1}, KeySize)
	s, err := OpenWith(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(s.Path())
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path())
	for _, clear := range []string{"smpp.host.com", "password", "SMPP Transport", `"workers":`} {
		if bytes.Contains(data, []byte(clear)) {
			t.Errorf("encrypted file contains %q:\n%s", clear, data)
		}
	}
	if bytes.Equal(first, data) {
		t.Error("two writes of the same state gave the same bytes: the nonce is not fresh")
	}
	got, err := s.Load()
	if err != nil || len(got.Workers) != 2 || !strings.Contains(string(got.Workers[0].Config), "password") {
		t.Fatalf("Load with the key = %+v, %v", got, err)
	}
	s.Close()

	// Another key, or none: a clear error, and the file stays as it is.
	for name, k := range map[string][]byte{"wrong key": bytes.Repeat([]byte{2}, KeySize), "no key": nil} {
		s2, err := OpenWith(dir, Options{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s2.Load()
		if !errors.Is(err, ErrWrongKey) || st != nil || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Load = %v, %v; want ErrWrongKey and no state", name, st, err)
		}
		if name == "no key" && !strings.Contains(err.Error(), "state_key_file") {
			t.Errorf("%s: %v does not name host.state_key_file", name, err)
		}
		if after, _ := os.ReadFile(s.Path()); !bytes.Equal(after, data) {
			t.Errorf("%s: the state file was changed", name)
		}
		s2.Close()
	}

	// An altered file fails authentication.
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	env.Ciphertext[0] ^= 1
	bad, _ := json.Marshal(env)
	if err := os.WriteFile(s.Path(), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	s3, err := OpenWith(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if _, err := s3.Load(); !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "altered") {
		t.Errorf("altered file: %v", err)
	}
}

func TestPlainStateIsEncryptedOnLoad(t *testing.T) {
	s, dir, _ := openStore(t)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	key := bytes.Repeat([]byte{3}, KeySize)
	s2, err := OpenWith(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	st, err := s2.Load()
	if err != nil || len(st.Workers) != 2 {
		t.Fatalf("Load = %+v, %v", st, err)
	}
	data, _ := os.ReadFile(s2.Path())
	if !isEnvelope(data) || bytes.Contains(data, []byte("password")) {
		t.Errorf("the plain file was not encrypted at Load:\n%s", data)
	}
}

func TestInvalidNamesAreKeptAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	content := `{"version":1,"workers":[
  {"name":"../x","class":"echo","created_at":"2026-03-04T05:06:07Z"},
  {"name":"ok","class":"echo","created_at":"2026-03-04T05:06:07Z"},
  {"name":"under-bad","class":"echo","supervisor":"root/..","created_at":"2026-03-04T05:06:07Z"}],
 "supervisors":[{"name":"a/b","parent":"root","strategy":"one_for_one","intensity":1,"period":"1s","created_at":"2026-03-04T05:06:07Z"}]}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func(name string) error {
		if name == ".." || strings.Contains(name, "/") || name == "" {
			return fmt.Errorf("a name must not be %q or contain \"/\"", name)
		}
		return nil
	}
	var logs bytes.Buffer
	s, err := OpenWith(dir, Options{ValidName: valid, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workers) != 1 || st.Workers[0].Name != "ok" || len(st.Supervisors) != 0 {
		t.Fatalf("Load kept %+v; want only worker ok", st)
	}
	for _, want := range []string{`worker=../x`, `worker=under-bad`, `supervisor=a/b`, "not restored", "kept_in="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// The refused entries are kept aside, privately; the state file no
	// longer has them.
	aside, _ := filepath.Glob(filepath.Join(dir, FileName+".rejected-*"))
	if len(aside) != 1 {
		t.Fatalf("aside files: %v", aside)
	}
	fi, _ := os.Stat(aside[0])
	data, _ := os.ReadFile(aside[0])
	if fi.Mode().Perm() != 0o600 || !strings.Contains(string(data), `"../x"`) || !strings.Contains(string(data), `"a/b"`) || strings.Contains(string(data), `"ok"`) {
		t.Errorf("aside file (mode %04o):\n%s", fi.Mode().Perm(), data)
	}
	if now, _ := os.ReadFile(s.Path()); strings.Contains(string(now), "../x") {
		t.Errorf("state file still has the refused entry:\n%s", now)
	}
}
