package clustere2e

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// sampleEvery is the sampler's period.
const sampleEvery = 50 * time.Millisecond

// proc is one worker process the sampler saw.
type proc struct {
	name, host string
	pid        int
	start      time.Time // the process's start time in /proc: a reused pid is another process
	// first is the sample that first saw it in a status; running the
	// first that saw it in state running; gone the first at which /proc
	// said it was gone (zero while it lives).
	first, running, gone time.Time
}

func (p *proc) String() string {
	return fmt.Sprintf("%s on %s pid %d", p.name, p.host, p.pid)
}

// sampler reads, every 50 ms, the status of every live host of a cluster
// and records each worker process it lists; at each sample it checks in
// /proc every process it knows of, and records a violation whenever the
// live processes of one worker name are on two hosts. A process stays
// known until /proc says it is gone, so the workers of a killed host
// (whose status cannot be read any more) count until they died.
type sampler struct {
	c    *cluster
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	procs      []*proc
	byPid      map[int]*proc
	violations []string
	seenViol   map[string]bool
	samples    int
	errors     int
}

// startSampler starts the cluster's sampler; it stops when the test ends
// (or at sampler.end).
func (c *cluster) startSampler() *sampler {
	s := &sampler{c: c, stop: make(chan struct{}), done: make(chan struct{}), byPid: map[int]*proc{}, seenViol: map[string]bool{}}
	c.sampler = s
	go s.loop()
	c.t.Cleanup(s.end)
	return s
}

func (s *sampler) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *sampler) loop() {
	defer close(s.done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// sample is one sample.
func (s *sampler) sample() {
	hosts := s.c.live()
	type got struct {
		host string
		ws   []api.Worker
		err  error
	}
	res := make([]got, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := h.status()
			res[i] = got{h.name, st.Workers, err}
		}()
	}
	wg.Wait()
	now := time.Now()
	for _, r := range res {
		if r.err != nil {
			s.mu.Lock()
			s.errors++
			s.mu.Unlock()
			continue
		}
		s.track(r.host, r.ws, now)
	}
	s.check(time.Now())
}

// track records the worker processes a host's status lists.
func (s *sampler) track(host string, ws []api.Worker, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		if w.Pid <= 0 {
			continue
		}
		p := s.byPid[w.Pid]
		if p == nil || p.name != w.Name || p.host != host || !p.gone.IsZero() {
			st, err := monitor.ReadProc(w.Pid)
			if err != nil || st.State == 'Z' {
				continue // gone before we looked: it cannot overlap with a later one
			}
			p = &proc{name: w.Name, host: host, pid: w.Pid, start: st.StartTime, first: now}
			s.byPid[w.Pid] = p
			s.procs = append(s.procs, p)
		}
		if p.running.IsZero() && w.State == "running" {
			p.running = now
		}
	}
}

// check looks up every known live process in /proc and records a
// violation when one name has live processes on two hosts.
func (s *sampler) check(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	live := map[string][]*proc{}
	for _, p := range s.procs {
		if !p.gone.IsZero() {
			continue
		}
		st, err := monitor.ReadProc(p.pid)
		if err != nil || st.State == 'Z' || !st.StartTime.Equal(p.start) {
			p.gone = now
			continue
		}
		live[p.name] = append(live[p.name], p)
	}
	for name, ps := range live {
		hosts := map[string]bool{}
		for _, p := range ps {
			hosts[p.host] = true
		}
		if len(hosts) < 2 {
			continue
		}
		var desc []string
		for _, p := range ps {
			desc = append(desc, fmt.Sprintf("%s pid %d", p.host, p.pid))
		}
		sort.Strings(desc)
		key := name + ": " + strings.Join(desc, ", ")
		if !s.seenViol[key] {
			s.seenViol[key] = true
			s.violations = append(s.violations, now.Format("15:04:05.000")+" "+key)
		}
	}
}

// assertNoDuplicate fails the test if any sample saw a worker twice, and
// if the sampler did not sample at all.
func (s *sampler) assertNoDuplicate(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("sampler: %d samples, %d status reads failed, %d worker processes seen", s.samples, s.errors, len(s.procs))
	if s.samples < 3 {
		t.Errorf("sampler: only %d samples", s.samples)
	}
	if len(s.violations) > 0 {
		t.Errorf("a worker ran on two hosts at once (%d times):\n%s", len(s.violations), strings.Join(s.violations, "\n"))
	}
}

// of returns the processes seen of name, oldest first.
func (s *sampler) of(name string) []proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []proc
	for _, p := range s.procs {
		if p.name == name {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first.Before(out[j].first) })
	return out
}

// all returns every process seen.
func (s *sampler) all() []proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]proc, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, *p)
	}
	return out
}

// waitGone waits until /proc says every process seen of host is gone.
func (s *sampler) waitGone(t testing.TB, host string, d time.Duration) time.Time {
	t.Helper()
	return waitFor(t, d, "every worker process of "+host+" gone", func() (bool, string) {
		var left []string
		for _, p := range s.all() {
			if p.host == host && p.gone.IsZero() {
				left = append(left, p.String())
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
}
