package booking_test

import (
	"context"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core/booking"
)

// TestExpiryLedByOneReplica: an engine that does not lead the expiry takes no expirer step (its
// bookings still take an expired hold's seats); the leader releases.
func TestExpiryLedByOneReplica(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(1, 10))
	ctx := context.Background()
	follower := booking.NewBookings(r.store, shows{r.show}, booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now,
		Leads: func() bool { return false }})
	if _, err := r.eng.Book(ctx, customer(1), r.req(1)); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(2 * time.Minute)
	if n, err := follower.ExpireDue(ctx); err != nil || n != 0 || follower.ExpiryProgress().Steps != 0 {
		t.Fatalf("the follower's step: %d %v, progress %+v", n, err, follower.ExpiryProgress())
	}
	if _, err := follower.Book(ctx, customer(2), r.req(1)); err != nil {
		t.Fatalf("the follower's booking of the expired seat: %v", err)
	}
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 1 {
		t.Fatalf("the leader's step: %d %v", n, err)
	}
}

// TestTakeoverMargin: with a takeover margin, a hold past its end by less than the margin is
// neither taken by another booking nor released by the expirer, and shows as held; its owner
// is held to the end itself (a payment after it is 410). Past the margin, the seat is free.
func TestTakeoverMargin(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(1, 10))
	ctx := context.Background()
	eng := booking.NewBookings(r.store, shows{r.show}, booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now,
		TakeoverMargin: 5 * time.Second})
	owner := customer(1)
	bk, err := eng.Book(ctx, owner, r.req(1))
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Minute + 3*time.Second) // past the end, within the margin
	if _, err := eng.Book(ctx, customer(2), r.req(1)); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a booking within the margin: %v, want a conflict", err)
	}
	if n, err := eng.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("the expirer within the margin: %d %v", n, err)
	}
	if m, err := eng.SeatMap(ctx, r.show.ID); err != nil || len(m.Held) != 1 {
		t.Fatalf("seat map within the margin: %+v %v", m, err)
	}
	if _, _, err := eng.Pay(ctx, owner, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); !errs.Is(err, errs.Gone) {
		t.Fatalf("the owner paying after the end: %v, want gone", err)
	}
	// The payment decided it EXPIRED: its seat is free at once.
	if _, err := eng.Book(ctx, customer(3), r.req(1)); err != nil {
		t.Fatalf("a booking once the hold is decided: %v", err)
	}

	// Another hold, left alone: free once the margin has passed.
	r2 := newRig(t, newShow(1, 10))
	eng2 := booking.NewBookings(r2.store, shows{r2.show}, booking.BookingsOptions{HoldTTL: time.Minute, Now: r2.clock.Now,
		TakeoverMargin: 5 * time.Second})
	if _, err := eng2.Book(ctx, customer(4), r2.req(1)); err != nil {
		t.Fatal(err)
	}
	r2.clock.Advance(time.Minute + 6*time.Second)
	if _, err := eng2.Book(ctx, customer(5), r2.req(1)); err != nil {
		t.Fatalf("a booking past the margin: %v", err)
	}
}

// TestExpiryProgressAfterAClear: a step that clears a bucket (and drops it) does not count it
// as left to release.
func TestExpiryProgressAfterAClear(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 10))
	ctx := context.Background()
	for i := range 2 { // two buckets of the expiry queue
		if _, err := r.eng.Book(ctx, customer(i), r.req(1)); err != nil {
			t.Fatal(err)
		}
		r.clock.Advance(2 * time.Second)
	}
	r.clock.Advance(2 * time.Minute)
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 2 {
		t.Fatalf("release: %d %v", n, err)
	}
	if p := r.eng.ExpiryProgress(); p.Release != 0 || p.Clear != 2 {
		t.Fatalf("after the release: %+v", p)
	}
	if _, err := r.eng.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if p := r.eng.ExpiryProgress(); p.Release != 0 || p.Clear != 1 {
		t.Fatalf("after clearing one bucket: %+v, want nothing to release and one to clear", p)
	}
}
