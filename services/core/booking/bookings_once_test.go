package booking_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// writeCounter counts, at the store, the intents written and the outcome inserts attempted.
type writeCounter struct {
	booking.BookingStore
	intents, decides atomic.Int64
}

func (c *writeCounter) AddIntent(ctx context.Context, in core.Intent) error {
	c.intents.Add(1)
	return c.BookingStore.AddIntent(ctx, in)
}

func (c *writeCounter) Decide(ctx context.Context, o core.Outcome) (core.Outcome, bool, error) {
	c.decides.Add(1)
	return c.BookingStore.Decide(ctx, o)
}

// expireAll runs the expirer's steps until one has nothing to do.
func expireAll(t *testing.T, eng *booking.Bookings) {
	t.Helper()
	for range 100 {
		n, err := eng.ExpireDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			eng.Settled()
			return
		}
	}
	t.Fatal("the expirer never ran out of work")
}

// TestOneIntentOneOutcomePerBooking: without contention, a booking writes one intent and its
// expiry one outcome insert. Each customer books up to the open-seat bound one seat at a time,
// so every booking but the first finds some of the customer's slots held by their own earlier
// bookings: the process knows which, and picks a free one first time.
func TestOneIntentOneOutcomePerBooking(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(100, 10))
	wc := &writeCounter{BookingStore: r.store}
	eng := r.engine(wc)
	ctx := context.Background()
	const customers, each = 4, booking.DefaultMaxOpenSeatsPerUser
	var ids []string
	for c := range customers {
		u := customer(c)
		for range each {
			bk, err := eng.Book(ctx, u, r.req(1))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, bk.ID)
		}
	}
	intents := wc.intents.Load()
	r.clock.Advance(2 * time.Minute)
	expireAll(t, eng)
	decides := wc.decides.Load()
	n := float64(len(ids))
	t.Logf("%d bookings: %.2f intents and %.2f outcome inserts per booking", len(ids), float64(intents)/n, float64(decides)/n)
	for _, id := range ids {
		if o, err := r.store.Outcome(ctx, id); err != nil || o == nil || o.Status != core.BookingExpired {
			t.Fatalf("booking %s: outcome %+v %v", id, o, err)
		}
	}
	if intents != int64(len(ids)) || decides != int64(len(ids)) {
		t.Fatalf("%d intents and %d outcome inserts for %d bookings; want one each", intents, decides, len(ids))
	}
	if held := r.checkSeats(t); held != 0 {
		t.Fatalf("%d seats held after the expiry", held)
	}
	// Every customer has the room back.
	for c := range customers {
		if _, err := eng.Book(ctx, customer(100+c), r.req(10)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExpirerDecidesOncePerBooking: bookings that wrote several intents (rounds lost to
// contention) are decided by one outcome insert each, also when a booking's intents sit in two
// buckets of the expiry queue (written by replicas with different bucket widths); everything
// every intent names is released.
func TestExpirerDecidesOncePerBooking(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(40, 10))
	ctx := context.Background()
	exp := r.clock.Now().Add(time.Minute)
	const bookings, rounds = 6, 3
	users := map[string]*core.User{}
	for b := range bookings {
		id := bson.NewObjectID().Hex()
		u := customer(b)
		users[id] = u
		for round := range rounds {
			at := exp
			if b == 0 && round == rounds-1 {
				at = exp.Add(-30 * time.Second) // in an earlier bucket
			}
			seat := fmt.Sprintf("%c%d", 'A'+b, round+1)
			if err := r.store.AddIntent(ctx, core.Intent{ID: core.IntentID(id, round), BookingID: id, ShowID: r.show.ID,
				UserID: u.ID, Seats: []string{seat}, Slots: []int{round}, ExpiresAt: at}); err != nil {
				t.Fatal(err)
			}
			if won, err := r.store.InsertHolds(ctx, []core.Hold{{ShowID: r.show.ID, Seat: seat, BookingID: id, ExpiresAt: exp}}); err != nil || len(won) != 1 {
				t.Fatalf("hold: %v %v", won, err)
			}
			if won, err := r.store.ClaimSlots(ctx, u.ID, id, []int{round}); err != nil || len(won) != 1 {
				t.Fatalf("slot: %v %v", won, err)
			}
		}
	}
	wc := &writeCounter{BookingStore: r.store}
	eng := r.engine(wc)
	r.clock.Advance(2 * time.Minute)
	expireAll(t, eng)
	if d := wc.decides.Load(); d != bookings {
		t.Fatalf("%d outcome inserts for %d bookings of %d intents each; want one per booking", d, bookings, rounds)
	}
	for id, u := range users {
		if o, err := r.store.Outcome(ctx, id); err != nil || o == nil || o.Status != core.BookingExpired {
			t.Fatalf("booking %s: outcome %+v %v", id, o, err)
		}
		if got := openSeats(t, r, u); got != 0 {
			t.Fatalf("customer of %s still has %d slots taken", id, got)
		}
	}
	if held := r.checkSeats(t); held != 0 {
		t.Fatalf("%d seats held after the expiry", held)
	}
	if b, err := r.store.IntentBuckets(ctx); err != nil || len(b) != 0 {
		t.Fatalf("buckets left: %+v %v", b, err)
	}
}
