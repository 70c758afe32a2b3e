package supervise_test

import (
	"context"
	"fmt"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// goroutineInstance runs work in a goroutine until it is stopped.
type goroutineInstance struct {
	quit, done chan struct{}
}

func (g *goroutineInstance) Done() <-chan struct{} { return g.done }
func (g *goroutineInstance) ExitErr() error        { return nil }
func (g *goroutineInstance) Stop(ctx context.Context) error {
	close(g.quit)
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err() // a real instance would kill here
	}
}

func Example() {
	sup, err := supervise.New(supervise.Spec{
		Name: "root",
		EventHook: func(ev supervise.Event) {
			fmt.Println(ev.Type(), ev.Map()["worker"])
		},
	})
	if err != nil {
		panic(err)
	}
	ticker := supervise.ServiceFunc(func(ctx context.Context) (supervise.Instance, error) {
		g := &goroutineInstance{quit: make(chan struct{}), done: make(chan struct{})}
		go func() {
			defer close(g.done)
			<-g.quit // the work would go here
		}()
		return g, nil
	})
	ctx := context.Background()
	if err := sup.Add(ctx, supervise.ChildSpec{Name: "ticker", Service: ticker, Restart: supervise.Transient}); err != nil {
		panic(err)
	}
	st, _ := sup.Child("ticker")
	fmt.Println("state:", st.State)
	if err := sup.Stop(ctx); err != nil {
		panic(err)
	}
	// Output:
	// worker_starting ticker
	// worker_started ticker
	// state: running
	// worker_stopping ticker
	// worker_stopped ticker
}
