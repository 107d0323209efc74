package booking

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// LapsedSlot is one of the expirer's notes: booking BookingID (whose hold ended at ExpiresAt)
// is decided, and may still hold its customer's fair-use slot Slot.
type LapsedSlot struct {
	Slot      int
	BookingID string
	ExpiresAt time.Time
}

// LapseStore shares the expirer's notes of lapsed fair-use slots among replicas: the expirer
// runs on one replica (see BookingsOptions.Leads), its customers book on any. The notes are kept
// by bucket of the expiry queue: written once when the bucket is released, dropped with it when
// it is cleared.
//
// Every note is a true fact for good: "booking X is decided, and may hold slot k". A booking's
// fate never changes once decided, and a slot is deleted by its exact id, which names its
// booking; so deleting the slot a note names is always right (it is X's, and X holds no unpaid
// seat), or does nothing (X never held it, or it is gone). Hence the store needs no atomic
// update: a note lost (a write that failed, or two expirers writing a bucket's notes at once at a
// change of leader) only leaves that slot taken until the expirer clears it (the customer may
// get 429 meanwhile, as without sharing), and a note kept too long (a bucket's notes written
// again by an expirer that lost the lead after the clear) only names a slot long gone.
type LapseStore interface {
	// NoteLapsed records the notes of a released bucket of the expiry queue, by user (notes
	// recorded for the bucket already are kept).
	NoteLapsed(ctx context.Context, bucket string, notes map[string][]LapsedSlot) error
	// Lapsed reads the user's notes in every bucket noted (a read by the user's exact key per
	// bucket).
	Lapsed(ctx context.Context, userID string) ([]LapsedSlot, error)
	// ForgetLapsed drops a bucket's notes.
	ForgetLapsed(ctx context.Context, bucket string) error
}

// shareLapses shares the notes of the buckets released since the last call, and drops those of
// the buckets cleared since (by this process or another). Call it with expiryMu held. A failure
// leaves the work for the next call.
func (b *Bookings) shareLapses(ctx context.Context) error {
	l := &b.lapsed
	if l.store == nil {
		return nil
	}
	if l.shared == nil {
		l.shared = map[string]bool{}
	}
	var first error
	for name, rel := range b.released {
		if _, ok := l.shared[name]; ok {
			continue
		}
		notes := map[string][]LapsedSlot{}
		for _, in := range rel.slots {
			for _, k := range in.Slots {
				notes[in.UserID] = append(notes[in.UserID], LapsedSlot{Slot: k, BookingID: in.BookingID, ExpiresAt: in.ExpiresAt})
			}
		}
		if len(notes) > 0 {
			if err := l.store.NoteLapsed(ctx, name, notes); err != nil {
				first = cmp.Or(first, err)
				continue
			}
		}
		l.shared[name] = len(notes) > 0
	}
	for name, wrote := range l.shared {
		if _, ok := b.released[name]; ok {
			continue
		}
		if wrote {
			if err := l.store.ForgetLapsed(ctx, name); err != nil {
				first = cmp.Or(first, err)
				continue
			}
		}
		delete(l.shared, name)
	}
	return first
}

// withShared adds to lapsed (booking -> slots, as of returns) the shared notes of the user's
// slots among slots, not won and not in lapsed already. It reads the store only when lapsed
// does not cover every slot lost; a failed read adds nothing (the booking answers as if no
// slot had lapsed).
func (l *lapsedSlots) withShared(ctx context.Context, userID string, slots, won []int, lapsed map[string][]int) map[string][]int {
	if l.store == nil {
		return lapsed
	}
	covered := func(k int) bool {
		for _, ks := range lapsed {
			if slices.Contains(ks, k) {
				return true
			}
		}
		return false
	}
	var lost []int
	for _, k := range slots {
		if !slices.Contains(won, k) && !covered(k) {
			lost = append(lost, k)
		}
	}
	if len(lost) == 0 {
		return lapsed
	}
	notes, err := l.store.Lapsed(ctx, userID)
	if err != nil {
		return lapsed
	}
	for _, n := range notes {
		if !slices.Contains(lost, n.Slot) || slices.Contains(lapsed[n.BookingID], n.Slot) {
			continue
		}
		if lapsed == nil {
			lapsed = map[string][]int{}
		}
		lapsed[n.BookingID] = append(lapsed[n.BookingID], n.Slot)
	}
	return lapsed
}
