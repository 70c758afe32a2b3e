package sdktest

import (
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk/internal/eventually"
)

// Eventually calls cond until it returns true, first a millisecond apart,
// then less and less often, up to 50 ms apart. If cond is still false once
// timeout has passed, Eventually fails the test with t.Fatalf, saying what
// it waited for (format and args, as fmt.Sprintf) and for how long:
//
//	sdktest.Eventually(t, 10*time.Second, func() bool {
//		w, _ := h.Status().Worker("greeter")
//		return w.Restarts > 0
//	}, "worker %q was not restarted", "greeter")
//
// The message is formatted only if the wait fails, so an argument with a
// String method can describe the state at the end. cond runs in the
// caller's goroutine, and may fail the test itself.
//
// Use Eventually for state that nothing signals, such as a status, a
// process in /proc or a queue on a broker. When there is an event to wait
// on (a channel, Env.WaitPublished, Host.WaitLog), wait on the event.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	eventually.Eventually(t, timeout, cond, format, args...)
}
