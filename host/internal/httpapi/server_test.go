package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

const testTimeout = 10 * time.Second

// started runs ListenAndServe in the background and waits until it listens.
func started(t *testing.T, s *Server) (cancel func() error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()
	select {
	case <-s.Listening():
	case err := <-done:
		stop()
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(testTimeout):
		stop()
		t.Fatal("the server did not listen")
	}
	return func() error {
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(testTimeout):
			t.Fatal("ListenAndServe did not return after its context ended")
			return nil
		}
	}
}

func TestListenAndServe(t *testing.T) {
	d := &fakeDoer{reply: func(*control.Request) control.Reply {
		return control.Reply{OK: true, Result: map[string]string{"host": "h1"}}
	}}
	s := New(Options{Addr: "127.0.0.1:0", Doer: d})
	if s.Addr() != "" {
		t.Errorf("Addr before listening: %q", s.Addr())
	}
	stop := started(t, s)
	addr := s.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "" || port == "0" {
		t.Fatalf("Addr %q has no real port", addr)
	}
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK     bool
		Result struct{ Host string }
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !rep.OK || rep.Result.Host != "h1" {
		t.Fatalf("status: %d %+v %v", resp.StatusCode, rep, err)
	}

	// The same address again: the listen error comes back at once.
	taken := New(Options{Addr: addr, Doer: d})
	errc := make(chan error, 1)
	go func() { errc <- taken.ListenAndServe(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("a taken address: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("ListenAndServe on a taken address did not return")
	}

	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the server still answers after its context ended")
	}
}

func TestListenAndServeRefusesAnOpenAddressWithoutToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:7780"} {
		err := New(Options{Addr: addr, Doer: &fakeDoer{}}).ListenAndServe(context.Background())
		if err == nil || !strings.Contains(err.Error(), "without a token") {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// slowDoer blocks until release is closed.
type slowDoer struct {
	entered chan struct{}
	release chan struct{}
}

func (d *slowDoer) Do(context.Context, *control.Request) control.Reply {
	close(d.entered)
	<-d.release
	return control.Reply{OK: true}
}

func TestShutdownWaitsForRequestsInFlight(t *testing.T) {
	d := &slowDoer{entered: make(chan struct{}), release: make(chan struct{})}
	s := New(Options{Addr: "127.0.0.1:0", Doer: d})
	stop := started(t, s)
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/workers/w/restart", nil)
		req.Header.Set(RequestHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-d.entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	close(d.release)
	if code := <-answered; code != 200 {
		t.Errorf("the request in flight got %d", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
