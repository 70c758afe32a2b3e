// Package envhook is how package sdktest reaches what package sdk keeps
// out of its API: it builds an *sdk.Env on a recording backend, applies
// consume options, and builds a worker of a class from its config. Being
// internal to sdk, only sdk and its subpackages can import it; plugin
// authors use sdktest.
//
// Package sdk sets the functions in its init; they take and return sdk's
// types as any, since this package cannot import sdk.
package envhook

import "context"

// ConsumeConfig is a consumer's configuration, as the options of
// sdk.Env.Consume make it (the defaults applied and checked).
type ConsumeConfig struct {
	// Queue is the queue to consume.
	Queue string
	// Bindings are the routing keys the queue is bound with; [Queue] by
	// default.
	Bindings []string
	// Prefetch is the number of unsettled deliveries the host may send
	// ahead.
	Prefetch int
	// Context, if not nil, ends the consumer when it ends.
	Context context.Context
	// MaxRedeliveries is how many failed attempts a message gets before it
	// is dead-lettered; negative: never.
	MaxRedeliveries int
	// DeadLetter is the routing key and queue of dead-lettered messages.
	DeadLetter string
}

// Set by package sdk in its init.
var (
	// NewEnv returns an *sdk.Env (as any) whose methods call b, which
	// must have the methods of sdk's backend interface (sdktest.Env
	// does); it panics otherwise.
	NewEnv func(b any) any
	// NewWorker builds a worker (an sdk.Worker, as any) of class (an
	// sdk.Class) from its config, a JSON object, as a plugin process
	// does.
	NewWorker func(class any, configJSON []byte) (any, error)
)
