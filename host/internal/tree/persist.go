package tree

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dynworkers/dynworkers/host/internal/state"
)

// Persistence. What control messages started lives in t.dynW and t.dynS
// (in memory, guarded by t.mu) and in the state file. An operation changes
// the records in memory (changeLocked), then writes them (save) before it
// starts anything, so that a start a client was told about survives a crash
// of the host. Writes are serialised by saveMu, not by t.mu: a write that
// waits for the disk holds up only other writes, and one write carries
// every change made before it (a later operation's save finds its change
// written already and returns at once).

// changeLocked applies fn to the records and returns the new version and
// the function that undoes the change. Call with t.mu held.
func (t *Tree) changeLocked(fn func(w []state.Worker, s []state.Supervisor) ([]state.Worker, []state.Supervisor)) (uint64, func()) {
	oldW, oldS := slices.Clone(t.dynW), slices.Clone(t.dynS)
	newW, newS := fn(slices.Clone(t.dynW), slices.Clone(t.dynS))
	t.dynW, t.dynS = newW, newS
	t.version++
	v := t.version
	undo := func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		// Undo only this change: records others changed since are kept.
		t.dynW = undoWorkers(t.dynW, oldW, newW)
		t.dynS = undoSupervisors(t.dynS, oldS, newS)
		t.version++
	}
	return v, undo
}

// save writes the records as they are now, unless a write since version v
// already did. It fails when there is no store.
func (t *Tree) save(v uint64) error {
	if t.opts.Store == nil {
		return errors.New("no state store")
	}
	t.saveMu.Lock()
	defer t.saveMu.Unlock()
	t.mu.Lock()
	if t.saved >= v {
		t.mu.Unlock()
		return nil
	}
	cur := t.version
	st := &state.State{Version: state.Version, Workers: slices.Clone(t.dynW), Supervisors: slices.Clone(t.dynS)}
	t.mu.Unlock()
	if err := t.opts.Store.Save(st); err != nil {
		return fmt.Errorf("persisting dynamic workers: %w", err)
	}
	t.mu.Lock()
	t.saved = max(t.saved, cur)
	t.mu.Unlock()
	return nil
}

// persist applies fn and writes the result; if the write fails, the change
// is undone in memory (and that written, as far as the disk allows) and
// the error returned: nothing changed.
func (t *Tree) persist(fn func(w []state.Worker, s []state.Supervisor) ([]state.Worker, []state.Supervisor)) error {
	t.mu.Lock()
	v, undo := t.changeLocked(fn)
	t.mu.Unlock()
	if err := t.save(v); err != nil {
		undo()
		t.mu.Lock()
		v = t.version
		t.mu.Unlock()
		_ = t.save(v) // a write by another operation may have carried the change
		return err
	}
	return nil
}

// undoWorkers reverts in cur the records that a change turned from old into
// changed: records the change added are removed, records it removed or
// replaced are put back in their place.
func undoWorkers(cur, old, changed []state.Worker) []state.Worker {
	key := func(w state.Worker) string { return w.Name }
	return undo(cur, old, changed, key, func(a, b state.Worker) bool {
		return a.Name == b.Name && a.CreatedAt.Equal(b.CreatedAt) && a.Supervisor == b.Supervisor && a.Class == b.Class
	})
}

func undoSupervisors(cur, old, changed []state.Supervisor) []state.Supervisor {
	key := func(s state.Supervisor) string { return s.Parent + "/" + s.Name }
	return undo(cur, old, changed, key, func(a, b state.Supervisor) bool { return a == b })
}

func undo[T any](cur, old, changed []T, key func(T) string, same func(a, b T) bool) []T {
	inOld := map[string]T{}
	for _, x := range old {
		inOld[key(x)] = x
	}
	inChanged := map[string]T{}
	for _, x := range changed {
		inChanged[key(x)] = x
	}
	out := slices.Clone(cur)
	// Drop what the change added or replaced.
	out = slices.DeleteFunc(out, func(x T) bool {
		c, added := inChanged[key(x)]
		if !added || !same(c, x) {
			return false
		}
		o, had := inOld[key(x)]
		return !had || !same(o, x)
	})
	// Put back what the change removed or replaced, at its old place.
	for i, o := range old {
		k := key(o)
		if c, ok := inChanged[k]; ok && same(c, o) {
			continue // untouched by the change
		}
		if slices.ContainsFunc(out, func(x T) bool { return key(x) == k }) {
			continue // someone else has that name now
		}
		at := min(i, len(out))
		out = slices.Insert(out, at, o)
	}
	return out
}
