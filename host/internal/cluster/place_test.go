package cluster

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// ph is a host for the plan tests: class "echo", supervisor "root".
func ph(name string, capacity int, labels ...string) HostRecord {
	h := HostRecord{Name: name, Capacity: capacity, Classes: []string{"echo", "echo-alias"}, Supervisors: []string{"root"}}
	if len(labels) > 0 {
		h.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			h.Labels[k] = v
		}
	}
	return h
}

// pw is a worker of class echo under the root.
func pw(name string) WorkerRecord { return WorkerRecord{Name: name, Class: "echo", SpecHash: "h"} }

type planCase struct {
	hosts    []HostRecord
	workers  []WorkerRecord
	assign   map[string]Assignment
	running  map[string]Running
	drain    []string
	moves    []Move
	unplaced []Unplaced
}

func (c planCase) snapshot() *Snapshot {
	s := newSnapshot()
	s.Rev = 1
	for _, h := range c.hosts {
		s.Hosts[h.Name] = h
	}
	for _, w := range c.workers {
		s.Workers[w.Name] = w
	}
	for n, a := range c.assign {
		s.Assign[n] = a
	}
	for n, r := range c.running {
		s.Running[n] = r
	}
	for _, h := range c.drain {
		s.Drain[h] = true
	}
	return s
}

func TestPlan(t *testing.T) {
	withClass := func(w WorkerRecord, class string) WorkerRecord { w.Class = class; return w }
	withSup := func(w WorkerRecord, sup string) WorkerRecord { w.Supervisor = sup; return w }
	withLabels := func(w WorkerRecord, kv ...string) WorkerRecord {
		w.Constraints = map[string]string{}
		for _, l := range kv {
			k, v, _ := strings.Cut(l, "=")
			w.Constraints[k] = v
		}
		return w
	}
	drainedTo := func(to, from string) Assignment {
		return Assignment{Host: to, From: from, Reason: ReasonDrain, Moves: 1}
	}
	cases := map[string]planCase{
		"no hosts": {
			workers:  []WorkerRecord{pw("a")},
			unplaced: []Unplaced{{"a", "no live host"}},
		},
		"fewest assigned wins": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c"), pw("new")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}, "c": {Host: "h2"}},
			moves:   []Move{{"new", "", "h2", ReasonPlaced}},
		},
		"ties by name": {
			hosts:   []HostRecord{ph("h2", 0), ph("h1", 0)},
			workers: []WorkerRecord{pw("a")},
			moves:   []Move{{"a", "", "h1", ReasonPlaced}},
		},
		"counts as it goes": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c")},
			moves:   []Move{{"a", "", "h1", ReasonPlaced}, {"b", "", "h2", ReasonPlaced}, {"c", "", "h1", ReasonPlaced}},
		},
		"alias class": {
			hosts:   []HostRecord{ph("h1", 0)},
			workers: []WorkerRecord{withClass(pw("a"), "echo-alias")},
			moves:   []Move{{"a", "", "h1", ReasonPlaced}},
		},
		"class offered nowhere": {
			hosts:    []HostRecord{ph("h1", 0)},
			workers:  []WorkerRecord{withClass(pw("a"), "smtp")},
			unplaced: []Unplaced{{"a", "no live host offers class smtp"}},
		},
		"supervisor": {
			hosts: []HostRecord{ph("h1", 0), func() HostRecord {
				h := ph("h2", 0)
				h.Supervisors = []string{"root", "root/camp"}
				return h
			}()},
			workers:  []WorkerRecord{withSup(pw("a"), "root/camp"), withSup(pw("b"), "root/none"), withSup(pw("c"), "root")},
			moves:    []Move{{"a", "", "h2", ReasonPlaced}, {"c", "", "h1", ReasonPlaced}},
			unplaced: []Unplaced{{"b", "no live host offering class echo runs supervisor root/none"}},
		},
		"labels": {
			hosts:    []HostRecord{ph("h1", 0, "zone=a"), ph("h2", 0, "zone=b", "disk=ssd")},
			workers:  []WorkerRecord{withLabels(pw("a"), "zone=b", "disk=ssd"), withLabels(pw("b"), "zone=c"), withLabels(pw("c"), "zone=a")},
			moves:    []Move{{"a", "", "h2", ReasonPlaced}, {"c", "", "h1", ReasonPlaced}},
			unplaced: []Unplaced{{"b", "no live host has labels zone=c"}},
		},
		"capacity": {
			hosts:    []HostRecord{ph("h1", 1), ph("h2", 2)},
			workers:  []WorkerRecord{pw("a"), pw("b"), pw("c"), pw("d")},
			moves:    []Move{{"a", "", "h1", ReasonPlaced}, {"b", "", "h2", ReasonPlaced}, {"c", "", "h2", ReasonPlaced}},
			unplaced: []Unplaced{{"d", "every fitting host is full (capacity)"}},
		},
		"drained host gets nothing": {
			hosts:    []HostRecord{ph("h1", 0, "zone=a"), ph("h2", 0)},
			drain:    []string{"h1"},
			workers:  []WorkerRecord{pw("a"), withLabels(pw("b"), "zone=a")},
			moves:    []Move{{"a", "", "h2", ReasonPlaced}},
			unplaced: []Unplaced{{"b", "every fitting host is drained"}},
		},
		"failover": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c")},
			assign:  map[string]Assignment{"a": {Host: "dead"}, "b": {Host: "dead", Moves: 2}, "c": {Host: "h1"}},
			moves:   []Move{{"a", "dead", "h2", ReasonFailover}, {"b", "dead", "h1", ReasonFailover}},
		},
		"failover without room": {
			hosts:    []HostRecord{ph("h1", 1)},
			workers:  []WorkerRecord{pw("a"), pw("b")},
			assign:   map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "dead"}},
			unplaced: []Unplaced{{"b", "every fitting host is full (capacity)"}},
		},
		"assigned to a live host stays (no rebalance)": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			workers: []WorkerRecord{pw("a"), pw("b"), withClass(pw("c"), "gone")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}, "c": {Host: "h1"}},
		},
		"orphan assignment is deleted": {
			hosts:   []HostRecord{ph("h1", 0)},
			workers: []WorkerRecord{pw("a")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "gone": {Host: "h1"}},
			moves:   []Move{{"gone", "h1", "", ReasonOrphan}},
		},
		"orphans do not count as assigned": {
			hosts:   []HostRecord{ph("h1", 1), ph("h2", 0)},
			workers: []WorkerRecord{pw("a")},
			assign:  map[string]Assignment{"gone1": {Host: "h2"}, "gone2": {Host: "h2"}},
			moves:   []Move{{"gone1", "h2", "", ReasonOrphan}, {"gone2", "h2", "", ReasonOrphan}, {"a", "", "h1", ReasonPlaced}},
		},
		"drain starts with one": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0), ph("h3", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}, "c": {Host: "h2"}},
			running: map[string]Running{"a": {Host: "h1", State: "running"}, "b": {Host: "h1", State: "running"}, "c": {Host: "h2", State: "running"}},
			moves:   []Move{{"a", "h1", "h3", ReasonDrain}},
		},
		"drain waits while the moved worker is not running yet": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b")},
			assign:  map[string]Assignment{"a": drainedTo("h2", "h1"), "b": {Host: "h1"}},
			running: map[string]Running{"b": {Host: "h1", State: "running"}},
		},
		"drain waits while the old host still runs it": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b")},
			assign:  map[string]Assignment{"a": drainedTo("h2", "h1"), "b": {Host: "h1"}},
			running: map[string]Running{"a": {Host: "h1", State: "running"}, "b": {Host: "h1", State: "running"}},
		},
		"drain waits while it is starting on the new host": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b")},
			assign:  map[string]Assignment{"a": drainedTo("h2", "h1"), "b": {Host: "h1"}},
			running: map[string]Running{"a": {Host: "h2", State: "starting"}, "b": {Host: "h1", State: "running"}},
		},
		"drain goes on once it runs on the new host": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b")},
			assign:  map[string]Assignment{"a": drainedTo("h2", "h1"), "b": {Host: "h1"}},
			running: map[string]Running{"a": {Host: "h2", State: "running"}, "b": {Host: "h1", State: "running"}},
			moves:   []Move{{"b", "h1", "h2", ReasonDrain}},
		},
		"one drain move per drained host": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0), ph("h3", 0)},
			drain:   []string{"h1", "h2"},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c"), pw("d")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}, "c": {Host: "h2"}, "d": {Host: "h2"}},
			moves:   []Move{{"a", "h1", "h3", ReasonDrain}, {"c", "h2", "h3", ReasonDrain}},
		},
		"a drain move of another host does not block": {
			hosts:   []HostRecord{ph("h1", 0), ph("h2", 0), ph("h3", 0)},
			drain:   []string{"h1", "h2"},
			workers: []WorkerRecord{pw("a"), pw("b"), pw("c")},
			assign:  map[string]Assignment{"a": drainedTo("h3", "h1"), "b": {Host: "h1"}, "c": {Host: "h2"}},
			moves:   []Move{{"c", "h2", "h3", ReasonDrain}},
		},
		"drain skips a worker that fits nowhere": {
			hosts:    []HostRecord{ph("h1", 0, "zone=a"), ph("h2", 0)},
			drain:    []string{"h1"},
			workers:  []WorkerRecord{withLabels(pw("a"), "zone=a"), pw("b")},
			assign:   map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}},
			moves:    []Move{{"b", "h1", "h2", ReasonDrain}},
			unplaced: []Unplaced{{"a", "cannot leave drained host h1: every fitting host is drained"}},
		},
		"a dead drained host fails over at once": {
			hosts:   []HostRecord{ph("h2", 0)},
			drain:   []string{"h1"},
			workers: []WorkerRecord{pw("a"), pw("b")},
			assign:  map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h1"}},
			moves:   []Move{{"a", "h1", "h2", ReasonFailover}, {"b", "h1", "h2", ReasonFailover}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := c.snapshot()
			moves, unplaced := Plan(s)
			if !reflect.DeepEqual(moves, c.moves) {
				t.Errorf("moves:\n got  %v\n want %v", moves, c.moves)
			}
			if !reflect.DeepEqual(unplaced, c.unplaced) {
				t.Errorf("unplaced:\n got  %v\n want %v", unplaced, c.unplaced)
			}
			// Pure and deterministic.
			m2, u2 := Plan(s)
			if !reflect.DeepEqual(moves, m2) || !reflect.DeepEqual(unplaced, u2) {
				t.Error("a second Plan of the same snapshot differs")
			}
		})
	}
}

func TestPlanSpreadsEvenly(t *testing.T) {
	c := planCase{hosts: []HostRecord{ph("h1", 0), ph("h2", 0), ph("h3", 0)}}
	for i := range 30 {
		c.workers = append(c.workers, pw(fmt.Sprintf("w%02d", i)))
	}
	moves, unplaced := Plan(c.snapshot())
	if len(unplaced) != 0 || len(moves) != 30 {
		t.Fatalf("moves %d, unplaced %v", len(moves), unplaced)
	}
	per := map[string]int{}
	for _, m := range moves {
		if m.Reason != ReasonPlaced || m.From != "" {
			t.Errorf("move %v", m)
		}
		per[m.To]++
	}
	if per["h1"] != 10 || per["h2"] != 10 || per["h3"] != 10 {
		t.Errorf("spread %v, want 10/10/10", per)
	}

	// With 4 already on h1, the next 26 even out at 10/10/10.
	c.assign = map[string]Assignment{}
	for i := range 4 {
		c.assign[fmt.Sprintf("w%02d", i)] = Assignment{Host: "h1"}
	}
	moves, _ = Plan(c.snapshot())
	per = map[string]int{"h1": 4}
	for _, m := range moves {
		per[m.To]++
	}
	if per["h1"] != 10 || per["h2"] != 10 || per["h3"] != 10 {
		t.Errorf("spread %v, want 10/10/10", per)
	}
}
