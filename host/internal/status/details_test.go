package status

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/zclconf/go-cty/cty"
)

// asker stands for the workers' Status(): it counts the questions per
// process and answers each with its number, once let go.
type asker struct {
	mu    sync.Mutex
	asked map[*pluginproc.Process]int
	hold  chan struct{} // nil: answer at once; else wait until closed
}

func (a *asker) query(ctx context.Context, p *pluginproc.Process, _ *config.Worker) ([]byte, string) {
	a.mu.Lock()
	a.asked[p]++
	n, hold := a.asked[p], a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, "the worker did not answer within " + DetailsTimeout.String()
		}
	}
	return fmt.Appendf(nil, `{"answer":%d}`, n), ""
}

func (a *asker) count(p *pluginproc.Process) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[p]
}

// running lists n running workers, each with a process of its own.
func running(n int) ([]api.Worker, []tree.WorkerInfo, []*pluginproc.Process) {
	var ws []api.Worker
	var infos []tree.WorkerInfo
	var ps []*pluginproc.Process
	for i := range n {
		p := new(pluginproc.Process)
		w := api.Worker{Name: fmt.Sprintf("w%d", i), State: string(supervise.StateRunning)}
		ws = append(ws, w)
		infos = append(infos, tree.WorkerInfo{Worker: w, Instance: p})
		ps = append(ps, p)
	}
	return ws, infos, ps
}

// age makes the kept answers of d older by by.
func (d *Details) age(by time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range d.workers {
		if k.last != nil {
			k.last.at = k.last.at.Add(-by)
		}
	}
}

// Details asks each worker once for the reports within DetailsFresh,
// shares a question under way among the reports made meanwhile, shows an
// answer up to DetailsMaxAge old while asking again in the background,
// waits for a new one past that, and forgets the processes no longer
// listed.
func TestDetailsKeepsAndSharesAnswers(t *testing.T) {
	a := &asker{asked: map[*pluginproc.Process]int{}}
	d := &Details{query: a.query}
	ws, infos, ps := running(3)
	fill := func() []api.Worker {
		out := append([]api.Worker(nil), ws...)
		d.fill(context.Background(), out, infos)
		return out
	}
	for _, w := range fill() {
		if string(w.Details) != `{"answer":1}` || w.DetailsError != "" {
			t.Fatalf("%s: details %s, error %q; want the first answer", w.Name, w.Details, w.DetailsError)
		}
	}
	// Fresh: not asked again.
	fill()
	for _, p := range ps {
		if n := a.count(p); n != 1 {
			t.Fatalf("asked %d times within DetailsFresh, want once", n)
		}
	}

	// Past DetailsMaxAge, reports made together wait for one question.
	d.age(DetailsMaxAge)
	a.mu.Lock()
	a.hold = make(chan struct{})
	a.mu.Unlock()
	var wg sync.WaitGroup
	results := make([][]api.Worker, 4)
	for i := range results {
		wg.Go(func() { results[i] = fill() })
	}
	waitAsked(t, a, ps, 2)
	close(a.hold)
	wg.Wait()
	for _, r := range results {
		for _, w := range r {
			if string(w.Details) != `{"answer":2}` {
				t.Fatalf("%s: details %s after the wait, want the second answer", w.Name, w.Details)
			}
		}
	}
	for _, p := range ps {
		if n := a.count(p); n != 2 {
			t.Fatalf("asked %d times by 4 reports at once, want 2 in all", n)
		}
	}

	// Stale but not too old: the kept answer at once, a question in the
	// background whose answer the next report shows.
	d.age(DetailsFresh)
	a.mu.Lock()
	a.hold = make(chan struct{})
	a.mu.Unlock()
	for _, w := range fill() {
		if string(w.Details) != `{"answer":2}` {
			t.Fatalf("%s: details %s, want the kept answer while the worker is asked", w.Name, w.Details)
		}
	}
	waitAsked(t, a, ps, 3)
	fill() // the question under way is not asked again
	close(a.hold)
	waitFor(t, func() bool {
		for _, w := range fill() {
			if string(w.Details) != `{"answer":3}` {
				return false
			}
		}
		return true
	})
	for _, p := range ps {
		if n := a.count(p); n != 3 {
			t.Fatalf("asked %d times, want 3", n)
		}
	}

	// A process no longer listed is forgotten.
	d.fill(context.Background(), append([]api.Worker(nil), ws[:1]...), infos[:1])
	d.mu.Lock()
	kept := len(d.workers)
	d.mu.Unlock()
	if kept != 1 {
		t.Errorf("%d processes kept, want the one listed", kept)
	}
}

func waitAsked(t *testing.T, a *asker, ps []*pluginproc.Process, n int) {
	t.Helper()
	waitFor(t, func() bool {
		for _, p := range ps {
			if a.count(p) < n {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// With more running workers than DetailsBurst, a report asks DetailsBurst
// of them and waits for those only; the others show that they wait their
// turn, and are asked in the background at no more than DetailsRate, each
// once however many reports come meanwhile, so that a later report shows
// every answer.
func TestDetailsAsksAtABoundedRate(t *testing.T) {
	rate, burst := DetailsRate, DetailsBurst
	DetailsRate, DetailsBurst = 100, 5
	defer func() { DetailsRate, DetailsBurst = rate, burst }()
	a := &asker{asked: map[*pluginproc.Process]int{}}
	d := &Details{query: a.query}
	const n = 25
	ws, infos, ps := running(n)
	fill := func() []api.Worker {
		out := append([]api.Worker(nil), ws...)
		d.fill(context.Background(), out, infos)
		return out
	}
	start := time.Now()
	answered := 0
	for _, w := range fill() {
		switch {
		case string(w.Details) == `{"answer":1}` && w.DetailsError == "" && w.DetailsAt != nil:
			answered++
		case w.Details == nil && w.DetailsError == detailsPending && w.DetailsAt == nil:
		default:
			t.Fatalf("%s: details %s, error %q, at %v; want the first answer or pending", w.Name, w.Details, w.DetailsError, w.DetailsAt)
		}
	}
	if answered != 5 {
		t.Fatalf("the first report showed %d answers, want the burst's 5", answered)
	}
	// More reports while the queue is asked: nobody is asked twice, and
	// never more than the burst plus the rate's share of the time gone by.
	var all bool
	for !all {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the queued workers were not all asked within 10 s")
		}
		total := 0
		for _, p := range ps {
			c := a.count(p)
			if c > 1 {
				t.Fatalf("a worker was asked %d times within its first answer's DetailsFresh", c)
			}
			total += c
		}
		if limit := 5 + int(time.Since(start).Seconds()*DetailsRate) + 1; total > limit {
			t.Fatalf("%d questions after %v, more than the burst and rate allow (%d)", total, time.Since(start), limit)
		}
		all = total == n
		fill()
		time.Sleep(5 * time.Millisecond)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("25 workers asked in %v with a burst of 5 at 100/s, want at least 150 ms (200 ms less a batch)", el)
	}
	waitFor(t, func() bool {
		for _, w := range fill() {
			if w.Details == nil {
				return false
			}
		}
		return true
	})
	// The goroutine that asks the queue ends with it.
	waitFor(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !d.sending && len(d.queue) == 0
	})
}

// Details redacts each worker spec's config once and shares it among the
// reports while the spec is listed; a new spec (a reload, a restart with
// a new config) is redacted anew, and a sensitive value never shows.
func TestDetailsRedactsEachSpecOnce(t *testing.T) {
	spec := func(pw string) *config.Worker {
		return &config.Worker{
			Config: cty.ObjectVal(map[string]cty.Value{"user": cty.StringVal("bob"), "password": cty.StringVal(pw)}),
			Schema: sdk.Schema{{Name: "user", Type: "string"}, {Name: "password", Type: "string", Sensitive: true}},
		}
	}
	a, b := spec("hunter22"), spec("swordfish")
	d := &Details{}
	first := d.redacted([]tree.WorkerInfo{{Spec: a}, {Spec: b}})
	second := d.redacted([]tree.WorkerInfo{{Spec: a}, {Spec: b}})
	for i, c := range first {
		if c["user"] != "bob" || c["password"] != config.RedactedValue {
			t.Fatalf("config %d: %v, want user bob and the password redacted", i, c)
		}
		if reflect.ValueOf(c).UnsafePointer() != reflect.ValueOf(second[i]).UnsafePointer() {
			t.Errorf("config %d redacted again for the same spec", i)
		}
	}
	// A new spec for the first worker: redacted anew; b's dropped when it
	// is no longer listed.
	c := spec("correct horse")
	third := d.redacted([]tree.WorkerInfo{{Spec: c}})
	if reflect.ValueOf(third[0]).UnsafePointer() == reflect.ValueOf(first[0]).UnsafePointer() || third[0]["password"] != config.RedactedValue {
		t.Errorf("new spec: %v, want a config of its own, password redacted", third[0])
	}
	if len(d.configs) != 1 {
		t.Errorf("%d redacted configs kept, want the one listed", len(d.configs))
	}
	if (*Details)(nil).redacted([]tree.WorkerInfo{{Spec: a}}) != nil {
		t.Error("a nil Details keeps configs")
	}
}
