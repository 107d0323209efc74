package booking

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// cents is a money amount in hundredths.
func cents(v float64) int64 { return int64(math.Round(v * 100)) }

// Pay pays the caller's booking. The amount must equal its totalCost (else a FAILED payment
// and errs.PaymentFailed); a booking is paid at most once (errs.Conflict); a booking whose hold
// expired is errs.Gone and its seats return to sale; a booking that no longer holds every one
// of its seats cannot be paid (errs.Conflict). A successful payment owes the customer a
// confirmation email, written to the outbox before the payment is decided.
func (b *Bookings) Pay(ctx context.Context, caller *core.User, req PaymentRequest, traceParent string) (*core.Payment, *core.Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, nil, err
	}
	f := map[string]string{}
	req.BookingID = strings.TrimSpace(req.BookingID)
	if !core.IsID(req.BookingID) {
		f["bookingId"] = "must be a 24-character hex id"
	}
	if math.IsNaN(req.Amount) || math.IsInf(req.Amount, 0) || req.Amount < 0 || req.Amount > 1e9 {
		f["amount"] = "must be a positive amount (0 for a free booking)"
	} else if math.Abs(req.Amount*100-math.Round(req.Amount*100)) > 1e-6 {
		f["amount"] = "must have at most 2 decimals"
	}
	if len(f) > 0 {
		return nil, nil, errs.Fields(f)
	}
	bk, err := b.getBooking(ctx, req.BookingID)
	if err != nil {
		return nil, nil, err
	}
	if bk.UserID != caller.ID {
		return nil, nil, errs.E(errs.Forbidden, "only the booking's owner can pay it")
	}
	// A fate known to this process answers at once; an unknown one is not read here: the
	// outcome insert below decides, and tells a late payment who won.
	o0, known := b.knownOutcome(bk.ID)
	if known {
		if err := b.resolve(ctx, bk, &o0); err != nil {
			return nil, nil, err
		}
	} else if b.now().After(bk.ExpiresAt) {
		if err := b.resolve(ctx, bk, nil); err != nil {
			return nil, nil, err
		}
	}
	if err := paidState(bk.Status); err != nil {
		return nil, nil, err
	}
	now := b.clock()
	p := &core.Payment{ID: b.store.NewID(), BookingID: bk.ID, UserID: caller.ID, Amount: float64(cents(req.Amount)) / 100,
		Status: core.PaymentPending, CreatedAt: now, UpdatedAt: now}
	if cents(req.Amount) != cents(bk.TotalCost) {
		p.Status, p.Reason = core.PaymentFailed, fmt.Sprintf("amount %.2f does not equal the booking's totalCost %.2f", req.Amount, bk.TotalCost)
		if err := b.store.CreatePayment(ctx, p); err != nil {
			return nil, nil, err
		}
		b.events.Booking("payment_failed")
		e := errs.E(errs.PaymentFailed, "payment failed: %s", p.Reason)
		e.Data = p
		return nil, nil, e
	}
	// At once: the payment record, the email (the relay sends it only once the outcome says
	// paid, see PaidGuard, so a crash before the decision loses nothing and sends nothing
	// wrong), and a read of the booking's holds: a booking is paid only while it holds every
	// one of its seats.
	email := b.confirmation(ctx, caller, bk, traceParent)
	outbox := b.outbox
	var (
		wg              sync.WaitGroup
		oweErr, holdErr error
		missing         []string
	)
	if outbox != nil {
		owe := outbox.Enqueue
		if d, ok := outbox.(core.DeferredOutbox); ok {
			owe = d.Owe // the relay's guard would only say "wait" until the outcome below
		}
		wg.Go(func() { oweErr = owe(ctx, email) })
	}
	wg.Go(func() { missing, holdErr = b.store.MissingHolds(ctx, bk.ShowID, bk.ID, bk.Seats) })
	err = b.store.CreatePayment(ctx, p)
	wg.Wait()
	if err == nil && oweErr != nil {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "could not queue the confirmation email")
		err = oweErr
	}
	if err == nil {
		err = holdErr
	}
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		return nil, nil, b.lostSeats(ctx, bk, p, missing)
	}
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingPaid, PaymentID: p.ID, DecidedAt: b.clock()})
	if err != nil {
		return nil, nil, err
	}
	b.settleBooking(ctx, bk, o)
	bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	if !won {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first")
		return nil, nil, paidState(o.Status)
	}
	p.Status, p.UpdatedAt = core.PaymentSuccess, o.DecidedAt
	b.projectPayment(ctx, p.ID, core.PaymentSuccess, "")
	b.events.Booking("paid")
	if d, ok := outbox.(core.DeferredOutbox); ok {
		d.Nudge() // decided: the relay may send it now
	} else if outbox != nil {
		// Enqueueing the same key again keeps one email and wakes the relay.
		_ = outbox.Enqueue(context.WithoutCancel(ctx), email)
	}
	return p, bk, nil
}

// lostSeats answers a payment of a booking that no longer holds every seat (a store that lost
// them, or data written before holds were released only after a decision): the booking is
// decided CANCELLED (unless decided first) and its payment fails.
func (b *Bookings) lostSeats(ctx context.Context, bk *core.Booking, p *core.Payment, missing []string) error {
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()})
	if err != nil {
		return err
	}
	if won {
		b.events.Booking("cancelled")
	}
	b.settleBooking(ctx, bk, o)
	b.projectPayment(ctx, p.ID, core.PaymentFailed, "the booking no longer holds its seats")
	if o.Status != core.BookingCancelled || !won {
		return paidState(o.Status)
	}
	return errs.E(errs.Conflict, "the booking no longer holds seats %s: it is cancelled; book again", strings.Join(missing, ", ")).Because(core.ReasonSeatsLost)
}

func paidState(s core.BookingStatus) error {
	switch s {
	case core.BookingPaid:
		return errs.E(errs.Conflict, "the booking is already paid").Because(core.ReasonAlreadyPaid)
	case core.BookingCancelled:
		return errs.E(errs.Conflict, "the booking is cancelled").Because(core.ReasonCancelled)
	case core.BookingExpired:
		return errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale").Because(core.ReasonHoldExpired)
	}
	return nil
}

func (b *Bookings) confirmation(ctx context.Context, caller *core.User, bk *core.Booking, traceParent string) core.Email {
	movie := b.name(bk.MovieID, func() (string, error) {
		m, err := b.shows.GetMovie(ctx, bk.MovieID)
		if err != nil {
			return "", err
		}
		return m.Name, nil
	})
	place := b.name(bk.TheatreID, func() (string, error) {
		t, err := b.shows.GetTheatre(ctx, bk.TheatreID)
		if err != nil {
			return "", err
		}
		if t.City != "" {
			return t.Name + ", " + t.City, nil
		}
		return t.Name, nil
	})
	content := fmt.Sprintf("Hello %s,\n\nyour booking is confirmed.\n\nMovie: %s\nTheatre: %s\nTiming: %s\nSeats: %s\nTotal paid: %.2f\nBooking id: %s\n\nEnjoy the show!\nCineFlow\n",
		caller.Name, movie, place, bk.Timing, strings.Join(bk.Seats, ", "), bk.TotalCost, bk.ID)
	return core.Email{Key: PaidEmailKind + ":" + bk.ID, Recipients: []string{caller.Email},
		Subject: "Your tickets for " + movie, Content: content, Kind: PaidEmailKind, Ref: bk.ID, TraceParent: traceParent}
}

// PaidGuard tells the outbox relay whether a booking's confirmation may be sent: only once
// the booking's outcome is paid. An undecided booking waits; one that is past its hold (and
// the takeover margin) is decided EXPIRED here and its email dropped.
func (b *Bookings) PaidGuard(ctx context.Context, bookingID string) (core.GuardVerdict, error) {
	o, err := b.outcome(ctx, bookingID)
	if err != nil {
		return core.GuardWait, err
	}
	if o == nil {
		bk, err := b.getBooking(ctx, bookingID)
		if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
			return core.GuardDrop, nil
		}
		if err != nil {
			return core.GuardWait, err
		}
		if !b.takeoverNow().After(bk.ExpiresAt) {
			return core.GuardWait, nil // a payment may be on its way to its outcome insert
		}
		if err := b.resolve(ctx, bk, nil); err != nil {
			return core.GuardWait, err
		}
		if !bk.Status.Final() {
			return core.GuardWait, nil
		}
		o = &core.Outcome{Status: bk.Status}
	}
	if o.Status == core.BookingPaid {
		return core.GuardSend, nil
	}
	return core.GuardDrop, nil
}
