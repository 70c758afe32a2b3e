// Package state persists the dynamic workers of a host: those started by
// control messages (AMQP or HTTP), as opposed to those configured in HCL.
// They are written to <state_dir>/workers.json before a control message is
// acked or an HTTP call answered, and restored when the host starts again,
// so that nothing a client was told succeeded is forgotten (DESIGN §5).
//
// The file holds worker configs, secrets included: it is written with mode
// 0600 in a directory created with mode 0700 (looser modes found at Open are
// tightened), optionally encrypted with AES-256-GCM (Options.Key), and
// replaced atomically (temp file, fsync, rename, fsync of the directory), so
// that a crash leaves either the old or the new content, never a mix. A file
// that cannot be read back is renamed aside and reported, never silently
// dropped; entries whose names are refused are kept aside likewise. An open
// Store holds an exclusive lock on its directory (LockFileName), so two
// hosts never share one.
package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Version is the format version Save writes and Load accepts.
const Version = 1

// FileName is the name of the state file in the state directory.
const FileName = "workers.json"

// State is the content of the state file.
//
// HCL workers stopped by a control message are deliberately not recorded:
// such a stop lasts only until the next reload or host restart, when the
// host runs what HCL says again.
type State struct {
	// Version is the format version; Save sets it.
	Version int `json:"version"`
	// Workers are the dynamic workers in the order they were started, which
	// is the order in which the host restores them. A replaced worker keeps
	// its place.
	Workers []Worker `json:"workers"`
	// Supervisors are the supervisors started by control messages
	// (start_supervisor), in the order they were started, which puts every
	// parent before its children. The host restores them before the
	// workers. Absent in files written before supervisors could be started
	// at run time.
	Supervisors []Supervisor `json:"supervisors,omitempty"`
}

// Supervisor is one supervisor started by a control message.
type Supervisor struct {
	// Name is the supervisor's name, unique in the host among workers and
	// supervisors.
	Name string `json:"name"`
	// Parent is the path of its parent supervisor, e.g. "root".
	Parent    string `json:"parent"`
	Strategy  string `json:"strategy"`
	Intensity int    `json:"intensity"`
	// Period is a Go duration string, e.g. "30s".
	Period    string    `json:"period"`
	CreatedAt time.Time `json:"created_at"`
}

// Worker is one dynamic worker, as a start request described it.
type Worker struct {
	// Name is the worker's name, unique in the host.
	Name string `json:"name"`
	// Class is the worker's class; the host stores the canonical name the
	// client's name or alias resolved to.
	Class string `json:"class"`
	// Supervisor is the path of the supervisor the worker runs under; ""
	// means the root.
	Supervisor string `json:"supervisor,omitempty"`
	// Config is the worker's validated config as a JSON object, as the
	// worker receives it: conversions applied ("2773" became 2773) and
	// defaults filled in. Storing the decoded form rather than the client's
	// text means a restore runs exactly what ran before; the host still
	// validates it again with the class's schema when it restores it. nil
	// means {}. It holds secrets, in clear: hence the file's mode.
	Config json.RawMessage `json:"config,omitempty"`
	// CreatedAt is when the worker was started (or last replaced).
	CreatedAt time.Time `json:"created_at"`
}

// Lookup returns the worker with the given name.
func (st *State) Lookup(name string) (Worker, bool) {
	if i := st.index(name); i >= 0 {
		return st.Workers[i], true
	}
	return Worker{}, false
}

// Put adds w at the end of the list, or replaces the worker of the same
// name in its place.
func (st *State) Put(w Worker) {
	if i := st.index(w.Name); i >= 0 {
		st.Workers[i] = w
		return
	}
	st.Workers = append(st.Workers, w)
}

// Remove removes the worker with the given name and reports whether there
// was one.
func (st *State) Remove(name string) bool {
	i := st.index(name)
	if i < 0 {
		return false
	}
	st.Workers = slices.Delete(st.Workers, i, i+1)
	return true
}

// Clone returns a deep copy, e.g. to change and Save a new state while the
// old one stays in use until the save succeeded.
func (st *State) Clone() *State {
	c := &State{Version: st.Version, Workers: make([]Worker, len(st.Workers)), Supervisors: slices.Clone(st.Supervisors)}
	for i, w := range st.Workers {
		w.Config = slices.Clone(w.Config)
		c.Workers[i] = w
	}
	return c
}

func (st *State) index(name string) int {
	return slices.IndexFunc(st.Workers, func(w Worker) bool { return w.Name == name })
}

// check reports why a decoded state cannot be used: an unknown version,
// a worker without name or class, a config that is not an object, or a
// name used twice. Save never writes such a state.
func (st *State) check() error {
	if st.Version != Version {
		return fmt.Errorf("unknown version %d (this host reads version %d)", st.Version, Version)
	}
	seen := make(map[string]bool, len(st.Workers))
	for i, w := range st.Workers {
		switch {
		case w.Name == "":
			return fmt.Errorf("worker %d has no name", i+1)
		case w.Class == "":
			return fmt.Errorf("worker %q has no class", w.Name)
		case seen[w.Name]:
			return fmt.Errorf("worker %q is listed twice", w.Name)
		case !isObject(w.Config):
			return fmt.Errorf("the config of worker %q is not a JSON object", w.Name)
		}
		seen[w.Name] = true
	}
	for i, sv := range st.Supervisors {
		switch {
		case sv.Name == "":
			return fmt.Errorf("supervisor %d has no name", i+1)
		case sv.Parent == "":
			return fmt.Errorf("supervisor %q has no parent", sv.Name)
		case seen[sv.Name]:
			return fmt.Errorf("the name %q is listed twice", sv.Name)
		}
		if _, err := time.ParseDuration(sv.Period); err != nil {
			return fmt.Errorf("supervisor %q: period: %v", sv.Name, err)
		}
		seen[sv.Name] = true
	}
	return nil
}

// isObject reports whether raw is absent, null or a JSON object.
func isObject(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return true
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil
}
