package booking

import (
	"context"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// showOpen answers errs.Conflict if a deletion of the show is under way.
func (b *Bookings) showOpen(ctx context.Context, showID string) error {
	at, ok, err := b.store.ShowDeleting(ctx, showID)
	if err != nil {
		return err
	}
	if ok && b.now().Sub(at) < core.DeletionMarkerStale {
		return errs.E(errs.Conflict, "the show is being deleted").Because(core.ReasonBeingDeleted)
	}
	return nil
}

// ReserveShowDeletion is asked before a show is deleted. It inserts the show's deletion marker
// (from then on, a booking that wins seats of the show sees it and backs off), then looks for
// bookings of the show: seats sold or held in its seat log, read afresh, and bookings whose fate
// is not settled in the expiry queue (a booking writes its intent before it claims a seat). A
// show in use is errs.Conflict, and the marker is removed again. Otherwise the caller deletes
// the show, and calls abort if that fails.
func (b *Bookings) ReserveShowDeletion(ctx context.Context, showID string) (abort func(context.Context), err error) {
	start := b.now()
	won, err := b.store.MarkShowDeleting(ctx, showID)
	if err != nil {
		return nil, err
	}
	if !won {
		at, ok, err := b.store.ShowDeleting(ctx, showID)
		if err != nil {
			return nil, err
		}
		if ok && b.now().Sub(at) < core.DeletionMarkerStale {
			return nil, errs.E(errs.Conflict, "the show is being deleted by another request").Because(core.ReasonBeingDeleted)
		}
		// A marker left by a deleter that died: take the deletion over.
		if err := b.store.UnmarkShowDeleting(ctx, showID); err != nil {
			return nil, err
		}
		if won, err = b.store.MarkShowDeleting(ctx, showID); err != nil {
			return nil, err
		}
		if !won {
			return nil, errs.E(errs.Conflict, "the show is being deleted by another request").Because(core.ReasonBeingDeleted)
		}
	}
	abort = func(ctx context.Context) { _ = b.store.UnmarkShowDeleting(context.WithoutCancel(ctx), showID) }
	used, err := b.showInUse(ctx, showID, start)
	if err == nil && b.now().Sub(start) > core.DeletionMarkerStale/2 {
		err = errs.E(errs.Unavailable, "the check for bookings took too long; try again")
	}
	if err != nil || used {
		abort(ctx)
		if err != nil {
			return nil, err
		}
		return nil, errs.E(errs.Conflict, "the show has seats held or sold: cancel its bookings first").Because(core.ReasonInUse)
	}
	return abort, nil
}

// showInUse reports whether the show has seats sold or held by bookings whose hold has not
// ended, from reads begun at or after since.
func (b *Bookings) showInUse(ctx context.Context, showID string, since time.Time) (bool, error) {
	st, err := b.seatsOf(ctx, showID, since)
	if err != nil {
		return false, err
	}
	intents, err := b.store.ShowIntents(ctx, showID)
	if err != nil {
		return false, err
	}
	now := b.takeoverNow()
	bookings := map[string][]string{} // undecided-looking booking -> seats
	for s, e := range st.seats {
		if e.sold {
			return true, nil
		}
		bookings[e.booking] = append(bookings[e.booking], s)
	}
	if len(st.unknown) > 0 {
		return true, nil
	}
	expires := map[string]time.Time{}
	for _, e := range st.seats {
		if e.expires.After(expires[e.booking]) {
			expires[e.booking] = e.expires
		}
	}
	for _, in := range intents {
		bookings[in.BookingID] = append(bookings[in.BookingID], in.Seats...)
		if in.ExpiresAt.After(expires[in.BookingID]) {
			expires[in.BookingID] = in.ExpiresAt
		}
	}
	ids := make([]string, 0, len(bookings))
	for id := range bookings {
		ids = append(ids, id)
	}
	outcomes, err := b.outcomesOf(ctx, ids)
	if err != nil {
		return false, err
	}
	for id, seats := range bookings {
		o, decided := outcomes[id]
		if !decided {
			if now.Before(expires[id]) {
				return true, nil
			}
			if o, err = b.expire(ctx, showID, id, seats); err != nil {
				return false, err
			}
		}
		if o.Status == core.BookingPaid {
			return true, nil
		}
	}
	return false, nil
}
