package broker

import (
	"context"
	"testing"
	"time"
)

func TestFIFOAcrossChunks(t *testing.T) {
	var f fifo
	next, want := uint64(0), uint64(0)
	// Grow past several chunks, drain to empty, grow again, interleaved.
	for _, step := range []struct{ push, pop int }{
		{3 * fifoChunk, fifoChunk + 1}, {1, 2*fifoChunk - 1}, {1, 1}, {fifoChunk, 0}, {5, fifoChunk + 6},
	} {
		for range step.push {
			next++
			f.push(embMsg{seq: next})
		}
		for range step.pop {
			want++
			if m := f.pop(); m.seq != want {
				t.Fatalf("popped %d, want %d", m.seq, want)
			}
		}
		if f.n != int(next-want) {
			t.Fatalf("n = %d, want %d", f.n, next-want)
		}
	}
	if f.n != 0 || f.head != f.tail || f.hi != 0 || f.ti != 0 {
		t.Fatalf("empty fifo not reset: %+v", f)
	}
}

// A queue consumed again before its expiry is not deleted by the timer of
// its earlier idleness, even if that timer already fired and waits for the
// bus's lock; a queue unused since its timer started is.
func TestEmbeddedQueueExpiryStartsOver(t *testing.T) {
	b := NewEmbeddedBus(EmbeddedBusOptions{Expires: time.Hour})
	defer b.Close()
	ctx := context.Background()
	c, err := b.Consume(ctx, "q", []string{"k"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	q := b.queues["q"]
	if q.expiry != nil {
		t.Fatal("a queue with a consumer has an expiry")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	stale, armed := q.idle, q.expiry != nil
	q.mu.Unlock()
	if !armed {
		t.Fatal("a queue without consumers has no expiry")
	}
	// Consumed again, and left again: the first timer is stale.
	c, err = b.Consume(ctx, "q", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b.expire(q, stale)
	if b.queues["q"] != q || len(b.routes["k"]) != 1 {
		t.Fatal("a stale expiry deleted the queue")
	}
	q.mu.Lock()
	current := q.idle
	q.mu.Unlock()
	b.expire(q, current)
	if b.queues["q"] != nil || b.routes["k"] != nil || b.routes["q"] != nil {
		t.Fatalf("the expired queue is still there: queues %v, routes %v", b.queues, b.routes)
	}
	if s := b.Stats(); s.ExpiredQueues != 1 {
		t.Fatalf("stats %+v", s)
	}
}
