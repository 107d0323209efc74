package booking_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// TestOrphanHoldsReleasedByExpirer: a process wrote a booking's intent, won its seats and a
// fair-use slot, and died before writing the booking (or the seat log). Nobody books that show
// again; the background expirer alone returns the seats and the slot once the hold has ended.
func TestOrphanHoldsReleasedByExpirer(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(4, 4))
	ctx := context.Background()
	u := customer(1)
	id := r.store.NewID()
	exp := r.clock.Now().Add(time.Minute)
	if err := r.store.AddIntent(ctx, core.Intent{ID: core.IntentID(id, 0), BookingID: id, ShowID: r.show.ID, UserID: u.ID,
		Seats: []string{"A1", "A2"}, Slots: []int{0, 1}, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if won, err := r.store.InsertHolds(ctx, []core.Hold{{ShowID: r.show.ID, Seat: "A1", BookingID: id, ExpiresAt: exp},
		{ShowID: r.show.ID, Seat: "A2", BookingID: id, ExpiresAt: exp}}); err != nil || len(won) != 2 {
		t.Fatalf("holds: %v %v", won, err)
	}
	if won, err := r.store.ClaimSlots(ctx, u.ID, id, []int{0, 1}); err != nil || len(won) != 2 {
		t.Fatalf("slots: %v %v", won, err)
	}
	// Before the hold ends the expirer leaves them.
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("expire before the end: %d, %v", n, err)
	}
	r.clock.Advance(time.Minute + time.Second)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.eng.Run(runCtx, 10*time.Millisecond, func(err error) { t.Errorf("run: %v", err) })
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, err := r.store.IntentBuckets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 && r.checkSeats(t) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan was never settled: buckets %+v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	if o, _ := r.store.Outcome(ctx, id); o == nil || o.Status != core.BookingExpired {
		t.Fatalf("orphan outcome %+v; want EXPIRED", o)
	}
	// The customer's slots are back: ten seats may be held again.
	for i := range 2 {
		if _, err := r.eng.Book(ctx, u, r.req(1)); err != nil {
			t.Fatalf("booking %d after the orphan: %v", i, err)
		}
	}
	m, err := r.eng.SeatMap(ctx, r.show.ID)
	if err != nil || len(m.Held) != 2 || len(m.Free) != 2 {
		t.Fatalf("seat map %+v, %v", m, err)
	}
}

// openSeats counts the customer's occupied fair-use slots (by claiming the free ones for a
// probe and giving them back).
func openSeats(t *testing.T, r *rig, u *core.User) int {
	t.Helper()
	won, err := r.store.ClaimSlots(context.Background(), u.ID, "probe", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.ReleaseSlots(context.Background(), u.ID, "probe", won); err != nil {
		t.Fatal(err)
	}
	return 10 - len(won)
}

// TestFairUseOpenSeats: a customer holds at most MaxOpenSeatsPerUser seats in unpaid bookings,
// across shows; paying, cancelling or an expiry gives room again; one booking holds at most
// MaxSeatsPerBooking seats. Beyond either bound: 429.
func TestFairUseOpenSeats(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(40, 10))
	ctx := context.Background()
	u := customer(1)
	if _, err := r.eng.Book(ctx, u, r.req(11)); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("11 seats in one booking: %v; want rate limited", err)
	}
	var bookings []*core.Booking
	for _, n := range []int{4, 3, 2, 1} {
		bk, err := r.eng.Book(ctx, u, r.req(n))
		if err != nil {
			t.Fatalf("book %d: %v", n, err)
		}
		bookings = append(bookings, bk)
	}
	if got := openSeats(t, r, u); got != 10 {
		t.Fatalf("%d open seats counted; want 10", got)
	}
	_, err := r.eng.Book(ctx, u, r.req(1))
	if !errs.Is(err, errs.RateLimited) {
		t.Fatalf("an 11th open seat: %v; want rate limited", err)
	}
	if held := r.checkSeats(t); held != 10 {
		t.Fatalf("%d seats held after the refusal; want 10 (nothing kept)", held)
	}
	// Another customer is not affected.
	if _, err := r.eng.Book(ctx, customer(2), r.req(5)); err != nil {
		t.Fatal(err)
	}
	// Paying the 1-seat booking gives room for one more; cancelling the 2-seat one, for two.
	if _, _, err := r.eng.Pay(ctx, u, booking.PaymentRequest{BookingID: bookings[3].ID, Amount: bookings[3].TotalCost}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Book(ctx, u, r.req(1)); err != nil {
		t.Fatalf("after paying: %v", err)
	}
	if _, err := r.eng.Book(ctx, u, r.req(1)); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("at the bound again: %v", err)
	}
	if _, err := r.eng.Cancel(ctx, u, bookings[2].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Book(ctx, u, r.req(2)); err != nil {
		t.Fatalf("after cancelling: %v", err)
	}
	// Every hold ends: once the expirer has released them (decided, slots not deleted yet),
	// the customer has all ten again, taking over the old slots.
	r.clock.Advance(2 * time.Minute)
	if _, err := r.eng.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	r.eng.Settled()
	if _, err := r.eng.Book(ctx, u, r.req(10)); err != nil {
		t.Fatalf("10 seats after the expiry: %v", err)
	}
	if got := openSeats(t, r, u); got != 10 {
		t.Fatalf("%d open seats counted after booking 10 again", got)
	}
	// The expirer's clear deletes the old bookings' slots, never the new booking's.
	for {
		n, err := r.eng.ExpireDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if got := openSeats(t, r, u); got != 10 {
		t.Fatalf("%d open seats after the clear; want the new booking's 10", got)
	}
	if _, err := r.eng.Book(ctx, u, r.req(1)); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("an 11th open seat after the clear: %v; want rate limited", err)
	}
}

// TestFairUseRace: one customer fires 40 one-seat bookings at once through two replicas: no
// more than ten succeed, whatever the interleaving, and the rest are 429.
func TestFairUseRace(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(100, 10))
	other := r.engine(newStore(devdb.TestDBNamed(t, r.db.Name())))
	ctx := context.Background()
	u := customer(1)
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		eng := r.eng
		if i%2 == 1 {
			eng = other
		}
		wg.Go(func() {
			_, err := eng.Book(ctx, u, r.req(1))
			switch {
			case err == nil:
				ok.Add(1)
			case errs.Is(err, errs.RateLimited):
				limited.Add(1)
			default:
				t.Errorf("book: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || limited.Load() != 30 {
		t.Fatalf("%d booked, %d limited; want 10, 30", ok.Load(), limited.Load())
	}
	if held := r.checkSeats(t); held != 10 {
		t.Fatalf("%d seats held; want 10", held)
	}
}

// TestShowDeletionRace: a deletion of a show (on one replica) races bookings of it (on another):
// the deletion succeeds only if no booking does. Over many rounds both sides win sometimes.
func TestShowDeletionRace(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 10))
	storeB := newStore(devdb.TestDBNamed(t, r.db.Name()))
	ctx := context.Background()
	var deleterWon, bookersWon int
	for round := range 30 {
		show := newShow(10, 10)
		opts := booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now}
		a := booking.NewBookings(r.store, shows{show}, opts)
		b := booking.NewBookings(storeB, shows{show}, opts)
		var wg sync.WaitGroup
		var booked atomic.Int32
		var deleted atomic.Bool
		start := make(chan struct{})
		for i := range 6 {
			wg.Go(func() {
				<-start
				if i == 3 {
					time.Sleep(time.Duration(round%5) * time.Millisecond)
				}
				_, err := b.Book(ctx, customer(i), booking.BookingRequest{TheatreID: show.TheatreID, MovieID: show.MovieID, Timing: show.Timing, NoOfSeats: 1})
				switch {
				case err == nil:
					booked.Add(1)
				case errs.Is(err, errs.Conflict):
				default:
					t.Errorf("book: %v", err)
				}
			})
		}
		wg.Go(func() {
			<-start
			time.Sleep(time.Duration(round%7) * time.Millisecond)
			_, err := a.ReserveShowDeletion(ctx, show.ID)
			switch {
			case err == nil:
				deleted.Store(true)
			case errs.Is(err, errs.Conflict):
			default:
				t.Errorf("delete: %v", err)
			}
		})
		close(start)
		wg.Wait()
		if deleted.Load() && booked.Load() > 0 {
			t.Fatalf("round %d: the show was deleted and %d bookings of it succeeded", round, booked.Load())
		}
		if deleted.Load() {
			deleterWon++
			// Later bookings see the marker.
			if _, err := b.Book(ctx, customer(9), booking.BookingRequest{TheatreID: show.TheatreID, MovieID: show.MovieID, Timing: show.Timing, NoOfSeats: 1}); !errs.Is(err, errs.Conflict) {
				t.Fatalf("booking a deleted show: %v", err)
			}
		}
		if booked.Load() > 0 {
			bookersWon++
		}
	}
	t.Logf("deleter won %d rounds, bookers %d", deleterWon, bookersWon)
	if bookersWon == 0 {
		t.Fatal("the bookers never won: the race was not run")
	}
}

// TestReplicaViewsConverge: what one replica books, cancels and sells, another replica's seat
// map shows within its view's TTL, without a single booking conflict to teach it, and both
// agree with the holds themselves.
func TestReplicaViewsConverge(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(20, 10))
	other := r.engine(newStore(devdb.TestDBNamed(t, r.db.Name())))
	ctx := context.Background()
	var mine []*core.Booking
	users := make([]*core.User, 6)
	for i := range users {
		users[i] = customer(i)
		bk, err := r.eng.Book(ctx, users[i], r.req(2))
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, bk)
	}
	if _, err := r.eng.Cancel(ctx, users[0], mine[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.eng.Pay(ctx, users[1], booking.PaymentRequest{BookingID: mine[1].ID, Amount: mine[1].TotalCost}, ""); err != nil {
		t.Fatal(err)
	}
	r.eng.Settled()
	time.Sleep(1100 * time.Millisecond) // the other view's TTL
	want := map[core.SeatState][]string{}
	for _, bk := range mine[2:] {
		want[core.SeatHeld] = append(want[core.SeatHeld], bk.Seats...)
	}
	want[core.SeatSold] = mine[1].Seats
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := other.SeatMap(ctx, r.show.ID)
		if err != nil {
			t.Fatal(err)
		}
		held, sold := slices.Sorted(slices.Values(m.Held)), slices.Sorted(slices.Values(m.Sold))
		if slices.Equal(held, slices.Sorted(slices.Values(want[core.SeatHeld]))) && slices.Equal(sold, slices.Sorted(slices.Values(want[core.SeatSold]))) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica shows held %v sold %v; want %v", held, sold, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The other replica books the 10 free seats without losing one to a conflict.
	conflicts := &countingEvents{}
	third := booking.NewBookings(newStore(devdb.TestDBNamed(t, r.db.Name())), shows{r.show},
		booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now, Events: conflicts})
	for i := range 10 {
		if _, err := third.Book(ctx, customer(100+i), r.req(1)); err != nil {
			t.Fatalf("booking free seat %d: %v", i, err)
		}
	}
	if n := conflicts.conflicts.Load(); n != 0 {
		t.Fatalf("%d seats lost to conflicts: the new replica's view was wrong", n)
	}
	if held := r.checkSeats(t); held != 20 {
		t.Fatalf("%d held; want 20", held)
	}
}

type countingEvents struct{ conflicts, dropped atomic.Int64 }

func (c *countingEvents) Booking(string)       {}
func (c *countingEvents) SeatConflicts(n int)  { c.conflicts.Add(int64(n)) }
func (c *countingEvents) SeatLogDropped(n int) { c.dropped.Add(int64(n)) }

// countingStore counts the seat log reads of a store.
type countingStore struct {
	booking.BookingStore
	logReads atomic.Int64
}

func (c *countingStore) SeatLog(ctx context.Context, showID string, seq int64) (*core.SeatLogEntry, error) {
	c.logReads.Add(1)
	return c.BookingStore.SeatLog(ctx, showID, seq)
}

// TestSeatViewLoadIsBounded: after a show's log has grown to over a thousand entries, a new
// replica loads the show from its snapshot and reads only the entries since: the cost of
// loading does not grow with the show's history.
func TestSeatViewLoadIsBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(50, 10))
	ctx := context.Background()
	// Hold and free one seat at a time, as bookings and cancellations do: an entry each.
	for i := range 1200 {
		kind := core.SeatOpHeld
		if i%2 == 1 {
			kind = core.SeatOpFreed
		}
		if !<-r.eng.LogOp(r.show.ID, core.SeatOp{Kind: kind, BookingID: fmt.Sprint("b", i/2), Seats: []string{"A1"},
			ExpiresAt: r.clock.Now().Add(time.Minute)}) {
			t.Fatalf("entry %d not written", i)
		}
	}
	cs := &countingStore{BookingStore: newStore(devdb.TestDBNamed(t, r.db.Name()))}
	fresh := booking.NewBookings(cs, shows{r.show}, booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now})
	m, err := fresh.SeatMap(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Free) != 50 {
		t.Fatalf("%d free seats; want 50", len(m.Free))
	}
	if n := cs.logReads.Load(); n > 2*256+10 {
		t.Fatalf("loading read %d log entries of about 1,200: the snapshot did not bound it", n)
	} else {
		t.Logf("loaded a show with about 1,200 log entries in %d reads", n)
	}
}

// TestMigrateLegacyStore: a store written before seat logs and intents (holds and bookings
// only) is migrated at start: its held seats show held, a paid one sold, and the expirer
// releases the unpaid one when its hold ends.
func TestMigrateLegacyStore(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 10))
	ctx := context.Background()
	exp := r.clock.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	legacy := func(seat string) *core.Booking {
		bk := &core.Booking{ID: r.store.NewID(), UserID: customer(1).ID, TheatreID: r.show.TheatreID, MovieID: r.show.MovieID,
			ShowID: r.show.ID, Timing: r.show.Timing, NoOfSeats: 1, Seats: []string{seat}, TotalCost: 250,
			Status: core.BookingInProcess, ExpiresAt: exp, CreatedAt: exp.Add(-time.Minute), UpdatedAt: exp.Add(-time.Minute)}
		if _, err := r.store.InsertHolds(ctx, []core.Hold{{ShowID: r.show.ID, Seat: seat, BookingID: bk.ID, ExpiresAt: exp}}); err != nil {
			t.Fatal(err)
		}
		if err := r.store.CreateBooking(ctx, bk); err != nil {
			t.Fatal(err)
		}
		return bk
	}
	open, paid := legacy("A1"), legacy("A2")
	if _, _, err := r.store.Decide(ctx, core.Outcome{BookingID: paid.ID, Status: core.BookingPaid, PaymentID: r.store.NewID(), DecidedAt: exp}); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.MigrateSeatLogs(ctx); err != nil {
		t.Fatal(err)
	}
	if done, _ := r.store.Migrated(ctx); !done {
		t.Fatal("not recorded as migrated")
	}
	fresh := r.engine(newStore(devdb.TestDBNamed(t, r.db.Name())))
	m, err := fresh.SeatMap(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Held, []string{"A1", "A2"}) && !(slices.Equal(m.Held, []string{"A1"}) && slices.Equal(m.Sold, []string{"A2"})) {
		t.Fatalf("after migration: held %v sold %v", m.Held, m.Sold)
	}
	if _, err := fresh.Book(ctx, customer(2), r.req(0, "A1")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("booking a legacy-held seat: %v", err)
	}
	r.clock.Advance(2 * time.Minute)
	if n, err := fresh.ExpireDue(ctx); err != nil || n != 2 {
		t.Fatalf("expire: %d, %v; want 2 legacy intents met", n, err)
	}
	fresh.Settled()
	if o, _ := r.store.Outcome(ctx, open.ID); o == nil || o.Status != core.BookingExpired {
		t.Fatalf("legacy open booking: %+v", o)
	}
	m, err = fresh.SeatMap(ctx, r.show.ID)
	if err != nil || !slices.Equal(m.Sold, []string{"A2"}) || len(m.Held) != 0 {
		t.Fatalf("after expiry: %+v %v", m, err)
	}
}
