package bookingtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// The suite of the seat log, its snapshots and compaction (see the package comment).

func runSeatLog(run runFunc) {
	run(fmt.Sprintf("AppendSeatLog/Race%dOneSeq_OneWritesRestDup", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, other := s.NewID(), s.NewID()
		exp := msNow().Add(time.Hour)
		entries := make([]core.SeatLogEntry, racetest.Racers)
		for i := range entries {
			entries[i] = core.SeatLogEntry{ShowID: show, Seq: 1, Ops: []core.SeatOp{
				{Kind: core.SeatOpHeld, BookingID: s.NewID(), Seats: []string{fmt.Sprint("A", i)}, ExpiresAt: exp},
				{Kind: core.SeatOpFreed, BookingID: s.NewID(), Seats: []string{"B1", "B2"}},
			}}
		}
		if got, err := s.SeatLog(ctx, show, 1); err != nil || got != nil {
			t.Fatalf("entry before any append: %+v, %v; want nil", got, err)
		}
		dup := make([]bool, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { dup[i], errsOf[i] = s.AppendSeatLog(ctx, entries[i]) })
		winner := -1
		for i := range dup {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("append %d: %v", i, errsOf[i])
			case !dup[i] && winner >= 0:
				t.Fatalf("appends %d and %d both wrote seq 1", winner, i)
			case !dup[i]:
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("every append was told dup: none wrote seq 1")
		}
		got, err := s.SeatLog(ctx, show, 1)
		if err != nil || got == nil || !sameEntry(*got, entries[winner]) {
			t.Fatalf("entry 1: %+v, %v; want the winner's %+v", got, err, entries[winner])
		}
		if dup, err := s.AppendSeatLog(ctx, core.SeatLogEntry{ShowID: other, Seq: 1, Ops: entries[0].Ops}); err != nil || dup {
			t.Fatalf("seq 1 of another show: dup %v, %v", dup, err)
		}
		if got, err := s.SeatLog(ctx, show, 2); err != nil || got != nil {
			t.Fatalf("entry 2, never written: %+v, %v; want nil", got, err)
		}
	})

	run("DeleteSeatLog/DeletesTheRange_MissingIsNoError", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, other := s.NewID(), s.NewID()
		for seq := int64(1); seq <= 10; seq++ {
			for _, sh := range []string{show, other} {
				if dup, err := s.AppendSeatLog(ctx, core.SeatLogEntry{ShowID: sh, Seq: seq, Ops: []core.SeatOp{
					{Kind: core.SeatOpSold, BookingID: s.NewID(), Seats: []string{fmt.Sprint("A", seq)}}}}); err != nil || dup {
					t.Fatalf("append %d: %v, %v", seq, dup, err)
				}
			}
		}
		if err := s.DeleteSeatLog(ctx, show, 3, 6); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSeatLog(ctx, show, 5, 8); err != nil { // 5 and 6 gone already
			t.Fatal(err)
		}
		if err := s.DeleteSeatLog(ctx, show, 9, 8); err != nil { // an empty range
			t.Fatal(err)
		}
		for seq := int64(1); seq <= 10; seq++ {
			got, err := s.SeatLog(ctx, show, seq)
			if want := seq < 3 || seq > 8; err != nil || (got != nil) != want {
				t.Fatalf("entry %d after deleting 3..8: %+v, %v; want present %v", seq, got, err, want)
			}
			if got, err := s.SeatLog(ctx, other, seq); err != nil || got == nil {
				t.Fatalf("another show's entry %d: %+v, %v", seq, got, err)
			}
		}
	})

	run("SeatSnapshot/NilUntilSaved_SaveReplaces_ConcurrentSavesFine", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show := s.NewID()
		if got, err := s.SeatSnapshot(ctx, show); err != nil || got != nil {
			t.Fatalf("snapshot before any: %+v, %v; want nil", got, err)
		}
		exp := msNow().Add(time.Hour)
		snap := func(seq int64) core.SeatSnapshot {
			return core.SeatSnapshot{ShowID: show, Seq: seq, Sold: []string{fmt.Sprint("S", seq), "S0"},
				Seats: []core.SnapSeat{{Seat: fmt.Sprint("H", seq), BookingID: s.NewID(), ExpiresAt: exp}}}
		}
		first := snap(5)
		if err := s.SaveSeatSnapshot(ctx, first); err != nil {
			t.Fatal(err)
		}
		if got, err := s.SeatSnapshot(ctx, show); err != nil || got == nil || !sameSnapshot(*got, first) {
			t.Fatalf("snapshot: %+v, %v; want %+v", got, err, first)
		}
		saved := make([]core.SeatSnapshot, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		for i := range saved {
			saved[i] = snap(int64(10 + i))
		}
		racetest.Race(racetest.Racers, func(i int) { errsOf[i] = s.SaveSeatSnapshot(ctx, saved[i]) })
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("save %d: %v", i, err)
			}
		}
		got, err := s.SeatSnapshot(ctx, show)
		if err != nil || got == nil || got.Seq < 10 || !sameSnapshot(*got, saved[got.Seq-10]) {
			t.Fatalf("after %d saves at once: %+v, %v; want one of them whole", racetest.Racers, got, err)
		}
	})

	run("SeatLogCompaction/ZeroUntilSaved_SaveReplaces", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show := s.NewID()
		if got, err := s.SeatLogCompaction(ctx, show); err != nil || got != (core.SeatLogCompaction{ShowID: show}) {
			t.Fatalf("record before any: %+v, %v; want zero but for ShowID", got, err)
		}
		at := msNow()
		for _, c := range []core.SeatLogCompaction{{ShowID: show, Done: 0, Mark: 40, MarkedAt: at}, {ShowID: show, Done: 40, Mark: 90, MarkedAt: at.Add(time.Minute)}} {
			if err := s.SaveSeatLogCompaction(ctx, c); err != nil {
				t.Fatal(err)
			}
			got, err := s.SeatLogCompaction(ctx, show)
			if err != nil || got.ShowID != show || got.Done != c.Done || got.Mark != c.Mark || !got.MarkedAt.Equal(c.MarkedAt) {
				t.Fatalf("record: %+v, %v; want %+v", got, err, c)
			}
		}
		if got, err := s.SeatLogCompaction(ctx, s.NewID()); err != nil || got.Done != 0 || got.Mark != 0 {
			t.Fatalf("another show's record: %+v, %v", got, err)
		}
	})

	run(fmt.Sprintf("ClaimSeatLogSweep/Race%d_OneTrue_DropFreesTheKey", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		key := s.NewID() + ":40:7"
		oneTrue(t, "claim of one sweep", func() (bool, error) { return s.ClaimSeatLogSweep(ctx, key) })
		if ok, err := s.ClaimSeatLogSweep(ctx, key); err != nil || ok {
			t.Fatalf("a later claim: %v, %v; want false", ok, err)
		}
		for range 2 {
			if err := s.DropSeatLogSweep(ctx, key); err != nil {
				t.Fatalf("drop (again: gone already is no error): %v", err)
			}
		}
		if ok, err := s.ClaimSeatLogSweep(ctx, key); err != nil || !ok {
			t.Fatalf("claim after drop: %v, %v; want true", ok, err)
		}
	})

	run("DBTime/AClock", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		got, err := s.DBTime(ctx)
		if err != nil || got.IsZero() || got.Location() != time.UTC {
			t.Fatalf("database time %v, %v; want a UTC time", got, err)
		}
		if d := time.Since(got); d > time.Hour || d < -time.Hour {
			t.Fatalf("database time %v is %v from ours", got, d)
		}
	})
}
