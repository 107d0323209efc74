package racetest

import (
	"sync/atomic"
	"testing"
)

func TestRaceRunsEveryRacer(t *testing.T) {
	var n atomic.Int32
	seen := make([]bool, Racers)
	Race(Racers, func(i int) { n.Add(1); seen[i] = true })
	if n.Load() != Racers {
		t.Fatalf("%d racers ran, want %d", n.Load(), Racers)
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("racer %d did not run", i)
		}
	}
}
