package mongostore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core/booking"
)

// TestLapsesNoteReadForget: notes are kept per bucket and customer (noting a bucket again keeps
// what it has), read back across buckets, and dropped with their bucket; a customer without
// notes has none.
func TestLapsesNoteReadForget(t *testing.T) {
	t.Parallel()
	s := NewLapses(devdb.TestDB(t))
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	n := func(k int, b string) booking.LapsedSlot {
		return booking.LapsedSlot{Slot: k, BookingID: b, ExpiresAt: at}
	}
	if got, err := s.Lapsed(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("nobody: %v %v", got, err)
	}
	if err := s.NoteLapsed(ctx, "b1", map[string][]booking.LapsedSlot{"u": {n(1, "x1"), n(2, "x1")}, "v": {n(0, "x9")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteLapsed(ctx, "b1", map[string][]booking.LapsedSlot{"u": {n(2, "x1")}, "w": {n(4, "x4")}}); err != nil {
		t.Fatalf("noting a bucket again: %v", err)
	}
	if err := s.NoteLapsed(ctx, "b2", map[string][]booking.LapsedSlot{"u": {n(3, "x2")}}); err != nil {
		t.Fatal(err)
	}
	sortNotes := func(ns []booking.LapsedSlot) []booking.LapsedSlot {
		slices.SortFunc(ns, func(a, b booking.LapsedSlot) int { return a.Slot - b.Slot })
		return ns
	}
	got, err := s.Lapsed(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if want := []booking.LapsedSlot{n(1, "x1"), n(2, "x1"), n(3, "x2")}; !slices.Equal(sortNotes(got), want) {
		t.Fatalf("u: %v, want %v", got, want)
	}
	if got, _ := s.Lapsed(ctx, "w"); !slices.Equal(got, []booking.LapsedSlot{n(4, "x4")}) {
		t.Fatalf("w: %v", got)
	}
	if err := s.ForgetLapsed(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Lapsed(ctx, "u"); !slices.Equal(got, []booking.LapsedSlot{n(3, "x2")}) {
		t.Fatalf("u after dropping b1: %v", got)
	}
	if got, _ := s.Lapsed(ctx, "v"); len(got) != 0 {
		t.Fatalf("v after dropping b1: %v", got)
	}
	if err := s.ForgetLapsed(ctx, "b1"); err != nil {
		t.Fatalf("dropping again: %v", err)
	}
}

// TestLapsesManyCustomers: a bucket's notes for 1,500 customers are written in one go, well
// under the time limit (as a bulk write of an update per customer, the embedded database never
// answered past about a hundred).
func TestLapsesManyCustomers(t *testing.T) {
	t.Parallel()
	s := NewLapses(devdb.TestDB(t))
	at := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	for round := range 2 {
		notes := map[string][]booking.LapsedSlot{}
		for u := range 1500 {
			user := fmt.Sprintf("user%d", u)
			notes[user] = []booking.LapsedSlot{{Slot: round, BookingID: fmt.Sprintf("b%d-%d", round, u), ExpiresAt: at}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.NoteLapsed(ctx, fmt.Sprintf("bucket%d", round), notes)
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if got, err := s.Lapsed(context.Background(), "user1499"); err != nil || len(got) != 2 {
		t.Fatalf("user1499: %v %v", got, err)
	}
}
