package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

var created = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func sample() *State {
	return &State{Workers: []Worker{
		{Name: "SMPP Transport for account1", Class: "vumi.workers.smpp.transport.SMPPTransport",
			Config:    json.RawMessage(`{"host":"smpp.host.com","port":"2773","password":"password"}`),
			CreatedAt: created},
		{Name: "echo", Class: "echo", Supervisor: "root/campaign-a", CreatedAt: created.Add(time.Second)},
	}}
}

func openStore(t *testing.T) (*Store, string, *bytes.Buffer) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "var")
	var logs bytes.Buffer
	s, err := Open(dir, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir, &logs
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	s, dir, _ := openStore(t)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("dir mode = %o, want 700", perm)
	}
	if s.Path() != filepath.Join(dir, "workers.json") {
		t.Errorf("Path = %s", s.Path())
	}
}

func TestLoadMissingIsEmpty(t *testing.T) {
	s, _, _ := openStore(t)
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != Version || st.Workers == nil || len(st.Workers) != 0 {
		t.Errorf("Load = %+v, want an empty state", st)
	}
}

func TestRoundTrip(t *testing.T) {
	s, _, _ := openStore(t)
	want := sample()
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	// A new Store on the same directory, as after a host restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(filepath.Dir(s.Path()), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	want.Version = Version
	if !reflect.DeepEqual(normalize(t, got), normalize(t, want)) {
		t.Errorf("Load = %+v\nwant %+v", got, want)
	}
	if got.Workers[1].Config != nil {
		t.Errorf("absent config came back as %s", got.Workers[1].Config)
	}

	// Saving an empty state gives an empty list, not null.
	if err := s.Save(&State{}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path())
	if !strings.Contains(string(data), `"workers": []`) || !strings.Contains(string(data), `"version": 1`) {
		t.Errorf("file = %s", data)
	}
}

// normalize re-encodes configs compactly so that formatting does not count.
func normalize(t *testing.T, st *State) *State {
	c := st.Clone()
	for i, w := range c.Workers {
		if w.Config != nil {
			var b bytes.Buffer
			if err := json.Compact(&b, w.Config); err != nil {
				t.Fatal(err)
			}
			c.Workers[i].Config = b.Bytes()
		}
	}
	return c
}

func TestSaveIsPrivate(t *testing.T) {
	s, _, _ := openStore(t)
	// A file an operator restored with a wide mode is replaced by a 0600 one.
	if err := os.WriteFile(s.Path(), []byte(`{"version":1,"workers":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %o, want 600", perm)
	}
}

func TestFailedSaveKeepsOldContent(t *testing.T) {
	s, dir, _ := openStore(t)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(s.Path())

	// Fail midway: half the data written, then an error.
	s.write = func(w io.Writer, data []byte) error {
		if _, err := w.Write(data[:len(data)/2]); err != nil {
			return err
		}
		return errors.New("disk on fire")
	}
	st := sample()
	st.Put(Worker{Name: "third", Class: "echo", CreatedAt: created})
	err := s.Save(st)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Save = %v, want the write error", err)
	}
	if now, _ := os.ReadFile(s.Path()); !bytes.Equal(now, old) {
		t.Errorf("state file changed by a failed save:\n%s", now)
	}
	assertOnlyStateFile(t, dir)
	if got, err := s.Load(); err != nil || len(got.Workers) != 2 {
		t.Errorf("Load after failed save = %+v, %v", got, err)
	}
}

func TestSaveToReadOnlyDirKeepsOldContent(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestFailedSaveKeepsOldContent covers the failure")
	}
	s, dir, _ := openStore(t)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(s.Path())
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if err := s.Save(&State{}); err == nil {
		t.Fatal("Save to a read-only directory succeeded")
	}
	if now, _ := os.ReadFile(s.Path()); !bytes.Equal(now, old) {
		t.Errorf("state file changed by a failed save:\n%s", now)
	}
	assertOnlyStateFile(t, dir)
}

func TestSaveRejectsWhatLoadWould(t *testing.T) {
	s, _, _ := openStore(t)
	for _, st := range []*State{
		{Workers: []Worker{{Class: "echo"}}},
		{Workers: []Worker{{Name: "a"}}},
		{Workers: []Worker{{Name: "a", Class: "echo"}, {Name: "a", Class: "echo"}}},
		{Workers: []Worker{{Name: "a", Class: "echo", Config: json.RawMessage(`[1]`)}}},
	} {
		if err := s.Save(st); err == nil {
			t.Errorf("Save(%+v) succeeded", st.Workers)
		}
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected state was written: %v", err)
	}
}

func TestCorruptFileIsKeptAside(t *testing.T) {
	tests := []struct {
		name    string
		content string
		cause   string
	}{
		{"bad JSON", `{"version": 1, "workers": [`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"not an object", `[]`, "wrong JSON type"},
		{"wrong type", `{"version": 1, "workers": [{"name": "a", "class": "c", "created_at": "yesterday-SeKrEt"}]}`, "wrong JSON type"},
		{"unknown version", `{"version": 2, "workers": []}`, "unknown version 2"},
		{"no version", `{"workers": []}`, "unknown version 0"},
		{"duplicate", `{"version": 1, "workers": [{"name": "a", "class": "c"}, {"name": "a", "class": "c"}]}`, "listed twice"},
		{"config not object", `{"version": 1, "workers": [{"name": "a", "class": "c", "config": "x"}]}`, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir, logs := openStore(t)
			s.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)) }
			if err := os.WriteFile(s.Path(), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := s.Load()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load error = %v, want ErrCorrupt", err)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load error is %T, want *CorruptError", err)
			}
			wantAside := s.Path() + ".corrupt-20260102T020405Z"
			if ce.Path != s.Path() || ce.Aside != wantAside {
				t.Errorf("paths = %s, %s; want %s, %s", ce.Path, ce.Aside, s.Path(), wantAside)
			}
			for _, want := range []string{s.Path(), wantAside, tt.cause} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "SeKrEt") {
				t.Errorf("error quotes the file: %v", err)
			}
			if st == nil || len(st.Workers) != 0 || st.Version != Version {
				t.Errorf("state = %+v, want an empty one", st)
			}
			if got, err := os.ReadFile(wantAside); err != nil || string(got) != tt.content {
				t.Errorf("aside file = %q, %v; want the old content", got, err)
			}
			if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file still there: %v", err)
			}
			if out := logs.String(); !strings.Contains(out, "[ERROR]") || !strings.Contains(out, wantAside) {
				t.Errorf("log lacks an error naming the new file:\n%s", out)
			}

			// A second corrupt file in the same second gets another name, and
			// the host can save again.
			if err := os.WriteFile(s.Path(), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Load(); !errors.As(err, &ce) || ce.Aside != wantAside+"-1" {
				t.Errorf("second corrupt Load = %v, want it moved to %s-1", err, wantAside)
			}
			if got, _ := os.ReadFile(wantAside); string(got) != tt.content {
				t.Error("the first aside file was overwritten")
			}
			if err := s.Save(sample()); err != nil {
				t.Fatal(err)
			}
			if st, err := s.Load(); err != nil || len(st.Workers) != 2 {
				t.Errorf("Load after save = %+v, %v", st, err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 4 { // the file, two aside, the lock
				t.Errorf("dir has %d entries, want 4", len(entries))
			}
		})
	}
}

func TestLoadUnreadableIsNotCorrupt(t *testing.T) {
	s, _, _ := openStore(t)
	// A directory where the file should be cannot be read.
	if err := os.Mkdir(s.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err == nil || errors.Is(err, ErrCorrupt) || st != nil {
		t.Errorf("Load = %v, %v; want a plain error and no state", st, err)
	}
}

func TestOpenRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".workers.json.12345.tmp")
	other := filepath.Join(dir, "catalog-cache.json")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("other file removed: %v", err)
	}
}

func TestConcurrentSaves(t *testing.T) {
	s, dir, _ := openStore(t)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st := &State{}
			for j := 0; j <= i; j++ {
				st.Put(Worker{Name: fmt.Sprintf("w%d", j), Class: "echo", CreatedAt: created,
					Config: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))})
			}
			if err := s.Save(st); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := s.Load(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	// One complete file: the last save won, with all its workers.
	if len(st.Workers) == 0 {
		t.Fatal("no workers")
	}
	for j, w := range normalize(t, st).Workers {
		want := fmt.Sprintf(`{"n":%d}`, len(st.Workers)-1)
		if w.Name != fmt.Sprintf("w%d", j) || string(w.Config) != want {
			t.Errorf("worker %d = %s %s, want w%d %s", j, w.Name, w.Config, j, want)
		}
	}
	assertOnlyStateFile(t, dir)
}

func TestStateHelpers(t *testing.T) {
	st := sample()
	if w, ok := st.Lookup("echo"); !ok || w.Class != "echo" {
		t.Errorf("Lookup(echo) = %+v, %v", w, ok)
	}
	if _, ok := st.Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}
	c := st.Clone()
	c.Workers[0].Config[0] = 'X'
	c.Put(Worker{Name: "SMPP Transport for account1", Class: "replaced"})
	c.Put(Worker{Name: "new", Class: "echo"})
	if st.Workers[0].Config[0] != '{' || st.Workers[0].Class == "replaced" || len(st.Workers) != 2 {
		t.Error("Clone shares memory with the original")
	}
	if names := workerNames(c); names != "SMPP Transport for account1,echo,new" || c.Workers[0].Class != "replaced" {
		t.Errorf("after Put: %s (%s), want the replaced worker in its place", names, c.Workers[0].Class)
	}
	if !c.Remove("echo") || c.Remove("echo") {
		t.Error("Remove reported wrongly")
	}
	if names := workerNames(c); names != "SMPP Transport for account1,new" {
		t.Errorf("after Remove: %s", names)
	}
}

func workerNames(st *State) string {
	var names []string
	for _, w := range st.Workers {
		names = append(names, w.Name)
	}
	return strings.Join(names, ",")
}

func assertOnlyStateFile(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != FileName && e.Name() != LockFileName {
			t.Errorf("unexpected file left in the state dir: %s", e.Name())
		}
	}
}
