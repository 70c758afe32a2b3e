package sdk

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// HealthBeats checks the worker's health every interval the host asked for,
// each check bounded by the host's timeout, and sends each result to the
// host, until the host cancels the stream. It replaces the host's Health
// calls: the host then only reads, which costs it far less than a call per
// check at many workers (docs/operator-guide.md, "What idle workers cost the
// host").
//
// A check that does not return within the timeout is sent as a failure when
// the timeout passes; while it still runs, each further check that falls due
// is sent as a failure without calling the worker again, so that a hung
// health check does not pile up goroutines. The checks fall on the same grid
// as the host's polled ones, so that a host with many workers receives their
// beats in batches rather than one every few milliseconds.
func (s *server) HealthBeats(req *proto.HealthBeatsRequest, stream grpc.ServerStreamingServer[proto.HealthBeat]) error {
	interval := time.Duration(req.GetIntervalMs()) * time.Millisecond
	timeout := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	if interval <= 0 || timeout <= 0 {
		return status.Errorf(codes.InvalidArgument, "health beats: interval_ms (%d) and timeout_ms (%d) must be positive", req.GetIntervalMs(), req.GetTimeoutMs())
	}
	ctx := stream.Context()
	next := wire.NextHealthCheck(time.Now(), interval)
	tick := time.NewTimer(time.Until(next))
	defer tick.Stop()
	expire := time.NewTimer(0)
	<-expire.C
	defer expire.Stop()
	var (
		result   chan *proto.HealthResponse // the running check's; nil when none runs
		began    time.Time                  // when it began
		reported bool                       // its failure was sent already
	)
	for {
		var beat *proto.HealthBeat
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if now := time.Now(); now.Sub(next) > interval {
				next = now // the process was stopped or starved: start afresh
			}
			next = wire.NextHealthCheck(next, interval)
			tick.Reset(max(time.Until(next), 0))
			if result != nil {
				if !reported {
					// Only when the timeout is longer than the interval.
					continue
				}
				beat = &proto.HealthBeat{TimedOut: true, Message: fmt.Sprintf("the check that began %s ago has not returned (health_timeout %s)", time.Since(began).Round(time.Millisecond), timeout)}
				break
			}
			result, began, reported = make(chan *proto.HealthResponse, 1), time.Now(), false
			go s.check(ctx, timeout, result)
			expire.Reset(timeout)
			continue
		case <-expire.C:
			if result == nil || reported {
				continue
			}
			reported = true
			beat = &proto.HealthBeat{TimedOut: true, Message: fmt.Sprintf("no answer within health_timeout (%s)", timeout)}
		case r := <-result:
			result = nil
			expire.Stop()
			if reported {
				continue // its failure was sent when it timed out
			}
			beat = &proto.HealthBeat{Healthy: r.GetHealthy(), Message: r.GetMessage()}
		}
		if err := stream.Send(beat); err != nil {
			return err
		}
	}
}

// check runs one health check bounded by timeout and delivers its answer on
// result (buffered: it never blocks, even once nobody waits for it).
func (s *server) check(ctx context.Context, timeout time.Duration, result chan<- *proto.HealthResponse) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, _ := s.Health(ctx, &proto.HealthRequest{})
	result <- r
}
