package supervise

import (
	"context"
	"fmt"
	"testing"
)

// idleInstance runs until it is stopped.
type idleInstance struct{ done chan struct{} }

func (i *idleInstance) Done() <-chan struct{} { return i.done }
func (i *idleInstance) ExitErr() error        { return nil }
func (i *idleInstance) Stop(context.Context) error {
	close(i.done)
	return nil
}

// BenchmarkStartChildren starts n children that run at once, all added
// before the first has started (as the tree does at host start-up), and
// stops them: the time and allocations per child should not grow with n
// (publish once copied every child's status at every event).
func BenchmarkStartChildren(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("children-%d", n), func(b *testing.B) {
			check := checkSnapshots
			checkSnapshots = false // its check is quadratic
			defer func() { checkSnapshots = check }()
			svc := ServiceFunc(func(context.Context) (Instance, error) {
				return &idleInstance{done: make(chan struct{})}, nil
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				s, err := New(Spec{Name: "root"})
				if err != nil {
					b.Fatal(err)
				}
				results := make([]<-chan error, n)
				for i := range n {
					if results[i], err = s.AddAsync(ctx, ChildSpec{Name: fmt.Sprintf("w%04d", i), Service: svc}); err != nil {
						b.Fatal(err)
					}
				}
				for _, r := range results {
					if err := <-r; err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Stop(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/child")
		})
	}
}

// BenchmarkRemoveChildren removes n running children one after another, as
// a reload that drops most of a host's workers does: each removal rebuilds
// the snapshot (O(n), in place), so the time per child grows with n, but
// not the allocations.
func BenchmarkRemoveChildren(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("children-%d", n), func(b *testing.B) {
			check := checkSnapshots
			checkSnapshots = false // its check is quadratic
			defer func() { checkSnapshots = check }()
			svc := ServiceFunc(func(context.Context) (Instance, error) {
				return &idleInstance{done: make(chan struct{})}, nil
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				s, err := New(Spec{Name: "root"})
				if err != nil {
					b.Fatal(err)
				}
				results := make([]<-chan error, n)
				for i := range n {
					if results[i], err = s.AddAsync(ctx, ChildSpec{Name: fmt.Sprintf("w%04d", i), Service: svc}); err != nil {
						b.Fatal(err)
					}
				}
				for _, r := range results {
					if err := <-r; err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for i := range n {
					if err := s.Remove(ctx, fmt.Sprintf("w%04d", i)); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if err := s.Stop(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/child")
		})
	}
}
