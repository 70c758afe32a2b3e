package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzLoadStateFile loads any content of workers.json. It checks: no
// panic; Load either returns a usable state, leaving the file as it was,
// or keeps the file aside byte for byte under a new name and returns an
// empty state and a *CorruptError, never anything else; a usable state
// saves and loads back to the same state, and saving it again writes the
// same bytes; and a corrupt file's error never repeats a string of a
// worker's config (those hold secrets).
func FuzzLoadStateFile(f *testing.F) {
	var b bytes.Buffer
	st := sample()
	st.Version = Version
	st.Supervisors = []Supervisor{{Name: "campaign-a", Parent: "root", Strategy: "one_for_all", Intensity: 3, Period: "1m30s", CreatedAt: created}}
	if err := json.NewEncoder(&b).Encode(st); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		b.String(),
		`{"version": 1, "workers": []}`,
		`{"version": 1, "workers": [`, ``, `[]`, `null`, `{}`,
		`{"version": 1, "workers": [{"name": "a", "class": "c", "created_at": "yesterday-SeKrEt"}]}`,
		`{"version": 2, "workers": []}`, `{"workers": []}`,
		`{"version": 1, "workers": [{"name": "a", "class": "c"}, {"name": "a", "class": "c"}]}`,
		`{"version": 1, "workers": [{"name": "a", "class": "c", "config": "x"}]}`,
		`{"version": 1, "workers": [{"name": "a", "class": "c", "config": {"password": "hunter2-SeKrEt"}}], "supervisors": [{"name": "a", "parent": "root", "period": "1s"}]}`,
		`{"version": 1, "workers": [{"name": "../x", "class": "c", "config": null, "supervisor": "root/../../etc"}]}`,
		`{"Version": 1, "WORKERS": [{"Name": "a", "CLASS": "c", "created_at": "2026-03-04T05:06:07.123456789+14:00"}], "workers": null}`,
		`{"version": 1.0, "workers": [{"name": "a\u0000", "class": "c", "config": {"a": 1e400, "a": [{}]}}]}`,
		`{"version": 1, "workers": [], "supervisors": [{"name": "s", "parent": "root", "period": "-1s", "intensity": -5}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "var")
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.now = func() time.Time { return created }
		if err := os.WriteFile(s.Path(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := s.Load()
		if err != nil {
			checkCorrupt(t, s, st, err, data)
			return
		}
		if st == nil || st.Version != Version || st.Workers == nil {
			t.Fatalf("Load = %+v without an error", st)
		}
		if got, err := os.ReadFile(s.Path()); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load changed the file: %q, %v", got, err)
		}
		// Save, load back, save again.
		if err := s.Save(st); err != nil {
			t.Fatalf("Save of a loaded state: %v", err)
		}
		saved, _ := os.ReadFile(s.Path())
		st2, err := s.Load()
		if err != nil {
			t.Fatalf("Load of a saved state: %v\n%s", err, saved)
		}
		if !reflect.DeepEqual(normalizeAll(t, st2), normalizeAll(t, st)) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st, st2)
		}
		if err := s.Save(st2); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(s.Path()); !bytes.Equal(again, saved) {
			t.Fatalf("a second save differs:\n%s\n%s", saved, again)
		}
	})
}

// normalizeAll is normalize, and no supervisors the same as an empty list
// of them (Save leaves out an empty list).
func normalizeAll(t *testing.T, st *State) *State {
	c := normalize(t, st)
	if len(c.Supervisors) == 0 {
		c.Supervisors = nil
	}
	return c
}

// checkCorrupt checks what Load returned for a file it could not use.
func checkCorrupt(t *testing.T, s *Store, st *State, err error, data []byte) {
	t.Helper()
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("Load error %v is not a *CorruptError", err)
	}
	if st == nil || st.Version != Version || st.Workers == nil || len(st.Workers) != 0 || len(st.Supervisors) != 0 {
		t.Fatalf("Load = %+v with a corrupt file, want an empty state", st)
	}
	if ce.Path != s.Path() || !strings.HasPrefix(ce.Aside, s.Path()+".corrupt-") {
		t.Fatalf("CorruptError paths %q, %q", ce.Path, ce.Aside)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the corrupt file is still in place: %v", err)
	}
	if got, err := os.ReadFile(ce.Aside); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file kept aside holds %q (%v), want the old content", got, err)
	}
	msg := err.Error()
	for _, secret := range configStrings(data) {
		if !strings.Contains(msg, secret) {
			continue
		}
		// The same file with the string replaced: if its error shows
		// the string too, it comes from the error's fixed text.
		changed := bytes.ReplaceAll(data, []byte(secret), bytes.Repeat([]byte("Q"), len(secret)))
		if err := os.WriteFile(s.Path(), changed, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err2 := s.Load(); err2 == nil || !strings.Contains(err2.Error(), secret) {
			t.Fatalf("the error repeats %q of a worker's config: %v", secret, err)
		}
	}
}

// configStrings returns the strings in the workers' configs of a state
// file, as Load reads them, that a textual replacement can change without
// changing anything else: at least 4 bytes long, found in the file only
// inside configs, and holding a character that JSON has only inside
// strings (so that no literal, number or delimiter contains it).
func configStrings(data []byte) []string {
	var probe struct {
		Workers []struct {
			Name, Class, Supervisor string
			Config                  json.RawMessage
		}
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil
	}
	var out []string
	for _, w := range probe.Workers {
		var v any
		if json.Unmarshal(w.Config, &v) != nil {
			continue
		}
		for _, s := range leafStrings(nil, v) {
			if len(s) < 4 || strings.ContainsAny(s, "\"\\") || !strings.ContainsFunc(s, stringOnly) {
				continue
			}
			inConfigs := 0
			for _, w := range probe.Workers {
				inConfigs += bytes.Count(w.Config, []byte(s))
			}
			if bytes.Count(data, []byte(s)) == inConfigs {
				out = append(out, s)
			}
		}
	}
	return out
}

// stringOnly reports whether JSON has r only inside strings.
func stringOnly(r rune) bool {
	return !strings.ContainsRune("truefalsn0123456789eE.+-{}[],: \t\r\n", r)
}

func leafStrings(out []string, v any) []string {
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []any:
		for _, e := range x {
			out = leafStrings(out, e)
		}
	case map[string]any:
		for k, e := range x {
			out = leafStrings(append(out, k), e)
		}
	}
	return out
}
