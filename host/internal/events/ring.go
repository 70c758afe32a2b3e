package events

import (
	"sync"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// DefaultRingSize is how many events a Ring keeps when NewRing is given no
// size.
const DefaultRingSize = 100

// Ring keeps the most recent events, each in its wire form and as the
// supervisor emitted it; the oldest goes when a new one comes in a full
// ring. It is safe for concurrent use.
type Ring struct {
	mu   sync.Mutex
	buf  []record
	next int // where the next event goes
	n    int // how many of buf are set
}

// record is one event in both forms. The wire form is kept as mapped when
// the event happened (a worker_started's pid is the process of that
// start); the emitted form is for in-process callers that switch on the
// event's type.
type record struct {
	wire    api.Event
	emitted supervise.Event
}

// NewRing returns a ring of size events (DefaultRingSize if size < 1).
func NewRing(size int) *Ring {
	if size < 1 {
		size = DefaultRingSize
	}
	return &Ring{buf: make([]record, size)}
}

// Add keeps an event: wire is its wire form (Mapper.Map of emitted).
func (r *Ring) Add(wire api.Event, emitted supervise.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = record{wire: wire, emitted: emitted}
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

// Len returns how many events the ring holds, at most its size.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// List returns the events held in their wire form, oldest first.
func (r *Ring) List() []api.Event {
	out := make([]api.Event, 0, r.Len())
	r.each(func(rec record) { out = append(out, rec.wire) })
	return out
}

// Emitted returns the events held as the supervisors emitted them, oldest
// first.
func (r *Ring) Emitted() []supervise.Event {
	out := make([]supervise.Event, 0, r.Len())
	r.each(func(rec record) { out = append(out, rec.emitted) })
	return out
}

func (r *Ring) each(f func(record)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := (r.next - r.n + len(r.buf)) % len(r.buf)
	for i := range r.n {
		f(r.buf[(start+i)%len(r.buf)])
	}
}
