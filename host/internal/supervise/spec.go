package supervise

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults for the zero values of Spec and ChildSpec. They are exported so
// that configuration layers can show them to operators.
const (
	DefaultIntensity       = 5
	DefaultPeriod          = 30 * time.Second
	DefaultStartTimeout    = 30 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// RestartType says when a child that exited is started again. The names and
// meanings are Erlang/OTP's.
type RestartType int

const (
	// Permanent children are always restarted, even after a normal exit:
	// they are meant to run for as long as the supervisor does. It is the
	// zero value and the default.
	Permanent RestartType = iota
	// Transient children are restarted only after an abnormal exit
	// (Instance.ExitErr() != nil); a normal exit leaves them StateExited.
	Transient
	// Temporary children are never restarted: after any exit they stay
	// StateExited, after a failed start StateFailed.
	Temporary
)

var restartNames = [...]string{Permanent: "permanent", Transient: "transient", Temporary: "temporary"}

// String returns the lower-case name used in configuration files.
func (r RestartType) String() string {
	if r >= 0 && int(r) < len(restartNames) {
		return restartNames[r]
	}
	return fmt.Sprintf("RestartType(%d)", int(r))
}

// MarshalText encodes the restart type as its name, for JSON status output.
func (r RestartType) MarshalText() ([]byte, error) {
	if !r.valid() {
		return nil, fmt.Errorf("invalid restart type %d", int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText accepts what ParseRestartType accepts.
func (r *RestartType) UnmarshalText(b []byte) error {
	v, err := ParseRestartType(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func (r RestartType) valid() bool { return r >= Permanent && r <= Temporary }

// ParseRestartType parses "permanent", "transient" or "temporary" (case and
// surrounding spaces are ignored). The empty string is an error, not the
// default, so that a config layer decides explicitly what it means.
func ParseRestartType(s string) (RestartType, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for i, n := range restartNames {
		if n == name {
			return RestartType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown restart type %q (want permanent, transient or temporary)", s)
}

// Strategy says which children a supervisor restarts when one of them exits.
type Strategy string

const (
	// StrategyOneForOne restarts only the child that exited. It is the
	// default.
	StrategyOneForOne Strategy = "one_for_one"
	// StrategyOneForAll restarts all children when one exits and is to be
	// restarted: the others are stopped in reverse declared order, then all
	// are started again in declared order. See the package documentation.
	StrategyOneForAll Strategy = "one_for_all"
	// StrategyRestForOne restarts the child that exited and the children
	// declared after it: those are stopped in reverse declared order, then
	// the child and they are started again in declared order.
	StrategyRestForOne Strategy = "rest_for_one"
)

// ParseStrategy parses a strategy name as written in configuration files:
// one_for_one, one_for_all or rest_for_one.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(strings.ToLower(strings.TrimSpace(s))); st {
	case StrategyOneForOne, StrategyOneForAll, StrategyRestForOne:
		return st, nil
	}
	return "", fmt.Errorf("unknown strategy %q (want one_for_one, one_for_all or rest_for_one)", s)
}

// Spec configures a Supervisor. Zero values mean the documented defaults.
type Spec struct {
	// Name names the supervisor in events, e.g. "root". Default "supervisor".
	Name string
	// Strategy is the restart strategy. Default StrategyOneForOne.
	Strategy Strategy
	// Intensity and Period bound restarts, counted over all children as in
	// Erlang/OTP: when a restart would be the (Intensity+1)-th within
	// Period, the child goes to StateFailed instead and the supervisor
	// fails: it stops its other children and goes SupervisorFailed (see
	// tree.go; its parent, if any, sees it exit). A group restart
	// (one_for_all, rest_for_one) counts as one restart. Default 5 restarts
	// in 30s. A negative Intensity allows no automatic restart at all.
	Intensity int
	Period    time.Duration
	// Clock tells time and makes timers. Default RealClock(); tests inject a
	// fake (see package supervisetest).
	Clock Clock
	// EventHook, if set, receives every event, synchronously from the
	// supervisor's goroutine and in order. It must return quickly and must
	// not call the supervisor's blocking methods (Add, StopChild, Stop, ...),
	// which would deadlock; Status and Child are fine.
	EventHook func(Event)
	// Rand returns numbers in [0, 1) for the backoff jitter. Default
	// math/rand/v2's Float64.
	Rand func() float64
	// Stopped makes New return a supervisor that is down
	// (SupervisorStopped): children are added with Register and started by
	// Up, e.g. when the supervisor is the child of another (AsChild).
	Stopped bool
}

func (sp Spec) withDefaults() (Spec, error) {
	var errs []error
	if sp.Name == "" {
		sp.Name = "supervisor"
	}
	switch sp.Strategy {
	case "":
		sp.Strategy = StrategyOneForOne
	case StrategyOneForOne, StrategyOneForAll, StrategyRestForOne:
	default:
		errs = append(errs, fmt.Errorf("%w: supervisor %q: unknown strategy %q", ErrInvalidSpec, sp.Name, sp.Strategy))
	}
	switch {
	case sp.Intensity == 0:
		sp.Intensity = DefaultIntensity
	case sp.Intensity < 0:
		sp.Intensity = 0
	}
	switch {
	case sp.Period == 0:
		sp.Period = DefaultPeriod
	case sp.Period < 0:
		errs = append(errs, fmt.Errorf("%w: supervisor %q: negative period %v", ErrInvalidSpec, sp.Name, sp.Period))
	}
	if sp.Clock == nil {
		sp.Clock = RealClock()
	}
	if sp.Rand == nil {
		sp.Rand = rand.Float64
	}
	return sp, errors.Join(errs...)
}

// ChildSpec describes one child of a supervisor. Zero values mean the
// documented defaults; Name and Service are required.
type ChildSpec struct {
	// Name identifies the child within its supervisor. Any non-empty string;
	// the caller decides what names are acceptable.
	Name string
	// Service makes the child's instances.
	Service Service
	// Restart says when the child is restarted. Default Permanent.
	Restart RestartType
	// StartTimeout bounds Service.Start (as its ctx deadline). Default 30s.
	StartTimeout time.Duration
	// ShutdownTimeout bounds Instance.Stop (as its ctx deadline). Default 5s.
	ShutdownTimeout time.Duration
	// Backoff spaces restarts after repeated crashes.
	Backoff Backoff
	// Meta holds opaque labels (e.g. the worker class) that are copied into
	// every event and status of the child. The supervisor keeps its own copy.
	Meta map[string]string
}

// withDefaults validates cs and fills in defaults. It reports every problem
// at once, each wrapping ErrInvalidSpec.
func (cs ChildSpec) withDefaults() (ChildSpec, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: child %q: %s", ErrInvalidSpec, cs.Name, fmt.Sprintf(format, args...)))
	}
	if cs.Name == "" {
		bad("empty name")
	}
	if cs.Service == nil {
		bad("no service")
	}
	if !cs.Restart.valid() {
		bad("invalid restart type %d", int(cs.Restart))
	}
	switch {
	case cs.StartTimeout == 0:
		cs.StartTimeout = DefaultStartTimeout
	case cs.StartTimeout < 0:
		bad("negative start timeout %v", cs.StartTimeout)
	}
	switch {
	case cs.ShutdownTimeout == 0:
		cs.ShutdownTimeout = DefaultShutdownTimeout
	case cs.ShutdownTimeout < 0:
		bad("negative shutdown timeout %v", cs.ShutdownTimeout)
	}
	b, err := cs.Backoff.withDefaults()
	if err != nil {
		bad("%v", err)
	}
	cs.Backoff = b
	cs.Meta = maps.Clone(cs.Meta)
	return cs, errors.Join(errs...)
}
