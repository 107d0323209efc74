package booking

import (
	"context"
	"strings"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// owned loads a booking the caller may see: its owner's, or any for an approved admin.
func (b *Bookings) owned(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !core.IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	bk, err := b.getBooking(ctx, id)
	if err != nil {
		return nil, err
	}
	if bk.UserID != caller.ID && !caller.Is(core.RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this booking is not yours")
	}
	return bk, nil
}

// Get returns a booking of the caller's (any, for an admin), with its status up to date.
func (b *Bookings) Get(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return bk, b.resolve(ctx, bk, nil)
}

// List returns a page of the caller's bookings, or of everyone's when all is set (admins
// only), newest first, and the cursor of the next page ("" when there is none).
func (b *Bookings) List(ctx context.Context, caller *core.User, all bool, pg core.ListPage) ([]core.Booking, string, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, "", err
	}
	f := core.BookingFilter{UserID: caller.ID, Limit: pg.Limit, Skip: pg.Skip, Before: pg.Before}
	if all {
		if !caller.Is(core.RoleAdmin) {
			return nil, "", errs.E(errs.Forbidden, "only an approved admin can list every booking")
		}
		f.UserID = ""
	}
	list, next, err := b.store.PageBookings(ctx, f)
	if err != nil {
		return nil, "", err
	}
	var open []string
	for _, bk := range list {
		if !bk.Status.Final() || bk.Status == core.BookingPaid && bk.PaymentID == "" {
			open = append(open, bk.ID)
		}
	}
	if len(open) == 0 {
		return list, next, nil
	}
	outcomes, err := b.outcomesOf(ctx, open)
	if err != nil {
		return nil, "", err
	}
	for i := range list {
		var o *core.Outcome
		if v, ok := outcomes[list[i].ID]; ok {
			o = &v
		}
		if err := b.resolve(ctx, &list[i], o); err != nil {
			return nil, "", err
		}
	}
	return list, next, nil
}

// GetPayment returns a payment of the caller's (any, for an admin), its status resolved from
// its booking's outcome.
func (b *Bookings) GetPayment(ctx context.Context, caller *core.User, id string) (*core.Payment, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !core.IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	p, err := b.store.GetPayment(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.UserID != caller.ID && !caller.Is(core.RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this payment is not yours")
	}
	return p, b.resolvePayment(ctx, p)
}

// ListPayments returns a page of the caller's payments (everyone's for an admin who asks for
// all), newest first, and the cursor of the next page, as List.
func (b *Bookings) ListPayments(ctx context.Context, caller *core.User, all bool, pg core.ListPage) ([]core.Payment, string, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, "", err
	}
	f := core.PaymentFilter{UserID: caller.ID, Limit: pg.Limit, Skip: pg.Skip, Before: pg.Before}
	if all {
		if !caller.Is(core.RoleAdmin) {
			return nil, "", errs.E(errs.Forbidden, "only an approved admin can list every payment")
		}
		f.UserID = ""
	}
	list, next, err := b.store.PagePayments(ctx, f)
	if err != nil {
		return nil, "", err
	}
	// The pending payments' outcomes at once (a read by id each), then each resolved.
	var pending []string
	for _, p := range list {
		if p.Status == core.PaymentPending {
			pending = append(pending, p.BookingID)
		}
	}
	if len(pending) > 1 {
		if _, err := b.outcomesOf(ctx, pending); err != nil {
			return nil, "", err
		}
	}
	for i := range list {
		if err := b.resolvePayment(ctx, &list[i]); err != nil {
			return nil, "", err
		}
	}
	return list, next, nil
}

func (b *Bookings) resolvePayment(ctx context.Context, p *core.Payment) error {
	if p.Status != core.PaymentPending {
		return nil
	}
	o, err := b.outcome(ctx, p.BookingID)
	if err != nil || o == nil {
		return err
	}
	if o.Status == core.BookingPaid && o.PaymentID == p.ID {
		p.Status = core.PaymentSuccess
	} else {
		p.Status, p.Reason = core.PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first"
	}
	p.UpdatedAt = o.DecidedAt
	b.projectPayment(ctx, p.ID, p.Status, p.Reason)
	return nil
}
