//go:build !linux

package monitor

import (
	"errors"
	"fmt"
)

// Sampler reads process statistics; only Linux is supported.
type Sampler struct{}

// NewSampler returns a Sampler.
func NewSampler() *Sampler { return &Sampler{} }

// Read reports errors.ErrUnsupported: /proc is Linux only.
func (s *Sampler) Read(pid int) (ProcStats, error) { return ReadProc(pid) }

// ReadProc reports errors.ErrUnsupported: /proc is Linux only.
func ReadProc(pid int) (ProcStats, error) {
	return ProcStats{}, fmt.Errorf("reading process %d: %w", pid, errors.ErrUnsupported)
}

// Children reports errors.ErrUnsupported: /proc is Linux only.
func Children(ppid int) ([]ProcStats, error) {
	return nil, fmt.Errorf("listing the children of %d: %w", ppid, errors.ErrUnsupported)
}
