package testplugins

import "github.com/dynworkers/dynworkers/host/internal/monitor"

// Alive reports whether pid is a live process, not a zombie, by /proc.
func Alive(pid int) bool {
	st, err := monitor.ReadProc(pid)
	return err == nil && st.State != 'Z'
}

// Children returns the pids of the live processes whose parent is pid.
func Children(pid int) []int {
	kids, _ := monitor.Children(pid)
	out := make([]int, 0, len(kids))
	for _, k := range kids {
		out = append(out, k.Pid)
	}
	return out
}
