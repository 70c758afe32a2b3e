package pluginproc

import (
	"context"
	"slices"
	"testing"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// recvBatch receives one stream message and returns the bodies and tags
// of its deliveries, in order.
func recvBatch(t *testing.T, stream proto.Host_ConsumeClient) (bodies []string, tags []uint64) {
	t.Helper()
	d, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range append([]*proto.Delivery{d}, d.GetMore()...) {
		if i > 0 && len(m.GetMore()) != 0 {
			t.Errorf("delivery %d of a batch has deliveries of its own", m.GetDeliveryTag())
		}
		bodies = append(bodies, string(m.GetBody()))
		tags = append(tags, m.GetDeliveryTag())
	}
	return bodies, tags
}

// A worker that takes batches (ConsumeRequest.max_batch) gets the
// deliveries the bus has ready in one stream message, at most max_batch
// and never more than its prefetch allows; one that does not gets one per
// message.
func TestConsumeBatches(t *testing.T) {
	for _, tc := range []struct {
		name               string
		prefetch, maxBatch int32
		want               [][]string // the first stream messages
	}{
		{"batches", 8, 4, [][]string{{"1", "2", "3", "4"}, {"5", "6"}}},
		{"within the prefetch", 3, 10, [][]string{{"1", "2", "3"}}},
		{"no batches", 8, 0, [][]string{{"1"}, {"2"}, {"3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBus()
			b.preload = []string{"1", "2", "3", "4", "5", "6"}
			client := hostClient(t, newHostServer(b))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := client.Consume(ctx, &proto.ConsumeRequest{Queue: "q", Prefetch: tc.prefetch, MaxBatch: tc.maxBatch})
			if err != nil {
				t.Fatal(err)
			}
			ready, err := stream.Recv()
			if err != nil || ready.GetDeliveryTag() != 0 {
				t.Fatalf("first message %v, %v; want the ready announcement", ready, err)
			}
			id := ready.GetConsumerId()
			c := b.consumer(t)
			var next uint64 = 1
			for _, want := range tc.want {
				bodies, tags := recvBatch(t, stream)
				if !slices.Equal(bodies, want) {
					t.Fatalf("a stream message holds %v, want %v", bodies, want)
				}
				for _, tag := range tags {
					if tag != next {
						t.Errorf("tags %v, want consecutive from %d", tags, next)
					}
					next++
				}
			}
			if tc.prefetch == 3 {
				// Prefetch used up: an ack makes room for one more.
				if _, err := client.Ack(ctx, &proto.AckRequest{ConsumerId: id, DeliveryTag: 1}); err != nil {
					t.Fatal(err)
				}
				if bodies, _ := recvBatch(t, stream); !slices.Equal(bodies, []string{"4"}) {
					t.Errorf("after an ack with prefetch used up, got %v, want [4]", bodies)
				}
				if got := c.outcomes(); !slices.Equal(got, []string{"ack"}) {
					t.Errorf("settled %v", got)
				}
			}
		})
	}
}
