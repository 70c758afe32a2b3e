package broker

import "testing"

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
