package booking

import (
	"context"
	"strings"
	"sync"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// A free screening (a show whose price is 0) is confirmed when booked, as a box office confirms
// a free order without a payment (pretix does the same). Book writes the booking as for any
// show, holding its seats, then confirmFree decides it the way Pay decides a paid one: a
// payment record of 0, the confirmation email owed through the outbox (sent once the outcome
// says paid: see PaidGuard), then the PAID outcome insert. The booking is answered
// SUCCESSFULL, its seats sold. Fair use still applies: MaxSeatsPerBooking bounds each booking
// (the bound on seats held unpaid does not add up, since a free booking is paid at once).

// confirmFree decides the booking bk, just written for caller, PAID with a payment of 0. If
// that fails, the booking is decided CANCELLED (its seats return to sale) and the error
// answered; if even that decision cannot be made, it stays held until its hold ends and the
// expirer decides it EXPIRED, as any booking whose decision failed.
func (b *Bookings) confirmFree(ctx context.Context, caller *core.User, bk *core.Booking) (*core.Booking, error) {
	now := b.clock()
	p := &core.Payment{ID: b.store.NewID(), BookingID: bk.ID, UserID: caller.ID, Amount: 0, Status: core.PaymentPending,
		CreatedAt: now, UpdatedAt: now}
	traceParent := ""
	if b.traceParent != nil {
		traceParent = b.traceParent(ctx)
	}
	email := b.confirmation(ctx, caller, bk, traceParent)
	outbox := b.outbox
	var (
		wg     sync.WaitGroup
		oweErr error
	)
	if outbox != nil {
		owe := outbox.Enqueue
		if d, ok := outbox.(core.DeferredOutbox); ok {
			owe = d.Owe // the relay's guard would only say "wait" until the outcome below
		}
		wg.Go(func() { oweErr = owe(ctx, email) })
	}
	err := b.store.CreatePayment(ctx, p)
	wg.Wait()
	if err == nil && oweErr != nil {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "could not queue the confirmation email")
		err = oweErr
	}
	if err != nil {
		return b.failedCreate(context.WithoutCancel(ctx), bk, err)
	}
	var cause error
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingPaid, PaymentID: p.ID, DecidedAt: b.clock()})
	if err != nil {
		// The insert may have landed all the same: a CANCELLED insert tells which fate is in force.
		cause = err
		if o, _, err = b.decide(context.WithoutCancel(ctx), core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()}); err != nil {
			return nil, cause
		}
		won = o.Status == core.BookingPaid && o.PaymentID == p.ID
	}
	b.settleBooking(ctx, bk, o)
	bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	if !won {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first")
		switch {
		case o.Status == core.BookingPaid:
			return bk, nil
		case cause != nil:
			return nil, cause
		case o.Status == core.BookingExpired:
			return nil, errs.E(errs.Gone, "the booking's hold ended before it could be confirmed; book again").Because(core.ReasonHoldExpired)
		}
		return nil, errs.E(errs.Conflict, "the booking was cancelled before it could be confirmed; book again").Because(core.ReasonCancelled)
	}
	b.projectPayment(ctx, p.ID, core.PaymentSuccess, "")
	b.events.Booking("paid")
	if d, ok := outbox.(core.DeferredOutbox); ok {
		d.Nudge() // decided: the relay may send it now
	} else if outbox != nil {
		_ = outbox.Enqueue(context.WithoutCancel(ctx), email) // the same key: wakes the relay
	}
	return bk, nil
}
