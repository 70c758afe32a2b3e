package tree

import (
	"context"
	"slices"
	"sync"
)

// nameLocks serialises the operations on each name, so that a check and
// the change it allows cannot be split by another operation on that name,
// while operations on different names run in parallel: a start that hangs
// for its whole start_timeout holds up only operations on its own name.
//
// An operation on several names (a reload, the removal of a subtree)
// locks them all at once, in sorted order, so that two of them cannot
// deadlock. An entry exists only while some operation holds or waits for
// its name, so the map returns to empty when the host is idle.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	ch   chan struct{} // holds a token while the name is locked
	refs int           // holders and waiters
}

// lock locks every name (duplicates allowed) and returns the function that
// unlocks them. It gives up with ctx's error, holding nothing.
func (l *nameLocks) lock(ctx context.Context, names ...string) (func(), error) {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	entries := make([]*nameLock, len(names))
	for i, n := range names {
		e := l.m[n]
		if e == nil {
			e = &nameLock{ch: make(chan struct{}, 1)}
			l.m[n] = e
		}
		e.refs++
		entries[i] = e
	}
	l.mu.Unlock()
	held := 0
	release := func() {
		for i := held - 1; i >= 0; i-- {
			<-entries[i].ch
		}
		l.mu.Lock()
		for i, n := range names {
			e := entries[i]
			e.refs--
			if e.refs == 0 {
				delete(l.m, n)
			}
		}
		l.mu.Unlock()
	}
	for _, e := range entries {
		select {
		case e.ch <- struct{}{}:
			held++
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() { once.Do(release) }, nil
}

// size is the number of names locked or waited for.
func (l *nameLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
