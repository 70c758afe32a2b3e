package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// The cluster commands: status -cluster (the whole system, as any of its
// hosts reads it from etcd), drain and undrain.

// clusterStatusCall is the cluster_status request, for either transport.
func clusterStatusCall() call {
	message, _ := json.Marshal(control.Request{Operation: control.OpClusterStatus})
	return call{method: http.MethodGet, path: "/v1/cluster", message: message}
}

// clusterStatus runs status -cluster: one cluster_status request, its
// result printed as tables or JSON.
func (o *clientOptions) clusterStatus(asJSON bool, stdout, stderr io.Writer) int {
	answers, rc := o.do(clusterStatusCall(), stderr)
	if rc != exitOK {
		return rc
	}
	first := true
	return o.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		if !first && !asJSON {
			fmt.Fprintln(w)
		}
		first = false
		if prefix != "" && !asJSON {
			fmt.Fprintln(w, strings.TrimSpace(prefix))
		}
		printClusterResult(w, a.reply.Result, asJSON)
	}, notInClusterHint)
}

// notInClusterHint is the hint for a host that answers the cluster
// operations with a conflict (it has no cluster block), or does not know
// them (an older host).
func notInClusterHint(e *control.Error) string {
	switch e.Code {
	case control.CodeConflict:
		return "this host is not part of a cluster: ask a host whose config has a cluster block"
	case control.CodeUnknownOperation, control.CodeNotFound:
		return "this host does not know cluster mode (an older dynworkers?)"
	}
	return ""
}

// printClusterResult prints one cluster_status result: as JSON, or as the
// tables of hosts and workers.
func printClusterResult(w io.Writer, result json.RawMessage, asJSON bool) {
	if asJSON {
		printJSON(w, result)
		return
	}
	var v api.ClusterView
	if err := json.Unmarshal(result, &v); err != nil {
		fmt.Fprintf(w, "(the cluster_status result has an unexpected shape: %v)\n", err)
		printJSON(w, result)
		return
	}
	printClusterView(w, &v)
}

// printClusterView prints the hosts and workers of a cluster as two tables.
func printClusterView(w io.Writer, v *api.ClusterView) {
	leader := v.Leader
	if leader == "" {
		leader = "none"
	}
	alive := 0
	for _, h := range v.Hosts {
		if h.Alive {
			alive++
		}
	}
	name := clean(v.Prefix)
	if v.SystemID != "" {
		name = clean(v.SystemID) + " (" + name + ")"
	}
	fmt.Fprintf(w, "cluster %s · leader %s · %d/%d hosts alive · %d workers · read by %s at revision %d\n",
		name, clean(leader), alive, len(v.Hosts), len(v.Workers), clean(v.From), v.Revision)

	hosts := [][]string{{"NAME", "ALIVE", "DRAINING", "LEADER", "CAPACITY", "ASSIGNED", "LOAD", "LABELS"}}
	for _, h := range v.Hosts {
		capacity := "-"
		if h.Capacity > 0 {
			capacity = strconv.Itoa(h.Capacity)
		}
		hosts = append(hosts, []string{clean(h.Name), yesNo(h.Alive), yesNo(h.Draining), yesNo(h.Leader), capacity,
			strconv.Itoa(h.Assigned), strconv.Itoa(h.Load), labelsText(h.Labels)})
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "HOSTS")
	writeTable(w, hosts, plain)

	pending := false
	for _, wk := range v.Workers {
		pending = pending || wk.Pending != ""
	}
	head := []string{"NAME", "CLASS", "HOST", "STATE", "PID", "SINCE", "MOVES"}
	if pending {
		head = append(head, "PENDING")
	}
	workers := [][]string{head}
	for _, wk := range v.Workers {
		since := "-"
		if !wk.Since.IsZero() {
			since = human(now().Sub(wk.Since))
		}
		row := []string{clean(wk.Name), clean(wk.Class), workerHost(wk), clean(wk.State), pidText(wk.Pid), since, strconv.Itoa(wk.Moves)}
		if pending {
			row = append(row, clean(wk.Pending))
		}
		workers = append(workers, row)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "WORKERS")
	if len(v.Workers) == 0 {
		fmt.Fprintln(w, "(no cluster workers)")
		return
	}
	writeTable(w, workers, plain)
}

// workerHost is where a cluster worker is: the host that runs it, "A -> B"
// while it moves from A to the host B it is placed on, "-" when nowhere.
func workerHost(wk api.ClusterWorker) string {
	switch {
	case wk.RunningOn != "" && wk.Host != "" && wk.RunningOn != wk.Host:
		return clean(wk.RunningOn) + " -> " + clean(wk.Host)
	case wk.RunningOn != "":
		return clean(wk.RunningOn)
	case wk.Host != "":
		return clean(wk.Host)
	}
	return "-"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// labelsText prints labels as k=v,k=v sorted by key, "-" for none.
func labelsText(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = clean(k) + "=" + clean(labels[k])
	}
	return strings.Join(parts, ",")
}

// plain is writeTable's decorate for tables without colours.
func plain(_, _ int, cell string) string { return cell }

func runDrain(args []string, stdout, stderr io.Writer) int {
	return runDrainOp("drain", true, args, stdout, stderr)
}

func runUndrain(args []string, stdout, stderr io.Writer) int {
	return runDrainOp("undrain", false, args, stdout, stderr)
}

// Defaults of drain -wait.
const (
	defaultDrainWait  = 10 * time.Minute
	drainPollInterval = 500 * time.Millisecond
	drainPollTimeout  = 10 * time.Second
)

// runDrainOp runs drain (on) or undrain of the cluster host named by the
// only argument: POST /v1/cluster/hosts/HOST/drain or /undrain, or the
// control operation.
func runDrainOp(cmd string, on bool, args []string, stdout, stderr io.Writer) int {
	usageLine := "HOST " + clientFlagsUsage
	if on {
		usageLine = "[-wait] HOST " + clientFlagsUsage
	}
	fs := newFlagSet(cmd, usageLine, stderr)
	var wait bool
	if on {
		fs.BoolVar(&wait, "wait", false, "wait until no cluster worker is left on HOST, printing each move as it happens; -timeout bounds the whole wait (default 10m)")
	}
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the HOST", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, cmd, "%s", msg)
	}
	if co.all {
		return usageError(stderr, cmd, "%s acts on the whole cluster: ask one of its hosts (-host NAME or -any), not -all", cmd)
	}
	host := pos[0]
	op, suffix := control.OpUndrain, "/undrain"
	if on {
		op, suffix = control.OpDrain, "/drain"
	}
	var total time.Duration
	if wait {
		// -timeout is the whole wait; the drain request itself gets the
		// default wait of one request.
		total = co.timeout
		if total == 0 {
			total = defaultDrainWait
		}
		co.timeout = 0
	}
	start := time.Now()
	message, _ := json.Marshal(control.Request{Operation: op, Host: host})
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/cluster/hosts/" + url.PathEscape(host) + suffix, message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	var res api.DrainResult
	rc = co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		res = api.DrainResult{}
		if json.Unmarshal(a.reply.Result, &res) != nil || res.Action == "" {
			fmt.Fprintf(w, "%s%s %s\n", prefix, cmd, clean(host))
			printJSON(w, a.reply.Result)
			return
		}
		printDrainResult(w, prefix, host, on, res)
	}, notInClusterHint)
	if rc != exitOK || !wait {
		return rc
	}
	return co.waitDrained(host, res.Workers, start.Add(total), total, stdout, stderr)
}

func printDrainResult(w io.Writer, prefix, host string, on bool, res api.DrainResult) {
	h := clean(host)
	left := ""
	if len(res.Workers) > 0 {
		names := make([]string, len(res.Workers))
		for i, n := range res.Workers {
			names[i] = clean(n)
		}
		left = fmt.Sprintf(": %d cluster workers to move (%s)", len(res.Workers), strings.Join(names, ", "))
	} else if on {
		left = ": no cluster worker on it"
	}
	switch {
	case on && res.Action == "unchanged":
		fmt.Fprintf(w, "%shost %s was already draining%s\n", prefix, h, left)
	case on:
		fmt.Fprintf(w, "%sdraining host %s%s\n", prefix, h, left)
	case res.Action == "unchanged":
		fmt.Fprintf(w, "%shost %s was not draining\n", prefix, h)
	default:
		fmt.Fprintf(w, "%sundrained host %s: it takes new cluster workers again\n", prefix, h)
	}
}

// waitDrained polls cluster_status until no cluster worker is placed on or
// runs on host, printing each move ("moved NAME: A -> B") once the worker
// runs on its new host; initial are the workers the drain found on host.
// It gives up at deadline.
func (o *clientOptions) waitDrained(host string, initial []string, deadline time.Time, total time.Duration, stdout, stderr io.Writer) int {
	seen := map[string]bool{} // workers seen on host, not yet seen moved
	for _, n := range initial {
		seen[n] = true
	}
	// Over AMQP the poller keeps one connection for all the polls.
	p := &poller{o: o, c: clusterStatusCall()}
	defer p.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var left []string
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			fmt.Fprintf(stderr, "dynworkers drain: host %s still has %d cluster workers after %s: %s\n",
				clean(host), len(left), total, strings.Join(left, ", "))
			return exitHostError
		}
		o.timeout = min(remaining, drainPollTimeout)
		answers, err := p.poll(ctx, io.Discard)
		var v api.ClusterView
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(stderr, "dynworkers drain: interrupted; host %s goes on draining (see status -cluster)\n", clean(host))
			return exitHostError
		case err != nil:
			// A host that does not answer one poll (it may be the
			// one that is drained and restarted) is asked again.
			fmt.Fprintf(stderr, "dynworkers drain: note: %v; asking again\n", err)
		case !answers[0].reply.OK:
			printError(stderr, "dynworkers drain: ", answers[0].reply.Error)
			return exitHostError
		case json.Unmarshal(answers[0].reply.Result, &v) != nil:
			fmt.Fprintln(stderr, "dynworkers drain: the cluster_status result has an unexpected shape")
			return exitHostError
		default:
			left = left[:0]
			for _, wk := range v.Workers {
				on := wk.Host == host || wk.RunningOn == host
				switch {
				case on:
					seen[wk.Name] = true
					left = append(left, clean(wk.Name))
				case seen[wk.Name] && wk.RunningOn != "" && wk.State == "running":
					fmt.Fprintf(stdout, "moved %s: %s -> %s\n", clean(wk.Name), clean(host), clean(wk.RunningOn))
					delete(seen, wk.Name)
				}
			}
			if len(left) == 0 {
				// Workers seen on host that are gone (stopped) or
				// not yet running elsewhere are not moves to report.
				for _, wk := range v.Workers {
					switch {
					case !seen[wk.Name] || wk.Host == "":
					case wk.RunningOn == wk.Host && wk.State == "running":
						fmt.Fprintf(stdout, "moved %s: %s -> %s\n", clean(wk.Name), clean(host), clean(wk.Host))
					default:
						fmt.Fprintf(stdout, "moved %s: %s -> %s (%s)\n", clean(wk.Name), clean(host), clean(wk.Host), clean(wk.State))
					}
				}
				fmt.Fprintf(stdout, "host %s is drained: no cluster worker left on it\n", clean(host))
				return exitOK
			}
		}
		if !sleep(ctx, max(min(drainPollInterval, time.Until(deadline)), 0)) {
			fmt.Fprintf(stderr, "dynworkers drain: interrupted; host %s goes on draining (see status -cluster)\n", clean(host))
			return exitHostError
		}
	}
}
