package tree

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// A small builder for configurations: sup("root", w("a"), sup("s", w("b"))).
func sup(name string, children ...any) *config.Supervisor {
	s := &config.Supervisor{Name: name, Path: name, Strategy: "one_for_one", Intensity: 5, Period: 30 * time.Second}
	for _, c := range children {
		switch c := c.(type) {
		case *config.Worker:
			s.Children = append(s.Children, config.Node{Worker: c})
		case *config.Supervisor:
			s.Children = append(s.Children, config.Node{Supervisor: c})
		case func(*config.Supervisor):
			c(s)
		}
	}
	setPaths(s, "")
	return s
}

func setPaths(s *config.Supervisor, parent string) {
	s.Path = s.Name
	if parent != "" {
		s.Path = parent + "/" + s.Name
	}
	for _, n := range s.Children {
		if n.Worker != nil {
			n.Worker.Path = s.Path + "/" + n.Worker.Name
		} else {
			setPaths(n.Supervisor, s.Path)
		}
	}
}

func w(name string, class ...string) *config.Worker {
	c := "echo"
	if len(class) > 0 {
		c = class[0]
	}
	return &config.Worker{Name: name, Class: c, Restart: "permanent"}
}

func strategy(st string) func(*config.Supervisor) {
	return func(s *config.Supervisor) { s.Strategy = st }
}

// running describes a host that runs cfg unchanged, all from HCL.
func running(cfg *config.Supervisor) Running {
	var r Running
	walk(cfg, func(s *config.Supervisor) {
		parent := ""
		if i := strings.LastIndex(s.Path, "/"); i >= 0 {
			parent = s.Path[:i]
		}
		r.Supervisors = append(r.Supervisors, RunningSupervisor{Name: s.Name, Path: s.Path, Parent: parent,
			Source: api.SourceHCL, Strategy: s.Strategy, Intensity: s.Intensity, Period: s.Period})
		for _, n := range s.Children {
			if n.Worker != nil {
				r.Workers = append(r.Workers, RunningWorker{Name: n.Worker.Name, Supervisor: s.Path,
					Source: api.SourceHCL, SpecHash: n.Worker.SpecHash()})
			}
		}
	})
	return r
}

func TestPlan(t *testing.T) {
	base := sup("root", w("a"), sup("s", w("b"), sup("deep", w("c"))))
	withControl := func(r Running) Running {
		r.Workers = append(r.Workers, RunningWorker{Name: "dyn", Supervisor: "root/s/deep", Source: api.SourceControl})
		return r
	}
	withControlSup := func(r Running) Running {
		r.Supervisors = append(r.Supervisors, RunningSupervisor{Name: "cs", Path: "root/s/cs", Parent: "root/s", Source: api.SourceControl})
		return r
	}
	withCluster := func(r Running) Running {
		r.Workers = append(r.Workers, RunningWorker{Name: "cw", Supervisor: "root/s", Source: api.SourceCluster, SpecHash: "h"})
		return r
	}
	withHybrid := func(r Running) Running {
		r.Workers = append(r.Workers, RunningWorker{Name: "a.1", Supervisor: "root/a", Source: api.SourceHybrid, Owner: "a"})
		return r
	}
	stopped := func(name string) func(Running) Running {
		return func(r Running) Running {
			for i := range r.Workers {
				if r.Workers[i].Name == name {
					r.Workers[i].StoppedByRequest = true
				}
			}
			for i := range r.Supervisors {
				if r.Supervisors[i].Name == name {
					r.Supervisors[i].StoppedByRequest = true
				}
			}
			return r
		}
	}
	tests := []struct {
		name    string
		running Running
		wanted  *config.Supervisor
		want    string
		err     string // a conflict naming this
	}{
		{"unchanged", running(base), sup("root", w("a"), sup("s", w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[] unchanged=3", ""},
		{"add a worker and a supervisor", running(base), sup("root", w("a"), w("n"), sup("s", w("b"), sup("deep", w("c"))), sup("t", w("m"))),
			"remove[] removeSups[] reconfigure[] resumeSups[] addSups[root/t] restart[] resume[] add[n m] unchanged=3", ""},
		{"remove a worker", running(base), sup("root", sup("s", w("b"), sup("deep", w("c")))),
			"remove[a] removeSups[] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[] unchanged=2", ""},
		{"remove a subtree", running(base), sup("root", w("a")),
			"remove[b c] removeSups[root/s] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[] unchanged=1", ""},
		{"reconfigure in place", running(base), sup("root", w("a"), sup("s", strategy("one_for_all"), w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[root/s] resumeSups[] addSups[] restart[] resume[] add[] unchanged=3", ""},
		{"changed spec restarts", running(base), sup("root", w("a", "other"), sup("s", w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[] resumeSups[] addSups[] restart[a] resume[] add[] unchanged=2", ""},
		{"move to another supervisor", running(base), sup("root", sup("s", w("a"), w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[] resumeSups[] addSups[] restart[a] resume[] add[] unchanged=2", ""},
		{"move out of a removed supervisor", running(base), sup("root", w("a"), w("c"), sup("s", w("b"))),
			"remove[] removeSups[root/s/deep] reconfigure[] resumeSups[] addSups[] restart[c] resume[] add[] unchanged=2", ""},
		{"resume a stopped worker and supervisor", stopped("s")(stopped("a")(running(base))), sup("root", w("a"), sup("s", w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[] resumeSups[root/s] addSups[] restart[] resume[a] add[] unchanged=2", ""},
		{"control worker under a removed supervisor", withControl(running(base)), sup("root", w("a"), sup("s", w("b"))),
			"", `worker "dyn" started by a control message`},
		{"control supervisor under a removed supervisor", withControlSup(running(base)), sup("root", w("a")),
			"", `supervisor "root/s/cs" started by a control message`},
		{"name of a control worker", withControl(running(base)), sup("root", w("a"), w("dyn"), sup("s", w("b"), sup("deep", w("c")))),
			"", `adds worker "dyn", but a worker of that name was started by a control message`},
		{"cluster worker left alone", withCluster(running(base)), sup("root", w("a", "other"), sup("s", w("b"), sup("deep", w("c")))),
			"remove[] removeSups[] reconfigure[] resumeSups[] addSups[] restart[a] resume[] add[] unchanged=2", ""},
		{"cluster worker under a removed supervisor", withCluster(running(base)), sup("root", w("a")),
			"", `cluster worker "cw" runs under it`},
		{"cluster worker's supervisor kept, its sibling removed", withCluster(running(base)), sup("root", w("a"), sup("s", w("b"))),
			"remove[c] removeSups[root/s/deep] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[] unchanged=2", ""},
		{"name of a cluster worker", withCluster(running(base)), sup("root", w("a"), w("cw"), sup("s", w("b"), sup("deep", w("c")))),
			"", `adds worker "cw", but cluster worker "cw" runs on this host`},
		{"supervisor named like a cluster worker", withCluster(running(base)), sup("root", w("a"), sup("cw"), sup("s", w("b"), sup("deep", w("c")))),
			"", `the name "cw" is taken by worker "cw" (cluster)`},
		{"name of a hybrid's child", withHybrid(running(base)), sup("root", w("a"), w("a.1"), sup("s", w("b"), sup("deep", w("c")))),
			"", `hybrid worker "a" runs a child`},
		{"path of a control supervisor", withControlSup(running(base)), sup("root", w("a"), sup("s", w("b"), sup("cs"), sup("deep", w("c")))),
			"", `supervisor "root/s/cs", but one of that path was started by a control message`},
		{"worker named like a control supervisor", withControlSup(running(base)), sup("root", w("a"), w("cs"), sup("s", w("b"), sup("deep", w("c")))),
			"", `adds worker "cs", but supervisor "root/s/cs" has that name`},
		{"worker takes the name of a removed supervisor", running(base), sup("root", w("a"), sup("s", w("b"), w("deep"))),
			"remove[c] removeSups[root/s/deep] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[deep] unchanged=2", ""},
		{"hybrid goes with its removed owner", withHybrid(running(base)), sup("root", sup("s", w("b"), sup("deep", w("c")))),
			"remove[a] removeSups[] reconfigure[] resumeSups[] addSups[] restart[] resume[] add[] unchanged=2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := plan(tt.running, tt.wanted)
			if tt.err != "" {
				var cerr *control.Error
				if !errors.As(err, &cerr) || cerr.Code != control.CodeConflict || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("plan = %v, %v; want a conflict naming %q", p, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("plan =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestPlanNames(t *testing.T) {
	base := sup("root", w("a"), sup("s", w("b"), sup("deep", w("c"))))
	r := running(base)
	r.Workers = append(r.Workers, RunningWorker{Name: "b.1", Supervisor: "root/s/b", Source: api.SourceHybrid, Owner: "b"})
	p, err := plan(r, sup("root", w("a", "other"), w("n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Names(r), " "); got != "a b b.1 c deep n s" {
		t.Fatalf("names = %s", got)
	}
}
