package bookingtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core/booking"
)

// RunLapseStore runs the suite of booking.LapseStore. newStore returns a new, empty store of
// its own on each call (the subtests run in parallel).
//
// The contract it checks (subtest names say the same): NoteLapsed records a bucket's notes by
// user; Lapsed returns a user's notes of every bucket noted (none for a user without any);
// a user's notes recorded for a bucket already are kept (a second NoteLapsed of the bucket
// adds other users only), so of many NoteLapsed of one bucket at once every one succeeds and
// each user ends with exactly one writer's notes, whole; ForgetLapsed drops a bucket's notes
// (a bucket never noted is no error); an empty NoteLapsed is no error.
func RunLapseStore(t *testing.T, newStore func(t *testing.T) booking.LapseStore) {
	t.Helper()
	run := func(name string, f func(t *testing.T, ctx context.Context, s booking.LapseStore)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, t.Context(), newStore(t))
		})
	}
	exp := msNow()
	b1, b2 := bucketName(exp), bucketName(exp.Add(time.Minute))

	run("NoteLapsed/ReadByUserAcrossBuckets", func(t *testing.T, ctx context.Context, s booking.LapseStore) {
		n1 := []booking.LapsedSlot{{Slot: 0, BookingID: "bk1", ExpiresAt: exp}, {Slot: 3, BookingID: "bk1", ExpiresAt: exp}}
		n2 := []booking.LapsedSlot{{Slot: 1, BookingID: "bk2", ExpiresAt: exp.Add(time.Second)}}
		n3 := []booking.LapsedSlot{{Slot: 2, BookingID: "bk3", ExpiresAt: exp.Add(time.Minute)}}
		if err := s.NoteLapsed(ctx, b1, map[string][]booking.LapsedSlot{"u1": n1, "u2": n2}); err != nil {
			t.Fatal(err)
		}
		if err := s.NoteLapsed(ctx, b2, map[string][]booking.LapsedSlot{"u1": n3}); err != nil {
			t.Fatal(err)
		}
		for user, want := range map[string][]booking.LapsedSlot{"u1": append(slices.Clone(n1), n3...), "u2": n2, "u3": nil} {
			got, err := s.Lapsed(ctx, user)
			if err != nil || !sameNotes(got, want) {
				t.Fatalf("%s's notes: %+v, %v; want %+v", user, got, err, want)
			}
		}
		if err := s.NoteLapsed(ctx, b2, map[string][]booking.LapsedSlot{}); err != nil {
			t.Fatalf("no notes: %v", err)
		}
	})

	run("NoteLapsed/NotedAlreadyAreKept_OthersAdded", func(t *testing.T, ctx context.Context, s booking.LapseStore) {
		first := []booking.LapsedSlot{{Slot: 0, BookingID: "bk1", ExpiresAt: exp}}
		if err := s.NoteLapsed(ctx, b1, map[string][]booking.LapsedSlot{"u1": first}); err != nil {
			t.Fatal(err)
		}
		later := []booking.LapsedSlot{{Slot: 4, BookingID: "bk9", ExpiresAt: exp}}
		if err := s.NoteLapsed(ctx, b1, map[string][]booking.LapsedSlot{"u1": later, "u2": later}); err != nil {
			t.Fatalf("notes of a bucket noted already: %v", err)
		}
		if got, err := s.Lapsed(ctx, "u1"); err != nil || !sameNotes(got, first) {
			t.Fatalf("u1's notes: %+v, %v; want the first kept", got, err)
		}
		if got, err := s.Lapsed(ctx, "u2"); err != nil || !sameNotes(got, later) {
			t.Fatalf("u2's notes: %+v, %v; want the ones added", got, err)
		}
	})

	run(fmt.Sprintf("NoteLapsed/Race%dOneBucket_AllSucceed_EachUserOneWritersNotes", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.LapseStore) {
		users := []string{"u1", "u2", "u3"}
		notes := make([]map[string][]booking.LapsedSlot, racetest.Racers)
		for i := range notes {
			notes[i] = map[string][]booking.LapsedSlot{}
			for k, u := range users {
				notes[i][u] = []booking.LapsedSlot{{Slot: k, BookingID: fmt.Sprintf("bk%d", i), ExpiresAt: exp},
					{Slot: k + 10, BookingID: fmt.Sprintf("bk%d", i), ExpiresAt: exp}}
			}
		}
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { errsOf[i] = s.NoteLapsed(ctx, b1, notes[i]) })
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("note %d: %v", i, err)
			}
		}
		for _, u := range users {
			got, err := s.Lapsed(ctx, u)
			if err != nil || !slices.ContainsFunc(notes, func(n map[string][]booking.LapsedSlot) bool { return sameNotes(got, n[u]) }) {
				t.Fatalf("%s's notes: %+v, %v; want one writer's, whole", u, got, err)
			}
		}
	})

	run("ForgetLapsed/DropsTheBucket_NeverNotedIsNoError", func(t *testing.T, ctx context.Context, s booking.LapseStore) {
		n1 := []booking.LapsedSlot{{Slot: 0, BookingID: "bk1", ExpiresAt: exp}}
		n2 := []booking.LapsedSlot{{Slot: 1, BookingID: "bk2", ExpiresAt: exp}}
		if err := s.NoteLapsed(ctx, b1, map[string][]booking.LapsedSlot{"u1": n1}); err != nil {
			t.Fatal(err)
		}
		if err := s.NoteLapsed(ctx, b2, map[string][]booking.LapsedSlot{"u1": n2}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.ForgetLapsed(ctx, b1); err != nil {
				t.Fatalf("forget (again: gone already is no error): %v", err)
			}
		}
		if got, err := s.Lapsed(ctx, "u1"); err != nil || !sameNotes(got, n2) {
			t.Fatalf("u1's notes after forgetting %s: %+v, %v; want %s's alone", b1, got, err, b2)
		}
		if err := s.ForgetLapsed(ctx, bucketName(exp.Add(time.Hour))); err != nil {
			t.Fatalf("forget a bucket never noted: %v", err)
		}
		if err := s.NoteLapsed(ctx, b1, map[string][]booking.LapsedSlot{"u1": n1}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Lapsed(ctx, "u1"); err != nil || !sameNotes(got, append(slices.Clone(n1), n2...)) {
			t.Fatalf("u1's notes after noting %s again: %+v, %v", b1, got, err)
		}
	})
}

// bucketName is a name of the expiry queue's bucket of t, as booking stores name them.
func bucketName(t time.Time) string {
	start := t.Unix() / 10 * 10
	return fmt.Sprintf("booking_intents_%d_%d", start, start+10)
}

func sameNotes(a, b []booking.LapsedSlot) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(n booking.LapsedSlot) string {
		return fmt.Sprintf("%d:%s:%d", n.Slot, n.BookingID, n.ExpiresAt.UnixMilli())
	}
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i], kb[i] = key(a[i]), key(b[i])
	}
	return sameSet(ka, kb)
}
