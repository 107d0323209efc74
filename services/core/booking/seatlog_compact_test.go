package booking_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// snapCounter counts a store's snapshot reads: a view that loads (or reloads) reads one.
type snapCounter struct {
	booking.BookingStore
	reads atomic.Int64
}

func (c *snapCounter) SeatSnapshot(ctx context.Context, showID string) (*core.SeatSnapshot, error) {
	c.reads.Add(1)
	return c.BookingStore.SeatSnapshot(ctx, showID)
}

// seatLogDocs counts the show's seat log documents (a scan: tests only).
func seatLogDocs(t *testing.T, r *rig) int64 {
	t.Helper()
	n, err := r.db.Collection(mongostore.SeatLogCollection).CountDocuments(context.Background(), bson.M{"showId": r.show.ID})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// seatTruth is the show's seats by the unique seat keys and the outcomes: a hold of an undecided
// booking is held, one of a paid booking sold.
func seatTruth(t *testing.T, r *rig) (held, sold []string) {
	t.Helper()
	ctx := context.Background()
	holds, err := r.store.ShowHolds(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range holds {
		o, err := r.store.Outcome(ctx, h.BookingID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case o == nil:
			held = append(held, h.Seat)
		case o.Status == core.BookingPaid:
			sold = append(sold, h.Seat)
		}
	}
	slices.Sort(held)
	slices.Sort(sold)
	return held, sold
}

// TestSeatLogCompaction: two engines on one database book, cancel and pay on one show for about
// a thousand seat log entries; the compaction marks what the snapshot covers, and once the
// retention has passed (by the database's clock) the other engine deletes it, which the first
// then does not repeat. The show's log shrinks to a bound, and every view agrees with the unique
// seat keys: the two engines' (which go on booking after the compaction), a view tailing across
// it (without reloading), one left unread since the middle of the history (whose next entry is
// gone: it reloads instead of tailing into the hole), and a view loaded afresh.
func TestSeatLogCompaction(t *testing.T) {
	t.Parallel()
	const retention = time.Second
	r := newRig(t, newShow(500, 25))
	ctx := context.Background()
	events := &countingEvents{}
	engine := func(store booking.BookingStore) *booking.Bookings {
		return booking.NewBookings(store, shows{r.show}, booking.BookingsOptions{HoldTTL: time.Hour, Now: r.clock.Now,
			SeatLogRetention: retention, Events: events})
	}
	replica := func() booking.BookingStore { return newStore(devdb.TestDBNamed(t, r.db.Name())) }
	a, b := engine(r.store), engine(replica())
	staleStore, tailStore := &snapCounter{BookingStore: replica()}, &snapCounter{BookingStore: replica()}
	stale, tailing := engine(staleStore), engine(tailStore)

	// Four workers, two per engine, each with ten customers and its own block of seats: every
	// booking is cancelled, but one in ten stays open and one in twenty-five is paid. (Each seat
	// is booked through one engine only: the log, written after the fact by each process, can
	// have a hold and its release land after another process's later hold of the same seat,
	// and then no view can tell.) Beside them, to make history faster, both engines log holds
	// and releases of the last seat, which nobody books, for bookings that do not exist.
	labels := booking.NewSeatLayout(r.show.NoOfSeats, r.show.SeatsPerRow).Labels()
	filler := labels[len(labels)-1]
	labels = labels[:len(labels)-1]
	const workers = 4
	free := make([][]string, workers)
	users := make([][]*core.User, workers)
	for w := range workers {
		free[w] = slices.Clone(labels[w*len(labels)/workers : (w+1)*len(labels)/workers])
		for i := range 10 {
			users[w] = append(users[w], customer(100*w+i))
		}
	}
	done := make([]int, workers) // cycles run by each worker
	run := func(cycles, fillers int) {
		t.Helper()
		var wg sync.WaitGroup
		for w := range workers {
			eng := []*booking.Bookings{a, b}[w%2]
			wg.Go(func() {
				for range cycles {
					i := done[w]
					done[w]++
					u := users[w][(i/10)%10]
					n := 1 + i%2
					seats := slices.Clone(free[w][:n])
					bk, err := eng.Book(ctx, u, r.req(0, seats...))
					if err != nil {
						t.Errorf("book: %v", err)
						return
					}
					switch {
					case i%25 == 0:
						_, _, err = eng.Pay(ctx, u, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, "")
						free[w] = free[w][n:]
					case i%10 == 3:
						free[w] = free[w][n:]
					default:
						_, err = eng.Cancel(ctx, u, bk.ID)
					}
					if err != nil {
						t.Errorf("settle: %v", err)
						return
					}
				}
			})
		}
		wg.Go(func() {
			for i := range fillers {
				op := core.SeatOp{Kind: core.SeatOpHeld, BookingID: fmt.Sprint("filler", i/2), Seats: []string{filler},
					ExpiresAt: r.clock.Now().Add(time.Hour)}
				if i%2 == 1 {
					op.Kind = core.SeatOpFreed
				}
				if !<-[]*booking.Bookings{a, b}[i/2%2].LogOp(r.show.ID, op) {
					t.Errorf("filler %d not logged", i)
					return
				}
			}
		})
		wg.Wait()
		for _, e := range []*booking.Bookings{a, b} {
			e.Settled()
			e.SeatLogWritten(r.show.ID)
			e.Settled() // snapshots begun by the last writes
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// runTo runs until the show's log has at least n entries, and returns its head.
	runTo := func(n int64) int64 {
		t.Helper()
		for {
			_, _, head, err := a.SeatLogView(ctx, r.show.ID)
			if err != nil {
				t.Fatal(err)
			}
			if head >= n {
				return head
			}
			run(15, 60)
		}
	}
	agree := func(name string, e *booking.Bookings) {
		t.Helper()
		wantHeld, wantSold := seatTruth(t, r)
		held, sold, _, err := e.SeatLogView(ctx, r.show.ID)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(held, wantHeld) || !slices.Equal(sold, wantSold) {
			for _, x := range wantHeld {
				if !slices.Contains(held, x) {
					hs, _ := r.store.ShowHolds(ctx, r.show.ID)
					for _, h := range hs {
						if h.Seat == x {
							t.Logf("missing %s held by %s", x, h.BookingID)
						}
					}
					for q := int64(1); ; q++ {
						en, _ := r.store.SeatLog(ctx, r.show.ID, q)
						if en == nil {
							break
						}
						for _, op := range en.Ops {
							if slices.Contains(op.Seats, x) {
								t.Logf("  entry %d: %s %s %v", q, op.Kind, op.BookingID, op.Seats)
							}
						}
					}
				}
			}
			t.Fatalf("%s view: %d held, %d sold; the seat keys say %d held, %d sold", name, len(held), len(sold), len(wantHeld), len(wantSold))
		}
		m, err := e.SeatMap(ctx, r.show.ID)
		if err != nil || !slices.Equal(slices.Sorted(slices.Values(m.Held)), wantHeld) || !slices.Equal(slices.Sorted(slices.Values(m.Sold)), wantSold) {
			t.Fatalf("%s seat map disagrees with the seat keys (%v)", name, err)
		}
	}
	// compact marks with one engine and, once the retention has passed, sweeps with the other.
	compact := func() core.SeatLogCompaction {
		t.Helper()
		if n, err := a.CompactSeatLogs(ctx); err != nil || n != 0 {
			t.Fatalf("marking deleted %d (%v)", n, err)
		}
		rec, err := r.store.SeatLogCompaction(ctx, r.show.ID)
		if err != nil || rec.Mark <= rec.Done {
			t.Fatalf("nothing marked: %+v %v", rec, err)
		}
		time.Sleep(retention + 100*time.Millisecond) // the database's clock
		r.clock.Advance(retention)                   // the engines' clocks, as they would run
		return rec
	}
	sweep := func(rec core.SeatLogCompaction) int {
		t.Helper()
		n, err := b.CompactSeatLogs(ctx)
		if err != nil || int64(n) != rec.Mark-rec.Done {
			t.Fatalf("the sweep deleted %d (%v); want %d", n, err, rec.Mark-rec.Done)
		}
		if n, err := a.CompactSeatLogs(ctx); err != nil || n != 0 {
			t.Fatalf("the first engine deleted %d more (%v): the work was repeated", n, err)
		}
		if got, err := r.store.SeatLogCompaction(ctx, r.show.ID); err != nil || got.Done != rec.Mark {
			t.Fatalf("compaction record %+v %v; want done at %d", got, err, rec.Mark)
		}
		return n
	}

	runTo(200)
	for _, e := range []*booking.Bookings{stale, tailing} {
		if _, _, _, err := e.SeatLogView(ctx, r.show.ID); err != nil {
			t.Fatal(err)
		}
	}
	staleHead := stale.SeatLogHead(r.show.ID)
	runTo(600)
	agree("tailing", tailing)
	if events.dropped.Load() != 0 {
		t.Fatalf("%d seat log operations dropped", events.dropped.Load())
	}
	_, _, head, err := a.SeatLogView(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bookings, %d seat log entries", slices.Max(done)*workers, head)
	before := seatLogDocs(t, r)
	rec := compact()
	// The tailing view reads after the retention has passed (as it would every second: here the
	// engines' clock jumped, so it reloads), then tails across the sweep and what follows
	// without loading again.
	agree("tailing", tailing)
	tailLoads := tailStore.reads.Load()
	deleted := sweep(rec)
	after := seatLogDocs(t, r)
	t.Logf("seat_log documents of the show after %d entries: %d before the compaction, %d after (%d deleted up to %d)",
		head, before, after, deleted, rec.Mark)
	if after != before-int64(deleted) || after > head-rec.Mark || after > 2*256+64 {
		t.Fatalf("%d seat log documents left of %d (head %d, mark %d)", after, before, head, rec.Mark)
	}
	// The view read in the middle is behind the mark: the entry after its head is gone, so a
	// tail would stop in the hole. It reloads.
	if staleHead >= rec.Mark {
		t.Fatalf("the stale view's head %d is not behind the mark %d", staleHead, rec.Mark)
	}
	if e, err := r.store.SeatLog(ctx, r.show.ID, staleHead+1); err != nil || e != nil {
		t.Fatalf("entry %d after the stale view's head: %v %v; want it deleted", staleHead+1, e, err)
	}
	staleLoads := staleStore.reads.Load()

	run(15, 0) // both engines' views are past their trust: they reload before they write
	agree("first engine", a)
	agree("second engine", b)
	agree("tailing", tailing)
	if n := tailStore.reads.Load(); n != tailLoads {
		t.Fatalf("the tailing view loaded %d times more; want it to tail", n-tailLoads)
	}
	agree("stale", stale)
	if n := staleStore.reads.Load(); n == staleLoads {
		t.Fatal("the stale view did not reload")
	}
	agree("new", engine(replica()))

	// A second round keeps the log bounded.
	head = runTo(1100)
	before = seatLogDocs(t, r)
	rec = compact()
	deleted = sweep(rec)
	after = seatLogDocs(t, r)
	t.Logf("second round: after %d entries, %d documents before, %d after", head, before, after)
	if after != before-int64(deleted) || after > 2*256+64 {
		t.Fatalf("%d seat log documents left of %d (head %d, mark %d)", after, before, head, rec.Mark)
	}
	agree("new after the second round", engine(replica()))
	agree("stale after the second round", stale)
	if events.dropped.Load() != 0 {
		t.Fatalf("%d seat log operations dropped", events.dropped.Load())
	}
}
