package booking

import (
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// TestApplySeatOpOrder: the seat log is written after the fact by many processes, so entries
// about one seat can arrive out of order. A sale is for good, and a release clears a seat only
// for its holder, whatever the order.
func TestApplySeatOpOrder(t *testing.T) {
	e := time.Unix(1000, 0)
	m := map[string]seatEntry{}
	apply := func(k core.SeatOpKind, booking string, seats ...string) {
		applySeatOp(m, core.SeatOp{Kind: k, BookingID: booking, Seats: seats, ExpiresAt: e})
	}
	apply(core.SeatOpHeld, "b1", "A1", "A2")
	apply(core.SeatOpFreed, "b0", "A1") // an older holder's release, written late
	if m["A1"].booking != "b1" {
		t.Fatalf("a late release of another booking cleared A1: %+v", m["A1"])
	}
	apply(core.SeatOpSold, "b1", "A1")
	apply(core.SeatOpHeld, "b2", "A1") // a hold written late, from before the sale
	apply(core.SeatOpFreed, "b1", "A1")
	if got := m["A1"]; got.booking != "b1" || !got.sold || !got.expires.Equal(e) {
		t.Fatalf("a sold seat changed: %+v", got)
	}
	apply(core.SeatOpFreed, "b1", "A2")
	if _, ok := m["A2"]; ok {
		t.Fatal("the holder's release did not free A2")
	}
	apply(core.SeatOpSold, "b3", "A3") // a sale whose hold the log never had
	if got := m["A3"]; got.booking != "b3" || !got.sold {
		t.Fatalf("A3: %+v", got)
	}
}
