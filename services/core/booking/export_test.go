package booking

import (
	"context"
	"slices"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// LogOp writes a seat log operation as the engine does (tests of the seat log).
func (b *Bookings) LogOp(showID string, op core.SeatOp) <-chan bool { return b.logOp(showID, op) }

// SeatLogView refreshes this process's view of the show (tailing the seat log, or reloading it)
// and returns the seats held and sold in it and the view's head (tests).
func (b *Bookings) SeatLogView(ctx context.Context, showID string) (held, sold []string, seq int64, err error) {
	v := b.views.get(showID)
	if err := b.refresh(ctx, v); err != nil {
		return nil, nil, 0, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for s, e := range v.eff {
		if e.sold {
			sold = append(sold, s)
		} else {
			held = append(held, s)
		}
	}
	slices.Sort(held)
	slices.Sort(sold)
	return held, sold, v.seq, nil
}

// SeatLogHead returns the head of this process's view of the show, without reading (tests).
func (b *Bookings) SeatLogHead(showID string) int64 {
	v := b.views.get(showID)
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seq
}

// SeatLogWritten waits until this process has written the seat log operations it queued for
// the show (tests).
func (b *Bookings) SeatLogWritten(showID string) {
	v := b.views.get(showID)
	for {
		v.mu.Lock()
		busy := v.writing || len(v.queue) > 0 || len(v.local) > 0
		v.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
