package booking

import (
	"context"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// expire decides the booking EXPIRED unless it was decided first, and settles its holds on
// the show's seats by the outcome in force: released unless paid.
func (b *Bookings) expire(ctx context.Context, showID, bookingID string, seats []string) (core.Outcome, error) {
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bookingID, Status: core.BookingExpired, DecidedAt: b.clock()})
	if err != nil {
		return o, err
	}
	if won {
		b.events.Booking("expired")
	}
	b.settleSeats(ctx, showID, bookingID, seats, o)
	return o, nil
}

// settleSeats applies a decided outcome to the booking's seats: releases them or marks them
// sold, and projects the status onto the booking. It returns whether the seats are settled
// and a channel that yields, once the seat log has the operation, whether it has it. Failures
// are left for the next one who meets the booking (the expirer at the latest, from the
// booking's intents): the outcome record already decides, so nothing here can change a fate.
func (b *Bookings) settleSeats(ctx context.Context, showID, bookingID string, seats []string, o core.Outcome) (bool, <-chan bool) {
	ctx = context.WithoutCancel(ctx)
	ok := true
	var logged <-chan bool
	switch o.Status {
	case core.BookingPaid:
		logged = b.logOp(showID, core.SeatOp{Kind: core.SeatOpSold, BookingID: bookingID, Seats: seats})
		holds := make([]core.Hold, len(seats))
		for i, s := range seats {
			holds[i] = core.Hold{ShowID: showID, Seat: s, BookingID: bookingID}
		}
		b.projectSold(ctx, holds)
	case core.BookingCancelled, core.BookingExpired:
		ok, logged = b.releaseSeats(ctx, showID, bookingID, seats)
	}
	b.projectBooking(ctx, bookingID, o.Status)
	if logged == nil {
		logged = loggedAlready()
	}
	return ok, logged
}

// loggedAlready returns the logged channel of a settlement with nothing to log (one of its
// own: each yields true once).
func loggedAlready() <-chan bool {
	c := make(chan bool, 1)
	c <- true
	close(c)
	return c
}

// releaseSeats deletes a decided (unpaid) booking's holds on seats and logs them freed; see
// settleSeats for what it returns.
func (b *Bookings) releaseSeats(ctx context.Context, showID, bookingID string, seats []string) (bool, <-chan bool) {
	if len(seats) == 0 {
		return true, loggedAlready()
	}
	if err := b.store.ReleaseHolds(ctx, showID, bookingID, seats); err != nil {
		return false, loggedAlready()
	}
	return true, b.logOp(showID, core.SeatOp{Kind: core.SeatOpFreed, BookingID: bookingID, Seats: seats})
}

// settleBooking applies a decided outcome to a booking: its seats (settleSeats), its fair-use
// slots (released: a decided booking holds no unpaid seat), and, once both are settled and the
// seat log has the outcome, its intents, which the expirer no longer needs.
func (b *Bookings) settleBooking(ctx context.Context, bk *core.Booking, o core.Outcome) {
	ctx = context.WithoutCancel(ctx)
	b.forgetBooking(bk.ID)
	ok, logged := b.settleSeats(ctx, bk.ShowID, bk.ID, bk.Seats, o)
	if !ok {
		return // the intents stay: the expirer settles what is left
	}
	// The slots and intents are the engine's own bookkeeping: released in the background (a
	// booking of the same customer that meets a slot not yet released tries another).
	b.slots.seen(bk.UserID, bk.Slots, false, b.now())
	released := func() {}
	if len(bk.Slots) > 0 {
		released = b.slots.releaseStarted(bk.UserID)
	}
	b.bg.Go(func() {
		if len(bk.Slots) > 0 {
			err := b.store.ReleaseSlots(ctx, bk.UserID, bk.ID, bk.Slots)
			released()
			if err != nil {
				return
			}
		}
		if <-logged && bk.Rounds > 0 {
			_ = b.store.DeleteIntents(ctx, bk.ExpiresAt, intentIDs(bk.ID, bk.Rounds))
		}
	})
}

// resolve brings a stored booking up to date with its outcome; an undecided booking past its
// hold is decided EXPIRED here (whoever meets it first decides).
func (b *Bookings) resolve(ctx context.Context, bk *core.Booking, o *core.Outcome) error {
	if bk.Status.Final() && (bk.Status != core.BookingPaid || bk.PaymentID != "") {
		return nil
	}
	if o == nil {
		var err error
		if o, err = b.outcome(ctx, bk.ID); err != nil {
			return err
		}
	}
	if o == nil && b.now().After(bk.ExpiresAt) {
		exp, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingExpired, DecidedAt: b.clock()})
		if err != nil {
			return err
		}
		if won {
			b.events.Booking("expired")
		}
		b.settleBooking(ctx, bk, exp)
		o = &exp
	} else if o != nil && !bk.Status.Final() {
		b.projectBooking(ctx, bk.ID, o.Status)
	}
	if o != nil {
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	return nil
}

// Cancel cancels an unpaid booking and releases its seats at once. Cancelling a cancelled
// booking again answers it unchanged; a paid one is errs.Conflict, an expired one errs.Gone.
func (b *Bookings) Cancel(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := b.resolve(ctx, bk, nil); err != nil {
		return nil, err
	}
	if !bk.Status.Final() {
		o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()})
		if err != nil {
			return nil, err
		}
		if won {
			b.events.Booking("cancelled")
		}
		b.settleBooking(ctx, bk, o)
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	switch bk.Status {
	case core.BookingPaid:
		return nil, errs.E(errs.Conflict, "the booking is paid and cannot be cancelled").Because(core.ReasonAlreadyPaid)
	case core.BookingExpired:
		return nil, errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale").Because(core.ReasonHoldExpired)
	}
	return bk, nil
}
