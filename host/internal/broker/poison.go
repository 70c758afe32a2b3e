package broker

import (
	"hash/maphash"
	"slices"
	"strconv"
	"sync"
)

// Poison messages.
//
// A delivery the worker nacks with requeue and a reason (its handler's
// error) is a failed attempt. The host counts the failed attempts of each
// message, per queue, in a failureCounts shared by all the worker
// processes on one bus (Bridges), so a message that fails in one instance
// and then another is counted once. At a consumer's MaxRedeliveries-th
// failure the bridge does not requeue the message: it publishes it to the
// consumer's dead-letter key (a durable queue of that name, declared and
// bound with the key when the consumer is made), with the headers below
// and the message's own, and acks the original once the dead letter is
// confirmed. A Nack without a reason (a consumer stopping, a process
// gone) is no failure. The count is generic over Bus: both buses behave
// the same.
//
// A message is known by its queue and a hash of its routing key, body and
// headers, since neither bus carries an identity of its own for messages
// of other publishers: two identical messages in one queue share a count.
// A count is forgotten once its message is acked, dropped or
// dead-lettered; at most maxCounted are kept (the oldest go first, and a
// message forgotten that way starts again from 0).

// The headers of a dead letter, besides the message's own.
const (
	HeaderError      = "x-dynworkers-error"       // the last failure's error, at most maxErrorHeader bytes
	HeaderFailures   = "x-dynworkers-failures"    // the failed attempts, decimal
	HeaderQueue      = "x-dynworkers-queue"       // the queue it failed in
	HeaderRoutingKey = "x-dynworkers-routing-key" // the key it was published with
)

// maxErrorHeader bounds the error text in a dead letter's header.
const maxErrorHeader = 1024

// maxCounted bounds the messages whose failures a failureCounts keeps.
const maxCounted = 10000

// failKey is a message as failureCounts knows it.
type failKey struct {
	queue string
	id    uint64
}

var failSeed = maphash.MakeSeed()

// messageID is the identity of a delivery: a hash of its routing key, body
// and headers (in key order).
func messageID(d Delivery) uint64 {
	var h maphash.Hash
	h.SetSeed(failSeed)
	_, _ = h.WriteString(d.RoutingKey)
	_ = h.WriteByte(0)
	_, _ = h.Write(d.Body)
	if len(d.Headers) > 0 {
		keys := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			_ = h.WriteByte(0)
			_, _ = h.WriteString(k)
			_ = h.WriteByte(0)
			_, _ = h.WriteString(d.Headers[k])
		}
	}
	return h.Sum64()
}

// failureCounts counts the failed attempts of messages.
type failureCounts struct {
	mu    sync.Mutex
	n     map[failKey]int
	order []failKey // in the order they were first counted; may hold forgotten keys
}

func newFailureCounts() *failureCounts { return &failureCounts{n: map[failKey]int{}} }

// get returns the failures counted for k.
func (f *failureCounts) get(k failKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[k]
}

// fail counts one more failure of k and returns the count.
func (f *failureCounts) fail(k failKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.n[k]
	if !ok {
		for len(f.n) >= maxCounted {
			oldest := f.order[0]
			f.order = f.order[1:]
			delete(f.n, oldest)
		}
		if len(f.order) >= 2*maxCounted {
			f.order = slices.DeleteFunc(f.order, func(k failKey) bool { _, ok := f.n[k]; return !ok })
		}
		f.order = append(f.order, k)
	}
	f.n[k] = n + 1
	return n + 1
}

// forget drops the count of k.
func (f *failureCounts) forget(k failKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.n, k)
}

// deadLetterHeaders returns the headers of the dead letter of d.
func deadLetterHeaders(d Delivery, queue, reason string, failures int) map[string]string {
	h := make(map[string]string, len(d.Headers)+4)
	for k, v := range d.Headers {
		h[k] = v
	}
	if len(reason) > maxErrorHeader {
		reason = truncateUTF8(reason, maxErrorHeader)
	}
	h[HeaderError] = reason
	h[HeaderFailures] = strconv.Itoa(failures)
	h[HeaderQueue] = queue
	h[HeaderRoutingKey] = d.RoutingKey
	return h
}

// truncateUTF8 cuts s to at most n bytes, not within a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
