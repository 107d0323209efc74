package booking

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// BenchmarkFreeSeatsFullShow: the free seats of a 5,000-seat show with 4,900 held cost the
// same as those of an empty one (the view keeps occupancy and hold ends as it goes).
func BenchmarkFreeSeatsFullShow(b *testing.B) {
	for _, held := range []int{0, 4900} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			now := time.Now()
			bk := NewBookings(nil, nil, BookingsOptions{Now: func() time.Time { return now }})
			show := &core.Show{ID: "s", NoOfSeats: 5000, SeatsPerRow: 50}
			layout := LayoutOf(show)
			v := bk.views.get("s")
			v.loaded, v.readAt = true, now
			for i, l := range layout.labels[:held] {
				v.log[l] = seatEntry{booking: fmt.Sprint("b", i), expires: now.Add(time.Hour)}
			}
			v.rebuild()
			ctx := context.Background()
			for b.Loop() {
				free, err := bk.freeSeats(ctx, show, layout, time.Time{}, 1, nil)
				if err != nil || free.Len() != 5000-held {
					b.Fatalf("%d free, %v", free.Len(), err)
				}
			}
		})
	}
}

// oneShow finds one show (the seat map benchmark's).
type oneShow struct {
	core.ShowFinder
	show *core.Show
}

func (o oneShow) GetShow(context.Context, string) (*core.Show, error) { return o.show, nil }

// BenchmarkSeatMapFullShow: the seat map of a 5,000-seat show lists every seat whatever its
// state; a full show costs about what an empty one does.
func BenchmarkSeatMapFullShow(b *testing.B) {
	for _, sold := range []int{0, 500, 5000} {
		b.Run(fmt.Sprintf("sold=%d", sold), func(b *testing.B) {
			now := time.Now()
			show := &core.Show{ID: "s", NoOfSeats: 5000, SeatsPerRow: 50}
			bk := NewBookings(nil, oneShow{show: show}, BookingsOptions{Now: func() time.Time { return now }})
			layout := LayoutOf(show)
			v := bk.views.get("s")
			v.loaded, v.readAt = true, now
			for i, l := range layout.labels[:sold] {
				v.log[l] = seatEntry{booking: fmt.Sprint("b", i), expires: now.Add(-time.Hour), sold: true}
			}
			v.rebuild()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				m, err := bk.SeatMap(ctx, "s")
				if err != nil || len(m.Sold) != sold || len(m.Seats) != 5000 {
					b.Fatalf("%d sold, %v", len(m.Sold), err)
				}
			}
		})
	}
}
