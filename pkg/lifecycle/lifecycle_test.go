package lifecycle_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/lifecycle"
)

type key struct{}

// TestLoopsStartTogetherAndStopTogether: nothing runs before Start; every loop runs with
// the start context's values but outlives it; Stop ends them all and waits for them.
func TestLoopsStartTogetherAndStopTogether(t *testing.T) {
	var l lifecycle.Loops
	var running, ended atomic.Int32
	sawValue := make(chan bool, 3)
	for range 3 {
		l.Add("worker", func(ctx context.Context) {
			running.Add(1)
			sawValue <- ctx.Value(key{}) == "v"
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // a loop that finishes its round first
			ended.Add(1)
		})
	}
	time.Sleep(20 * time.Millisecond)
	if running.Load() != 0 {
		t.Fatal("a loop ran before Start")
	}
	startCtx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	l.Start(startCtx)
	cancel() // the start-up context ends; the loops go on
	for range 3 {
		if !<-sawValue {
			t.Fatal("a loop did not see the start context's values")
		}
	}
	time.Sleep(20 * time.Millisecond)
	if ended.Load() != 0 {
		t.Fatal("the loops ended with the start-up context")
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ended.Load() != 3 {
		t.Fatalf("Stop returned with %d of 3 loops ended", ended.Load())
	}
	// Added after Stop: never runs. Start after Stop: nothing.
	var late atomic.Bool
	l.Add("late", func(context.Context) { late.Store(true) })
	l.Start(context.Background())
	time.Sleep(20 * time.Millisecond)
	if late.Load() {
		t.Fatal("a loop added after Stop ran")
	}
}

// TestLoopsAddedAfterStartRunAtOnce.
func TestLoopsAddedAfterStartRunAtOnce(t *testing.T) {
	var l lifecycle.Loops
	l.Start(context.Background())
	ran := make(chan struct{})
	l.Add("late", func(ctx context.Context) { close(ran); <-ctx.Done() })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a loop added after Start did not start")
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLoopsStopNamesTheStuck: a loop that ignores its context makes Stop return at its
// deadline, naming it; the others are not named.
func TestLoopsStopNamesTheStuck(t *testing.T) {
	var l lifecycle.Loops
	release := make(chan struct{})
	l.Add("stuck", func(context.Context) { <-release })
	l.Add("polite", func(ctx context.Context) { <-ctx.Done() })
	l.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := l.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "stuck") || strings.Contains(err.Error(), "polite") {
		t.Fatalf("Stop: %v; want an error naming only the stuck loop", err)
	}
	close(release)
	if err := l.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop, once the loop returned: %v", err)
	}
}

// TestLoopsNeverStarted: Stop without Start drops the loops and returns at once.
func TestLoopsNeverStarted(t *testing.T) {
	var l lifecycle.Loops
	var ran atomic.Bool
	l.Add("never", func(context.Context) { ran.Store(true) })
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Start(context.Background())
	time.Sleep(20 * time.Millisecond)
	if ran.Load() {
		t.Fatal("a loop ran after Stop")
	}
}
