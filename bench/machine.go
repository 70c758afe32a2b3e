package bench

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	MemTotal  string `json:"mem_total"`
	// LoadAvg is /proc/loadavg when the run began: a busy machine makes
	// every figure worse.
	LoadAvg string `json:"loadavg_at_start"`
}

// ReadMachine describes this machine. NProc is the number of CPUs this
// process may run on, as nproc(1) reports it.
func ReadMachine() Machine {
	m := Machine{
		NProc:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		Kernel:    readTrim("/proc/sys/kernel/osrelease"),
		LoadAvg:   readTrim("/proc/loadavg"),
		CPU:       procField("/proc/cpuinfo", "model name"),
		MemTotal:  procField("/proc/meminfo", "MemTotal"),
	}
	if m.CPU == "" {
		m.CPU = "unknown"
	}
	return m
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// CPUSample is the machine's CPU time so far and this process's own,
// children included (the hosts and plugins it ran and reaped).
type CPUSample struct {
	At    time.Time
	Busy  time.Duration // all CPUs: user, nice, system, irq, softirq
	Steal time.Duration // taken by the hypervisor
	Own   time.Duration // this process and its reaped children
	// Broker is the CPU time of a RabbitMQ broker running on this machine
	// (its Erlang processes), which the control benchmarks keep busy.
	Broker time.Duration
}

// brokerComms are the command names of a local RabbitMQ broker's processes.
var brokerComms = []string{"beam.smp", "epmd", "erl_child_setup", "inet_gethost"}

// BrokerCPU returns the CPU time used so far by a local RabbitMQ broker; 0
// when none runs on this machine.
func BrokerCPU() time.Duration { return ProcsCPU(brokerComms...) }

// ReadCPU samples the CPU times.
func ReadCPU() CPUSample {
	s := CPUSample{At: time.Now(), Broker: BrokerCPU()}
	if fs, err := procFS(); err == nil {
		if st, err := fs.Stat(); err == nil {
			c := st.CPUTotal // seconds; guest time is already counted in user
			s.Busy = seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ)
			s.Steal = seconds(c.Steal)
		}
	}
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			s.Own += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return s
}

// Background is what else the machine did while the benchmarks ran.
type Background struct {
	Elapsed time.Duration
	// Other is CPU time used by processes other than the harness, what it
	// started and the local broker (as counted by the kernel in 10 ms
	// ticks).
	Other time.Duration
	// Broker is the CPU time of the local RabbitMQ broker, which the
	// control benchmarks use (0 with a remote broker or none).
	Broker time.Duration
	Steal  time.Duration
}

// MarshalJSON writes the durations in milliseconds.
func (b Background) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Elapsed int64 `json:"elapsed_ms"`
		Other   int64 `json:"other_processes_cpu_ms"`
		Broker  int64 `json:"local_broker_cpu_ms"`
		Steal   int64 `json:"steal_ms"`
	}{b.Elapsed.Milliseconds(), b.Other.Milliseconds(), b.Broker.Milliseconds(), b.Steal.Milliseconds()})
}

// BackgroundSince compares two samples.
func BackgroundSince(start, end CPUSample) Background {
	broker := max(end.Broker-start.Broker, 0)
	return Background{
		Elapsed: end.At.Sub(start.At),
		Other:   max((end.Busy-start.Busy)-(end.Own-start.Own)-broker, 0),
		Broker:  broker,
		Steal:   end.Steal - start.Steal,
	}
}

// seconds converts procfs's float seconds.
func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
