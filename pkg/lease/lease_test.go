package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/lease"
)

// fakeClock is the time every elector of a test reckons by (each with its own skew).
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) skewed(d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

const (
	window = 15 * time.Second
	margin = 2 * time.Second
)

// origin is the start of a window (windows are reckoned from the Unix epoch).
var origin = time.Unix(0, 0).Add(window * time.Duration(time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()/int64(window))).UTC()

// failingStore fails the claims of the electors named in failing (shared by every store of a
// test).
type failingStore struct {
	lease.Store
	failing *sync.Map // holder id -> true
}

func (f *failingStore) Claim(ctx context.Context, r lease.Record) (bool, error) {
	if _, ok := f.failing.Load(r.Holder); ok {
		return false, errors.New("injected: claim failed")
	}
	return f.Store.Claim(ctx, r)
}

// electors returns n electors of job "j" on one database, each with a client of its own (as
// replicas have), on clock c with the given skews (cycled).
func electors(t *testing.T, c *fakeClock, n int, skews ...time.Duration) ([]*lease.Elector, *sync.Map) {
	t.Helper()
	name := devdb.TestDatabase(t)
	failing := &sync.Map{}
	out := make([]*lease.Elector, n)
	for i := range out {
		db := devdb.TestDBNamed(t, name)
		st := &failingStore{Store: lease.NewMongoStore(db.Collection(lease.DefaultCollection)), failing: failing}
		skew := time.Duration(0)
		if len(skews) > 0 {
			skew = skews[i%len(skews)]
		}
		out[i] = lease.New(st, "j", lease.Options{Window: window, Margin: margin, Now: c.skewed(skew), ID: fmt.Sprintf("e%d", i)})
	}
	return out, failing
}

// pollAll polls every elector at once (but those in skip).
func pollAll(t *testing.T, es []*lease.Elector, skip ...*lease.Elector) {
	t.Helper()
	var wg sync.WaitGroup
	for _, e := range es {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == e
		}
		if !skipped {
			wg.Go(func() { _, _ = e.Poll(context.Background()) })
		}
	}
	wg.Wait()
}

// leaders returns the electors that lead now.
func leaders(es []*lease.Elector) []*lease.Elector {
	var out []*lease.Elector
	for _, e := range es {
		if e.Leader() {
			out = append(out, e)
		}
	}
	return out
}

func ids(es []*lease.Elector) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID()
	}
	return out
}

// TestOneHolderPerWindow: eight electors (separate clients) polling at once at a window's
// boundary: exactly one holds it; polling on through three windows, the same one keeps the job
// (it claims each next window before the others may try it) and nobody else ever leads.
func TestOneHolderPerWindow(t *testing.T) {
	t.Parallel()
	c := &fakeClock{}
	c.Set(origin)
	es, _ := electors(t, c, 8)
	pollAll(t, es)
	l := leaders(es)
	if len(l) != 1 {
		t.Fatalf("at the boundary: leaders %v, want exactly one", ids(l))
	}
	holder := l[0]
	for step := 0; step < 3*15; step++ {
		c.Advance(window / 15)
		pollAll(t, es)
		if l := leaders(es); len(l) != 1 || l[0] != holder {
			t.Fatalf("at %v: leaders %v, want only %s", c.Now().Sub(origin), ids(l), holder.ID())
		}
	}
}

// TestReleasedJobIsTakenOverAtOnce: a holder that releases the job (a replica shutting down)
// leads no more, and another elector takes over at its next poll, in the same window.
func TestReleasedJobIsTakenOverAtOnce(t *testing.T) {
	t.Parallel()
	c := &fakeClock{}
	c.Set(origin.Add(window * 3 / 4)) // the holder claims the next window too
	es, _ := electors(t, c, 4)
	pollAll(t, es)
	l := leaders(es)
	if len(l) != 1 {
		t.Fatalf("leaders %v", ids(l))
	}
	old := l[0]
	if err := old.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if old.Leader() {
		t.Fatal("a released elector still leads")
	}
	c.Advance(time.Second)
	pollAll(t, es)
	if l := leaders(es); len(l) != 1 || l[0] == old {
		t.Fatalf("a poll after the release: leaders %v, want one other than %s", ids(l), old.ID())
	}
	// The next window too (the old holder had claimed it before it released).
	c.Advance(window / 2)
	pollAll(t, es)
	if l := leaders(es); len(l) != 1 || l[0] == old {
		t.Fatalf("in the next window: leaders %v", ids(l))
	}
}

// TestDeadHolderIsReplaced: a holder that stops polling without a word (its process died, or
// is paused) leads nobody once its windows end, and another takes over at the first poll of
// the first window it did not claim: at most 4/3 of a window after it stopped. At no moment
// do two lead (the paused one included, asked with its clock running on).
func TestDeadHolderIsReplaced(t *testing.T) {
	t.Parallel()
	c := &fakeClock{}
	c.Set(origin)
	es, _ := electors(t, c, 4)
	pollAll(t, es)
	l := leaders(es)
	if len(l) != 1 {
		t.Fatalf("leaders %v", ids(l))
	}
	dead := l[0]
	c.Advance(window * 2 / 3) // the holder claims window 1 here, then dies
	pollAll(t, es)
	step := window / 30
	var takenOver time.Duration
	for at := time.Duration(0); at < 3*window; at += step {
		c.Advance(step)
		pollAll(t, es, dead)
		l := leaders(es)
		if len(l) > 1 {
			t.Fatalf("%v after the death: leaders %v", at+step, ids(l))
		}
		if len(l) == 1 && l[0] != dead && takenOver == 0 {
			takenOver = at + step
		}
		if len(l) == 1 && l[0] == dead && c.Now().Sub(origin) >= 2*window-margin {
			t.Fatalf("the dead holder leads past its last window's end less the margin (at %v)", c.Now().Sub(origin))
		}
	}
	// It held windows 0 and 1: the others take window 2 at their first poll in it.
	if want := 2*window - window*2/3; takenOver == 0 || takenOver > want+step {
		t.Fatalf("taken over %v after the death, want by %v", takenOver, want+step)
	}
}

// TestSkewWithinMarginNeverOverlaps: electors whose clocks differ by up to 1.6 s (margin 2 s)
// never lead two at once, though the holder keeps failing to claim the next window (so the job
// changes hands at every window's end, where the skew would show): checked every 100 ms
// through six windows. And some elector leads most of the time.
func TestSkewWithinMarginNeverOverlaps(t *testing.T) {
	t.Parallel()
	c := &fakeClock{}
	c.Set(origin)
	skews := []time.Duration{-800 * time.Millisecond, 0, 800 * time.Millisecond, 300 * time.Millisecond}
	es, failing := electors(t, c, 4, skews...)
	step := 100 * time.Millisecond
	led, total := 0, 0
	for at := time.Duration(0); at < 6*window; at += step {
		// Each holder fails to claim the next window: the others take it once it begins.
		for _, e := range es {
			if e.Leader() {
				failing.Store(e.ID(), true)
			} else {
				failing.Delete(e.ID())
			}
		}
		if at%(time.Second) == 0 { // poll every second, not every step
			pollAll(t, es)
		}
		l := leaders(es)
		if len(l) > 1 {
			t.Fatalf("at %v: leaders %v", at, ids(l))
		}
		if len(l) == 1 {
			led++
		}
		total++
		c.Advance(step)
	}
	// Between holders: the old one stops margin before its window's end (by its clock) and a
	// new one starts at its first poll in the next window (by its own): a gap of margin plus
	// at most a poll and the skew per window.
	if float64(led)/float64(total) < 0.6 {
		t.Fatalf("some elector led only %d of %d checks", led, total)
	}
}
