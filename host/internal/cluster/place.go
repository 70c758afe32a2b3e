package cluster

// OWNER: helper A (placement).

import (
	"fmt"
	"sort"
	"strings"
)

// ReasonOrphan is the Reason of a Move that deletes an assignment whose
// worker record is gone (To is then ""): the leader deletes assign/<name>.
const ReasonOrphan = "orphan"

// Move is one placement decision of the leader.
//
// A Move with To == "" (Reason ReasonOrphan) deletes the assignment of a
// worker whose record is gone.
type Move struct {
	Worker string
	From   string // "" when the worker had no (live) host
	To     string
	Reason string // ReasonPlaced, ReasonFailover, ReasonDrain, ReasonRebalance, ReasonOrphan
}

// Unplaced is a worker no host fits, and why.
type Unplaced struct {
	Worker string
	Reason string
}

// Plan is the placement: a pure function from a snapshot to the moves the
// leader should make now, and the workers it cannot place.
//
// The rules, in order:
//
//   - An assignment whose worker record is gone is deleted (a Move with To
//     "" and Reason ReasonOrphan).
//   - A worker without an assignment is placed (ReasonPlaced); one assigned
//     to a host that is not live (no hosts/<host>) is re-placed
//     (ReasonFailover). Workers are taken in name order.
//   - A host fits a worker when it is live, not drained, offers the
//     worker's class (HostRecord.Classes) and supervisor path
//     (HostRecord.Supervisors; "" is "root"), has every constraint label,
//     and has room: assigned < capacity (capacity 0: no limit). Among the
//     fitting hosts the one with the fewest assigned workers wins, ties by
//     name. Assigned counts include the moves planned so far, so a batch
//     spreads evenly.
//   - A drained host's workers move one at a time per drained host
//     (ReasonDrain): no move while a previous drain move off that host has
//     not finished (its worker has no running/<name> yet, runs elsewhere
//     than its new assignment, or is still starting there). The workers
//     are taken in name order; one that fits nowhere is listed as
//     unplaced and the next is tried.
//   - Workers assigned to a live host stay there (no rebalance when a host
//     joins: a move costs downtime).
//
// Unplaced lists every worker that needs a host and has none that fits,
// with the reason.
func Plan(s *Snapshot) (moves []Move, unplaced []Unplaced) {
	// assigned counts the (non-orphan) assignments per host.
	assigned := map[string]int{}
	for name, a := range s.Assign {
		if _, ok := s.Workers[name]; ok {
			assigned[a.Host]++
		}
	}
	hostNames := make([]string, 0, len(s.Hosts))
	for h := range s.Hosts {
		hostNames = append(hostNames, h)
	}
	sort.Strings(hostNames)

	// Orphans.
	orphans := make([]string, 0)
	for name := range s.Assign {
		if _, ok := s.Workers[name]; !ok {
			orphans = append(orphans, name)
		}
	}
	sort.Strings(orphans)
	for _, name := range orphans {
		moves = append(moves, Move{Worker: name, From: s.Assign[name].Host, Reason: ReasonOrphan})
	}

	names := make([]string, 0, len(s.Workers))
	for name := range s.Workers {
		names = append(names, name)
	}
	sort.Strings(names)

	move := func(w, from, to, reason string) {
		moves = append(moves, Move{Worker: w, From: from, To: to, Reason: reason})
		assigned[to]++
		if from != "" {
			assigned[from]--
		}
	}

	// Unplaced and failed-over workers.
	for _, name := range names {
		w := s.Workers[name]
		a, has := s.Assign[name]
		if has {
			if _, live := s.Hosts[a.Host]; live {
				continue
			}
		}
		to, why := pick(s, hostNames, assigned, w)
		if to == "" {
			unplaced = append(unplaced, Unplaced{Worker: name, Reason: why})
			continue
		}
		if has {
			move(name, a.Host, to, ReasonFailover)
		} else {
			move(name, "", to, ReasonPlaced)
		}
	}

	// Drains: one move in flight per drained live host.
	drained := make([]string, 0, len(s.Drain))
	for h := range s.Drain {
		if _, live := s.Hosts[h]; live {
			drained = append(drained, h)
		}
	}
	sort.Strings(drained)
	for _, h := range drained {
		if drainInProgress(s, h) {
			continue
		}
		for _, name := range names {
			a, has := s.Assign[name]
			if !has || a.Host != h {
				continue
			}
			to, why := pick(s, hostNames, assigned, s.Workers[name])
			if to == "" {
				unplaced = append(unplaced, Unplaced{Worker: name, Reason: fmt.Sprintf("cannot leave drained host %s: %s", h, why)})
				continue
			}
			move(name, h, to, ReasonDrain)
			break
		}
	}
	return moves, unplaced
}

// drainInProgress reports whether a drain move off host h has not
// finished: its worker does not run on its new host yet.
func drainInProgress(s *Snapshot, h string) bool {
	for name, a := range s.Assign {
		if a.Reason != ReasonDrain || a.From != h || a.Host == h {
			continue
		}
		if _, ok := s.Workers[name]; !ok {
			continue
		}
		if _, live := s.Hosts[a.Host]; !live {
			continue // failover re-places it
		}
		r, ok := s.Running[name]
		if !ok || r.Host != a.Host || r.State == "starting" || r.State == "" {
			return true
		}
	}
	return false
}

// pick returns the host that fits w best, or "" and why none does.
func pick(s *Snapshot, hostNames []string, assigned map[string]int, w WorkerRecord) (string, string) {
	if len(hostNames) == 0 {
		return "", "no live host"
	}
	sup := w.Supervisor
	if sup == "" {
		sup = "root"
	}
	stage := hostNames
	filter := func(keep func(name string, h HostRecord) bool) []string {
		var out []string
		for _, name := range stage {
			if keep(name, s.Hosts[name]) {
				out = append(out, name)
			}
		}
		return out
	}
	if stage = filter(func(_ string, h HostRecord) bool { return contains(h.Classes, w.Class) }); len(stage) == 0 {
		return "", fmt.Sprintf("no live host offers class %s", w.Class)
	}
	if stage = filter(func(_ string, h HostRecord) bool { return contains(h.Supervisors, sup) }); len(stage) == 0 {
		return "", fmt.Sprintf("no live host offering class %s runs supervisor %s", w.Class, sup)
	}
	if stage = filter(func(_ string, h HostRecord) bool { return hasLabels(h.Labels, w.Constraints) }); len(stage) == 0 {
		return "", fmt.Sprintf("no live host has labels %s", labelString(w.Constraints))
	}
	if stage = filter(func(name string, _ HostRecord) bool { return !s.Drain[name] }); len(stage) == 0 {
		return "", "every fitting host is drained"
	}
	if stage = filter(func(name string, h HostRecord) bool {
		return h.Capacity <= 0 || assigned[name] < h.Capacity
	}); len(stage) == 0 {
		return "", "every fitting host is full (capacity)"
	}
	best := ""
	for _, h := range stage { // sorted by name: the first of the fewest wins ties
		if best == "" || assigned[h] < assigned[best] {
			best = h
		}
	}
	return best, ""
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// labelString renders constraints as "k=v,k2=v2", sorted.
func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
