package mongostore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// TestLapsesNoteReadForget: notes are kept per customer (a note given twice is kept once),
// read back as given, and removed exactly; a customer without notes has none. Concurrent notes
// of one new customer (upserts of one document at once) all succeed.
func TestLapsesNoteReadForget(t *testing.T) {
	t.Parallel()
	s := NewLapses(devdb.TestDB(t))
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	n := func(k int, b string) core.LapsedSlot { return core.LapsedSlot{Slot: k, BookingID: b, ExpiresAt: at} }
	if got, err := s.Lapsed(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("nobody: %v %v", got, err)
	}
	if err := s.NoteLapsed(ctx, map[string][]core.LapsedSlot{"u": {n(1, "b1"), n(2, "b1")}, "v": {n(0, "b9")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteLapsed(ctx, map[string][]core.LapsedSlot{"u": {n(2, "b1"), n(3, "b2")}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lapsed(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	want := []core.LapsedSlot{n(1, "b1"), n(2, "b1"), n(3, "b2")}
	if !slices.Equal(got, want) {
		t.Fatalf("u: %v, want %v", got, want)
	}
	if err := s.ForgetLapsed(ctx, map[string][]core.LapsedSlot{"u": {n(1, "b1"), n(2, "b1")}, "w": {n(5, "b5")}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Lapsed(ctx, "u"); !slices.Equal(got, []core.LapsedSlot{n(3, "b2")}) {
		t.Fatalf("u after forgetting b1: %v", got)
	}
	if got, _ := s.Lapsed(ctx, "v"); !slices.Equal(got, []core.LapsedSlot{n(0, "b9")}) {
		t.Fatalf("v: %v", got)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.NoteLapsed(ctx, map[string][]core.LapsedSlot{"new": {n(i, fmt.Sprintf("c%d", i))}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent note %d: %v", i, err)
		}
	}
	if got, _ := s.Lapsed(ctx, "new"); len(got) == 0 {
		t.Fatal("no note of the concurrent ones kept")
	}
}

// TestLapsesManyCustomers: a bucket's notes for 150 customers whose documents exist already
// are written in well under the time limit (as one bulk write of 150 updates, the embedded
// database never answered).
func TestLapsesManyCustomers(t *testing.T) {
	t.Parallel()
	s := NewLapses(devdb.TestDB(t))
	at := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	for round := range 2 {
		notes := map[string][]core.LapsedSlot{}
		for u := range 150 {
			user := fmt.Sprintf("user%d", u)
			notes[user] = []core.LapsedSlot{{Slot: round, BookingID: fmt.Sprintf("b%d-%d", round, u), ExpiresAt: at}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.NoteLapsed(ctx, notes)
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if got, err := s.Lapsed(context.Background(), "user149"); err != nil || len(got) != 2 {
		t.Fatalf("user149: %v %v", got, err)
	}
}
