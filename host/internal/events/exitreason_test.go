package events

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// oomError stands for pluginproc.ExitError of an OOM kill: an error with an
// ExitReason method.
type oomError struct{}

func (oomError) Error() string      { return "oom_killed (memory limit 64MiB reached): killed by SIGKILL" }
func (oomError) ExitReason() string { return api.ExitOOMKilled }

// plainExit has an ExitReason method that names nothing.
type plainExit struct{}

func (plainExit) Error() string      { return "killed by SIGKILL" }
func (plainExit) ExitReason() string { return "" }

func TestMapExitReason(t *testing.T) {
	var m Mapper
	wrapped := fmt.Errorf("plugin x exited during Start: %w", oomError{})
	for _, tc := range []struct {
		ev   supervise.Event
		want string
	}{
		{supervise.ChildExited{EventInfo: info("w", worker), Err: oomError{}, Uptime: time.Second}, api.ExitOOMKilled},
		{supervise.ChildExited{EventInfo: info("w", worker), Err: plainExit{}}, ""},
		{supervise.ChildExited{EventInfo: info("w", worker), Err: errors.New("exit status 1")}, ""},
		{supervise.ChildExited{EventInfo: info("w", worker)}, ""},
		{supervise.ChildStartFailed{EventInfo: info("w", worker), Attempt: 1, Err: wrapped}, api.ExitOOMKilled},
		{supervise.ChildStartFailed{EventInfo: info("w", worker), Attempt: 1, Err: errors.Join(errors.New("x"), wrapped)}, api.ExitOOMKilled},
	} {
		if got := m.Map(tc.ev).Reason; got != tc.want {
			t.Errorf("%s with %v: reason %q, want %q", tc.ev.Type(), tc.ev, got, tc.want)
		}
	}
}
