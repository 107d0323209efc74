package booking

import (
	"context"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// SeatMap lists a show's seats as free, held or sold. Expired holds count as free. It costs the
// same for a full show as for an empty one: the view is read in place, by layout index, and
// only the unsold holds (few in a sold-out show) need more than a glance.
func (b *Bookings) SeatMap(ctx context.Context, showID string) (*core.SeatMap, error) {
	show, err := b.shows.GetShow(ctx, showID)
	if err != nil {
		return nil, err
	}
	v, err := b.freshView(ctx, show.ID, time.Time{})
	if err != nil {
		return nil, err
	}
	layout := LayoutOf(show)
	states := make([]core.SeatState, layout.Seats)
	type hold struct {
		seat    int
		booking string
		expires time.Time
	}
	var holds []hold
	v.mu.Lock()
	v.useLayout(layout)
	for s := range v.unknown {
		if i, ok := layout.index[s]; ok {
			states[i] = core.SeatHeld
		}
	}
	for i, taken := range v.occ {
		switch {
		case !taken:
		case v.sold[i]:
			states[i] = core.SeatSold
		default:
			e := v.eff[layout.labels[i]]
			holds = append(holds, hold{i, e.booking, e.expires})
		}
	}
	v.mu.Unlock()
	now := b.takeoverNow() // a hold counts as held until others may take it
	// A hold past its expiry and not known sold may belong to a booking that was paid (and
	// whose sale the log does not have yet): its outcome, if any, says which.
	var unsure []string
	seen := map[string]bool{}
	for _, h := range holds {
		if _, known := b.knownOutcome(h.booking); !known && now.After(h.expires) && !seen[h.booking] {
			seen[h.booking] = true
			unsure = append(unsure, h.booking)
		}
	}
	outcomes, err := b.outcomesOf(ctx, unsure)
	if err != nil {
		return nil, err
	}
	for _, h := range holds {
		known, decided := b.knownOutcome(h.booking)
		if o, ok := outcomes[h.booking]; ok {
			known, decided = o, true
		}
		switch {
		case decided && known.Status == core.BookingPaid:
			states[h.seat] = core.SeatSold
		case decided:
			states[h.seat] = ""
		case now.Before(h.expires):
			states[h.seat] = core.SeatHeld
		}
	}
	var held, sold int
	for _, st := range states {
		switch st {
		case core.SeatHeld:
			held++
		case core.SeatSold:
			sold++
		}
	}
	m := &core.SeatMap{ShowID: show.ID, NoOfSeats: show.NoOfSeats, SeatsPerRow: layout.PerRow, At: b.now().UTC(),
		Free: make([]string, 0, layout.Seats-held-sold), Held: make([]string, 0, held), Sold: make([]string, 0, sold),
		Seats: make([]core.SeatEntry, layout.Seats)}
	for i, s := range layout.labels {
		st := states[i]
		switch st {
		case core.SeatHeld:
			m.Held = append(m.Held, s)
		case core.SeatSold:
			m.Sold = append(m.Sold, s)
		default:
			st = core.SeatFree
			m.Free = append(m.Free, s)
		}
		m.Seats[i] = core.SeatEntry{Seat: s, State: st}
	}
	return m, nil
}
