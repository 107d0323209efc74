// Package racetest runs races for the stores' conformance suites: many goroutines released
// together on one key, and the check that exactly one of them won.
package racetest

import (
	"sync"
	"testing"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Racers is how many goroutines a race starts at once on one key.
const Racers = 16

// Race runs f(0..n-1) in n goroutines released together, and waits for them all.
func Race(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// OneWins checks that exactly one of errsOf is nil and every other carries the code loser, and
// returns the winner's index.
func OneWins(t testing.TB, what string, errsOf []error, loser errs.Code) int {
	t.Helper()
	winner := -1
	for i, err := range errsOf {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("%s: calls %d and %d both succeeded", what, winner, i)
		case err == nil:
			winner = i
		case !errs.Is(err, loser):
			t.Fatalf("%s: call %d: %v, want nil or %s", what, i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no call succeeded", what)
	}
	return winner
}
