package testplugins

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Alive reports whether pid is a live process, not a zombie, by /proc.
func Alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// Children returns the pids of the live processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, ok := procStat(cpid); ok && state != "Z" && ppid == pid {
			out = append(out, cpid)
		}
	}
	return out
}

// procStat reads the state and parent pid of pid from /proc/<pid>/stat
// ("pid (comm) state ppid ..."; comm may contain spaces and parentheses).
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}
