package tree

import (
	"context"
	"testing"
	"time"
)

func TestNameLocks(t *testing.T) {
	var l nameLocks
	ctx := context.Background()
	unlockA, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another name is free while a is held.
	unlockB, err := l.lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	// A lock on a and c waits for a, holding nothing once it gives up.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.lock(short, "c", "a"); err == nil {
		t.Fatal("locked a twice")
	}
	unlockC, err := l.lock(ctx, "c")
	if err != nil {
		t.Fatalf("c stayed locked after a failed multi-lock: %v", err)
	}
	unlockC()
	got := make(chan func())
	go func() {
		u, _ := l.lock(ctx, "a", "b", "a")
		got <- u
	}()
	unlockA()
	select {
	case u := <-got:
		u()
		u() // a second call does nothing
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken")
	}
	if n := l.size(); n != 0 {
		t.Fatalf("%d entries left, want 0", n)
	}
}
