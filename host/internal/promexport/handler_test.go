package promexport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// scrape GETs url as Prometheus would, with no Accept header asking for
// another format, and returns the body.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	body, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// get is scrape for goroutines other than the test's, which may not call
// t.Fatal.
func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s\n%s", url, resp.Status, body)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, params, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" || params["version"] != "0.0.4" {
		return nil, fmt.Errorf("GET %s: Content-Type %q, want text/plain; version=0.0.4", url, ct)
	}
	return body, nil
}

// parse parses an exposition as Prometheus does, with the classic
// (legacy) name rules, the strictest: every name here must satisfy them.
func parse(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, body)
	}
	return mfs
}

// TestHandler serves a snapshot over HTTP and checks that the body parses,
// that it holds the host's metrics and the Go and process collectors', and
// that names with quotes, backslashes, newlines and non-ASCII letters come
// back intact.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(NewHandler(fixed(testSnapshot())))
	defer srv.Close()
	body := scrape(t, srv.URL)
	mfs := parse(t, body)

	want := []string{
		"go_goroutines", "go_memstats_alloc_bytes", "go_gc_duration_seconds", "go_info",
		"promhttp_metric_handler_requests_total",
	}
	for _, d := range allDescs {
		want = append(want, descName(t, d))
	}
	if runtime.GOOS == "linux" {
		want = append(want, "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
			"process_start_time_seconds")
	}
	for _, name := range want {
		if mfs[name] == nil {
			t.Errorf("no %s in the exposition", name)
		}
	}

	// Every worker and supervisor name comes back as it was (the invalid
	// byte as U+FFFD).
	got := map[string]bool{}
	for _, m := range mfs["dynworkers_worker_up"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "worker" || lp.GetName() == "supervisor" {
				got[lp.GetValue()] = true
			}
		}
	}
	for _, name := range []string{quotedWorker, newlineWorker, "bad\uFFFDname", "stopped one", campaignPath, innerPath} {
		if !got[name] {
			t.Errorf("label value %q not in dynworkers_worker_up; got %v", name, slices.Sorted(maps.Keys(got)))
		}
	}
}

func descName(t *testing.T, d *prometheus.Desc) string {
	t.Helper()
	// Desc has no accessor for its name; its String form starts with
	// Desc{fqName: "<name>", ...}.
	s := d.String()
	_, rest, ok := strings.Cut(s, `fqName: "`)
	name, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		t.Fatalf("cannot read the name of %s", s)
	}
	return name
}

// TestHandlerNoSnapshot checks that the handler serves the runtime
// metrics before the host has taken its first sample.
func TestHandlerNoSnapshot(t *testing.T) {
	srv := httptest.NewServer(NewHandler(fixed(nil)))
	defer srv.Close()
	mfs := parse(t, scrape(t, srv.URL))
	if mfs["go_goroutines"] == nil {
		t.Error("no go_goroutines in the exposition")
	}
	for name := range mfs {
		if strings.HasPrefix(name, "dynworkers_") {
			t.Errorf("%s exported without a snapshot", name)
		}
	}
}

// TestHandlerConcurrentScrapes scrapes from several goroutines while the
// source swaps snapshots, for the race detector.
func TestHandlerConcurrentScrapes(t *testing.T) {
	var mu sync.Mutex
	snap := testSnapshot()
	src := func() *monitor.Snapshot {
		mu.Lock()
		defer mu.Unlock()
		return snap
	}
	srv := httptest.NewServer(NewHandler(src))
	defer srv.Close()

	// Swap snapshots until the scrapers are done.
	done := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			next := testSnapshot()
			next.Time = next.Time.Add(time.Duration(i) * time.Second)
			mu.Lock()
			snap = next
			mu.Unlock()
			runtime.Gosched()
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 4*5)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				body, err := get(srv.URL)
				if err == nil {
					p := expfmt.NewTextParser(model.LegacyValidation)
					_, err = p.TextToMetricFamilies(bytes.NewReader(body))
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(done)
	<-swapped
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHandlerDuplicateWorker checks that a snapshot with two workers of
// one name (which the host does not allow) still gives a scrape, without
// the duplicate, and that the error is logged.
func TestHandlerDuplicateWorker(t *testing.T) {
	snap := testSnapshot()
	snap.Workers = append(snap.Workers, snap.Workers[0])
	var log lineLog
	srv := httptest.NewServer(NewHandler(fixed(snap), WithErrorLog(&log)))
	defer srv.Close()
	mfs := parse(t, scrape(t, srv.URL))
	if n := len(mfs["dynworkers_worker_up"].GetMetric()); n != len(snap.Workers)-1 {
		t.Errorf("%d dynworkers_worker_up series, want %d", n, len(snap.Workers)-1)
	}
	if !strings.Contains(log.String(), "dynworkers_worker_up") {
		t.Errorf("duplicate series not logged; log: %q", log.String())
	}
}

// lineLog is a promhttp.Logger that keeps what it is given.
type lineLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineLog) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(&l.b, v...)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPromtool runs promtool check metrics, Prometheus's own parser and
// linter, on a scrape. make test installs promtool (scripts/ensure-promtool.sh:
// the Debian package prometheus has it); without it the test is skipped, or
// fails when CI is set, as the browser tests do without Chromium.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not on PATH (run scripts/ensure-promtool.sh: apt-get install --no-install-recommends prometheus)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	srv := httptest.NewServer(NewHandler(fixed(testSnapshot())))
	defer srv.Close()
	body := scrape(t, srv.URL)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	} else if err != nil {
		t.Fatal(err)
	}
}
