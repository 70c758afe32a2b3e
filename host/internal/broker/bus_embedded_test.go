package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

func TestEmbeddedBusRoundRobin(t *testing.T) {
	b := broker.NewEmbeddedBus()
	defer b.Close()
	cs := []broker.Consumer{consume(t, b, "q", nil, 100), consume(t, b, "q", nil, 100), consume(t, b, "q", nil, 100)}
	for i := range 9 {
		publish(t, b, "q", fmt.Sprint(i), nil)
	}
	for i := range 9 {
		expect(t, cs[i%3], fmt.Sprint(i))
	}
}

// A message returned to the queue goes back to its place among the
// others, whichever consumer returns it and when.
func TestEmbeddedBusRequeueKeepsPublicationOrder(t *testing.T) {
	b := broker.NewEmbeddedBus()
	defer b.Close()
	a := consume(t, b, "q", nil, 2)
	c := consume(t, b, "q", nil, 2)
	for i := range 6 {
		publish(t, b, "q", fmt.Sprint(i), nil)
	}
	// Round robin: a has 0 and 2, c has 1 and 3; 4 and 5 wait.
	a0, c1, a2, c3 := recv(t, a), recv(t, c), recv(t, a), recv(t, c)
	if string(a0.Body)+string(c1.Body)+string(a2.Body)+string(c3.Body) != "0123" {
		t.Fatalf("got %s %s %s %s", a0.Body, c1.Body, a2.Body, c3.Body)
	}
	if err := c.Close(); err != nil { // returns 1 and 3
		t.Fatal(err)
	}
	if err := a.Nack(a2.Tag, true); err != nil { // returns 2
		t.Fatal(err)
	}
	ack(t, a, a0)
	// a now takes, in publication order, 1 (requeued), 2 (requeued), 3, 4, 5.
	for _, want := range []string{"1", "2", "3", "4", "5"} {
		if d := expect(t, a, want); d.Redelivered != (want <= "3") {
			t.Fatalf("%s: redelivered %v", want, d.Redelivered)
		}
	}
}

// TestEmbeddedBusStress runs publishers, consumers that ack, nack and
// close at random, and checks under the race detector that every message
// is finally acked exactly once.
func TestEmbeddedBusStress(t *testing.T) {
	b := broker.NewEmbeddedBus()
	defer b.Close()
	const publishers, each, consumers = 4, 2000, 4
	// Declare the queue before publishing.
	first := consume(t, b, "q", []string{"k1", "k2"}, 1)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[string]int{}
	total := 0
	done := make(chan struct{})
	var workers sync.WaitGroup
	for w := range consumers {
		workers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				prefetch := 1 + r.IntN(20)
				c, err := b.Consume(context.Background(), "q", nil, prefetch)
				if err != nil {
					t.Errorf("Consume: %v", err)
					return
				}
				n := 1 + r.IntN(300) // deliveries before this consumer closes
				held := 0            // unacked on purpose; at prefetch nothing more comes
			deliveries:
				for ; n > 0 && held < prefetch; n-- {
					var d broker.Delivery
					select {
					case d = <-c.Deliveries():
					default:
						if held > 0 {
							// Nothing waiting: what this consumer holds
							// may be all that is left.
							break deliveries
						}
						select {
						case d = <-c.Deliveries():
						case <-done:
							_ = c.Close()
							return
						case <-time.After(wait):
							mu.Lock()
							t.Errorf("stuck: %d of %d messages acked", total, publishers*each)
							mu.Unlock()
							_ = c.Close()
							return
						}
					}
					switch x := r.IntN(10); {
					case x == 0:
						if err := c.Nack(d.Tag, true); err != nil {
							t.Errorf("Nack: %v", err)
						}
					case x == 1:
						held++ // left unacked: redelivered when c closes
					default:
						if err := c.Ack(d.Tag); err != nil {
							t.Errorf("Ack: %v", err)
							continue
						}
						mu.Lock()
						acked[string(d.Body)]++
						total++
						if total == publishers*each {
							close(done)
						}
						mu.Unlock()
					}
				}
				_ = c.Close()
			}
		})
	}
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			for i := range each {
				key := []string{"k1", "k2"}[i%2]
				if err := b.Publish(context.Background(), key, fmt.Appendf(nil, "%d/%d", p, i), nil); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	pubs.Wait()
	workers.Wait()
	if len(acked) != publishers*each {
		t.Fatalf("%d distinct messages acked, want %d", len(acked), publishers*each)
	}
	for body, n := range acked {
		if n != 1 {
			t.Fatalf("%s acked %d times", body, n)
		}
	}
}
