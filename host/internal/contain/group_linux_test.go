package contain

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes it contains: CONTAIN_TEST_CHILD=1
// starts a grandchild in a session of its own, prints its pid and blocks;
// =2 (the grandchild) just blocks.
func TestMain(m *testing.M) {
	switch os.Getenv("CONTAIN_TEST_CHILD") {
	case "1":
		exe, _ := os.Executable()
		gc := exec.Command(exe)
		gc.Env = append(os.Environ(), "CONTAIN_TEST_CHILD=2")
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := gc.Start(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(gc.Process.Pid)
		select {}
	case "2":
		select {}
	}
	os.Exit(m.Run())
}

// needCgroups skips without a usable cgroup, unless CI is set.
func needCgroups(t *testing.T) Support {
	t.Helper()
	sup := Detect().Support()
	if sup.Kill == KillProcessOnly {
		if os.Getenv("CI") != "" {
			t.Fatalf("no usable cgroup on this CI machine: %v", sup.Notes)
		}
		t.Skipf("no usable cgroup: %v", sup.Notes)
	}
	return sup
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// startContained starts the child (which starts a setsid grandchild) in g
// and returns the command and the grandchild's pid.
func startContained(t *testing.T, g *Group) (*exec.Cmd, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "CONTAIN_TEST_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fd, placed := g.CgroupFD()
	if placed {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.Started(cmd.Process.Pid, placed)
	if err := g.Attach(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	gc, _ := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || gc <= 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child printed %q: %v", line, err)
	}
	return cmd, gc
}

func TestDetectOnThisMachine(t *testing.T) {
	sup := needCgroups(t)
	t.Logf("support: %+v", sup)
	if Detect() != Detect() {
		t.Error("Detect is not cached")
	}
}

func TestDrainKillsSetsidGrandchild(t *testing.T) {
	needCgroups(t)
	g, err := Detect().New("drain test/with odd name", Limits{Pids: 32, OpenFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Dirs() {
		if strings.ContainsAny(filepath.Base(d), " /") {
			t.Errorf("cgroup name %q not sanitised", d)
		}
	}
	cmd, gc := startContained(t, g)
	if !alive(gc) {
		t.Fatalf("grandchild %d does not run", gc)
	}
	// Kill the child alone: the grandchild, in a session of its own, is
	// not in its process group, but it is in its cgroup.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	if !alive(gc) {
		t.Fatal("the grandchild died with its parent's process group: the test proves nothing")
	}
	if err := g.Drain(); err != nil {
		t.Fatal(err)
	}
	if alive(gc) {
		t.Fatalf("grandchild %d survived Drain", gc)
	}
	g.Remove()
	for _, d := range g.Dirs() {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", d, err)
		}
	}
}

func TestCleanStaleKillsWhatDeadHostsLeft(t *testing.T) {
	sup := needCgroups(t)
	// A pid that no longer runs: a process of ours that exited.
	dead := exec.Command("/proc/self/exe", "-test.run=^$")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid
	// A System like Detect's, but for the dead host's pid.
	s := detectWith(deadPid, false)
	g, err := s.New("left", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd, gc := startContained(t, g)
	defer cmd.Wait()
	var top string
	switch {
	case s.v2 != "":
		top = filepath.Dir(s.v2)
	default:
		top = filepath.Dir(s.v1[s.killCtl])
	}
	start := time.Now()
	cleanStale(top, s.v2 != "")
	if alive(gc) || alive(cmd.Process.Pid) {
		t.Fatalf("cleanStale left the dead host's processes running (%s)", sup.Kill)
	}
	if _, err := os.Stat(filepath.Join(top, strconv.Itoa(deadPid))); !os.IsNotExist(err) {
		t.Errorf("the dead host's directory is still there: %v", err)
	}
	// The dead host's (empty) directories in the other hierarchies.
	for _, d := range s.v1 {
		if filepath.Dir(d) != top {
			cleanStale(filepath.Dir(d), false)
		}
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("the dead host's directory %s is still there: %v", d, err)
		}
	}
	t.Logf("cleaned in %s", time.Since(start))
}

func TestUncontainedSetsRlimits(t *testing.T) {
	// The memory limit is generous: it applies to the test binary itself,
	// whose race detector maps terabytes of (unbacked) shadow memory.
	g, err := Uncontained().New("rlimits", Limits{Memory: 1 << 46, Pids: 100, CPU: 1, OpenFiles: 128})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Dirs()) != 0 || !g.MemoryByRlimit() {
		t.Fatalf("uncontained group has cgroups %v, memory by rlimit %v", g.Dirs(), g.MemoryByRlimit())
	}
	cmd, gc := startContained(t, g)
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = syscall.Kill(gc, syscall.SIGKILL) // ours to kill: nothing else can without a cgroup
		cmd.Wait()
	}()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Max data size             70368744177664       70368744177664",
		"Max processes             100                  100",
		"Max open files            128                  128",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("limits lack %q:\n%s", want, b)
		}
	}
	if !strings.Contains(string(b), "Max cpu time              unlimited") {
		t.Errorf("cpu = 1 must not become RLIMIT_CPU (not a rate):\n%s", b)
	}
}
