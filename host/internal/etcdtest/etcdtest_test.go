package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestRestartKeepsData(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("etcd still runs after Kill")
	}
	s.Restart()
	r, err := c.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after a restart k = %v, want v", r.Kvs)
	}
}

func TestProxyBlockCutsClientOff(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, s.Endpoint())
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{p.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	p.Block()
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := c.Put(short, "k", "2"); err == nil {
		t.Fatal("a put through a blocked proxy succeeded")
	}
	p.Unblock()
	if _, err := c.Put(ctx, "k", "3"); err != nil {
		t.Fatalf("put after Unblock: %v", err)
	}
}
