// Package lifecycle runs a service's background loops: the work a process does beside its
// requests (expiring holds, relaying emails, cleaning up, back-filling). A loop is a function
// that runs until its context ends. A service adds its loops while it wires itself, starts
// them all once everything they use is built, and stops them all, together, when it closes:
// nothing runs before Start, so a service that fails to start leaves nothing behind.
package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Loops is a set of background loops started and stopped together. The zero value is ready
// to use. It is safe for concurrent use.
type Loops struct {
	mu      sync.Mutex
	pending []loop
	ctx     context.Context // set by Start
	cancel  context.CancelFunc
	started bool
	stopped bool
	running map[string]int
	wg      sync.WaitGroup
}

type loop struct {
	name string
	run  func(ctx context.Context)
}

// Add adds a loop named name (for Stop's error). Before Start it waits for Start; after
// Start it starts at once; after Stop it is dropped.
func (l *Loops) Add(name string, run func(ctx context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopped:
	case l.started:
		l.goLocked(loop{name, run})
	default:
		l.pending = append(l.pending, loop{name, run})
	}
}

// Start starts every loop added so far, each in its own goroutine, with a context that
// keeps ctx's values but ends only at Stop (a service's start-up context ends long before
// its loops should). Starting twice, or after Stop, does nothing.
func (l *Loops) Start(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.stopped {
		return
	}
	l.started = true
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.running = map[string]int{}
	for _, lp := range l.pending {
		l.goLocked(lp)
	}
	l.pending = nil
}

func (l *Loops) goLocked(lp loop) {
	l.running[lp.name]++
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			if l.running[lp.name]--; l.running[lp.name] == 0 {
				delete(l.running, lp.name)
			}
			l.mu.Unlock()
		}()
		lp.run(l.ctx)
	}()
}

// Stop ends every loop's context and waits until they have all returned, or until ctx
// ends: then its error names the loops still running. Loops never started are dropped.
// Stopping again waits again.
func (l *Loops) Stop(ctx context.Context) error {
	l.mu.Lock()
	l.stopped = true
	l.pending = nil
	if l.cancel != nil {
		l.cancel()
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		names := make([]string, 0, len(l.running))
		for n := range l.running {
			names = append(names, n)
		}
		l.mu.Unlock()
		slices.Sort(names)
		return fmt.Errorf("background loops did not stop (%s): %w", strings.Join(names, ", "), ctx.Err())
	}
}
