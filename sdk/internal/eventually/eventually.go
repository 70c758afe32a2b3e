// Package eventually is the polling behind sdktest.Eventually. It is a
// package of its own so that the sdk package's own tests, which cannot
// import sdktest (sdktest imports sdk), poll with the same code.
package eventually

import (
	"fmt"
	"testing"
	"time"
)

// The interval between two calls of cond starts at firstInterval and
// doubles up to maxInterval: a condition that holds soon is seen soon, and
// a long wait does not keep a busy machine busier.
const (
	firstInterval = time.Millisecond
	maxInterval   = 50 * time.Millisecond
)

// Eventually calls cond until it returns true; if cond is still false once
// timeout has passed (it is called a last time then), it fails the test
// with t.Fatalf, the message (format and args, as fmt.Sprintf) and how long
// it waited. Documented for users as sdktest.Eventually.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	start := time.Now()
	interval := firstInterval
	for !cond() {
		left := timeout - time.Since(start)
		if left <= 0 {
			t.Fatalf("%s (waited %s)", fmt.Sprintf(format, args...), time.Since(start).Round(time.Millisecond))
			return // for a testing.TB whose Fatalf returns
		}
		time.Sleep(min(interval, left)) // the poll interval, not a wait for an event
		interval = min(2*interval, maxInterval)
	}
}
