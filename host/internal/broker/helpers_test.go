package broker_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// testLogger logs to t until the test ends, then drops lines, so that a
// goroutine that logs late cannot fail the run.
func testLogger(t *testing.T) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return hclog.New(&hclog.LoggerOptions{Name: "broker", Level: hclog.Debug, Output: w})
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// checkNoLeaks fails the test if, once every other cleanup has run,
// goroutines of this package or of the AMQP library remain. Call it first
// in a test so that its cleanup runs last.
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		// Goroutines end a moment after what stops them returns, and
		// nothing tells when: poll the goroutine list.
		var leaked []string
		sdktest.Eventually(t, 10*time.Second, func() bool {
			leaked = leakedGoroutines()
			return len(leaked) == 0
		}, "goroutines leaked:\n%s", lazy(func() any { return strings.Join(leaked, "\n\n") }))
	})
}

// lazy is an argument of sdktest.Eventually's message that is computed
// when the message is: only if the wait fails, with the state at the end.
type lazy func() any

func (f lazy) String() string { return fmt.Sprint(f()) }

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "leakedGoroutines") {
			continue
		}
		if strings.Contains(g, "rabbitmq/amqp091-go") || strings.Contains(g, "host/internal/broker.") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

// dial dials the test broker with a unique connection name and closes the
// Conn at cleanup.
func dial(t *testing.T, o broker.Options) *broker.Conn {
	t.Helper()
	if o.URL == "" {
		o.URL = brokertest.URL(t)
	}
	if o.ConnectionName == "" {
		o.ConnectionName = "dynworkers " + brokertest.ID(t)
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	c, err := broker.Dial(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	waitConnected(t, c)
	return c
}

func waitConnected(t *testing.T, c *broker.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
