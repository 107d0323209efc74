package mongostore

import (
	"context"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// TestSeatLogCompactionStore: entries are deleted by range of one show only (missing ones are no
// error); the compaction record reads zero until saved and back as saved; a sweep claim is won
// once until dropped; the database tells its time.
func TestSeatLogCompactionStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewBookings(devdb.TestDB(t))
	for _, show := range []string{"s1", "s2"} {
		for seq := int64(1); seq <= 10; seq++ {
			if dup, err := s.AppendSeatLog(ctx, core.SeatLogEntry{ShowID: show, Seq: seq,
				Ops: []core.SeatOp{{Kind: core.SeatOpHeld, BookingID: "b", Seats: []string{"A1"}}}}); err != nil || dup {
				t.Fatalf("append %s %d: %v %v", show, seq, dup, err)
			}
		}
	}
	if err := s.DeleteSeatLog(ctx, "s1", 1, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSeatLog(ctx, "s1", 3, 6); err != nil { // partly deleted already
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 10; seq++ {
		for _, show := range []string{"s1", "s2"} {
			e, err := s.SeatLog(ctx, show, seq)
			if err != nil {
				t.Fatal(err)
			}
			if want := show == "s2" || seq > 6; (e != nil) != want {
				t.Fatalf("%s entry %d: %v, want present %v", show, seq, e, want)
			}
		}
	}

	rec, err := s.SeatLogCompaction(ctx, "s1")
	if err != nil || rec != (core.SeatLogCompaction{ShowID: "s1"}) {
		t.Fatalf("no record yet: %+v %v", rec, err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, want := range []core.SeatLogCompaction{{ShowID: "s1", Mark: 6, MarkedAt: at}, {ShowID: "s1", Done: 6, Mark: 6, MarkedAt: at}} {
		if err := s.SaveSeatLogCompaction(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := s.SeatLogCompaction(ctx, "s1"); err != nil || got != want {
			t.Fatalf("record %+v %v, want %+v", got, err, want)
		}
	}

	for i, want := range []bool{true, false} {
		if won, err := s.ClaimSeatLogSweep(ctx, "s1:6:1"); err != nil || won != want {
			t.Fatalf("claim %d: %v %v", i, won, err)
		}
	}
	if err := s.DropSeatLogSweep(ctx, "s1:6:1"); err != nil {
		t.Fatal(err)
	}
	if won, err := s.ClaimSeatLogSweep(ctx, "s1:6:1"); err != nil || !won {
		t.Fatalf("claim after the drop: %v %v", won, err)
	}

	now, err := s.DBTime(ctx)
	if err != nil || now.Sub(time.Now()).Abs() > time.Minute {
		t.Fatalf("database time %v (%v), local %v", now, err, time.Now())
	}
}
