package core

import (
	"cmp"
	"context"
	"maps"
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
// runs on one replica (see BookingsOptions.Leads), its customers book on any.
//
// Every note is a true fact for good: "booking X is decided, and may hold slot k". A booking's
// fate never changes once decided, and a slot is deleted by its exact id, which names its
// booking; so deleting the slot a note names is always right (it is X's, and X holds no unpaid
// seat), or does nothing (X never held it, or it is gone). Hence the store needs no atomic
// update: a note lost to a concurrent write only leaves that slot taken until the expirer
// clears it (the customer may get 429 meanwhile, as without sharing), a note kept too long (a
// removal lost) only names a slot long gone, and two expirers noting at once note the same
// facts.
type LapseStore interface {
	// NoteLapsed adds notes, by user.
	NoteLapsed(ctx context.Context, notes map[string][]LapsedSlot) error
	// Lapsed reads the user's notes (one read by the user's exact key).
	Lapsed(ctx context.Context, userID string) ([]LapsedSlot, error)
	// ForgetLapsed removes notes, by user.
	ForgetLapsed(ctx context.Context, notes map[string][]LapsedSlot) error
}

// shareLapses shares the notes of the buckets released since the last call, and unshares
// those of the buckets cleared since (by this process or another). Call it with expiryMu held.
// A failure leaves the work for the next call.
func (b *Bookings) shareLapses(ctx context.Context) error {
	l := &b.lapsed
	if l.store == nil {
		return nil
	}
	if l.shared == nil {
		l.shared = map[string]map[string][]LapsedSlot{}
	}
	add := map[string][]LapsedSlot{}
	fresh := map[string]map[string][]LapsedSlot{}
	for name, rel := range b.released {
		if _, ok := l.shared[name]; ok {
			continue
		}
		notes := map[string][]LapsedSlot{}
		for _, in := range rel.slots {
			for _, k := range in.Slots {
				n := LapsedSlot{Slot: k, BookingID: in.BookingID, ExpiresAt: in.ExpiresAt}
				notes[in.UserID] = append(notes[in.UserID], n)
				add[in.UserID] = append(add[in.UserID], n)
			}
		}
		fresh[name] = notes
	}
	var first error
	if len(add) > 0 {
		first = l.store.NoteLapsed(ctx, add)
	}
	if first == nil {
		maps.Copy(l.shared, fresh)
	}
	gone := map[string][]LapsedSlot{}
	var cleared []string
	for name, notes := range l.shared {
		if _, ok := b.released[name]; ok {
			continue
		}
		cleared = append(cleared, name)
		for user, ns := range notes {
			gone[user] = append(gone[user], ns...)
		}
	}
	if len(gone) > 0 {
		if err := l.store.ForgetLapsed(ctx, gone); err != nil {
			return cmp.Or(first, err)
		}
	}
	for _, name := range cleared {
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
