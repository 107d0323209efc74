// Package bookingtest is the conformance suite of the booking engine's stores
// (booking.BookingStore and booking.LapseStore), in the manner of riverqueue/river's driver
// suite (riverdrivertest): one function per contract runs every method, and its concurrency
// contract, against stores an implementation's own tests make.
//
// The BookingStore contract it checks (subtest names say the same):
//
//   - Seats: a hold is an insert into the unique key (show, seat). InsertHolds wins the seats
//     whose key is free and simply does not win the others (no error); of many bookings
//     inserting one seat at once exactly one wins it, and of many inserting overlapping seats
//     every seat tried is won by exactly one. MissingHolds names the seats the booking holds
//     no hold on (another booking's hold counts as missing); ReleaseHolds deletes only the
//     booking's own holds (another's on the same seat stays; seats not held are no error) and
//     frees the seat for the next insert; MarkSold sets the hint; ShowHolds and AllHolds list.
//   - Fair-use slots: the same with the unique key (user, slot): ClaimSlots wins the free
//     ones (of many claims of one slot at once, exactly one); ReleaseSlots deletes only the
//     booking's own.
//   - The expiry queue: AddIntent of an intent already there is success and keeps one copy;
//     IntentBuckets lists buckets earliest first, each intent in the one whose [Start, End)
//     holds its ExpiresAt; BucketIntents reads a bucket; DeleteIntents deletes by id (missing
//     ones are no error); DropIntentBucket drops a bucket (one gone already is no error);
//     ShowIntents lists a show's intents in every bucket; ForwardLegacyIntents on an empty
//     legacy queue moves nothing.
//   - The seat log: AppendSeatLog is an insert into the unique key (show, seq): of many
//     appends of one seq at once exactly one writes (dup false) and every other is told dup;
//     SeatLog reads the entry written (nil when none). SaveSeatSnapshot replaces the show's
//     snapshot (nil until one is saved; concurrent saves are all fine and one of them is
//     read whole); DeleteSeatLog deletes a range (missing entries are no error, others stay);
//     SaveSeatLogCompaction replaces the record (zero but for ShowID until saved);
//     ClaimSeatLogSweep answers true to one insert of a key (of many at once, exactly one)
//     until DropSeatLogSweep frees it; DBTime reads a clock.
//   - A show's deletion marker: MarkShowDeleting answers true to one insert (of many at once,
//     exactly one), false while it exists; ShowDeleting reads it; UnmarkShowDeleting deletes
//     it (gone already is no error).
//   - Migrated is false until SetMigrated (which may be called again).
//   - Bookings and payments keep the id they are given: a malformed id is errs.Invalid, an
//     unknown one errs.NotFound; a second create of an id fails and keeps the first.
//     ListBookings and ListPayments list newest first (by CreatedAt), by user, with limit and
//     skip; PageBookings and PagePayments do the same by cursors, every item once, and a
//     cursor the store did not write is errs.Invalid. ProjectStatus and ProjectPayments copy
//     a status onto the documents (a malformed id is errs.Invalid, an unknown one no error).
//     OpenBookings lists the bookings whose hold ends after a time.
//   - A booking's fate is an insert under its id: Decide answers won=true to the first insert
//     and returns it; every later or concurrent Decide stores nothing, answers won=false and
//     returns the outcome in force, the same for every caller (of many at once, on many
//     bookings at once, exactly one per booking). Outcome is nil while undecided; Outcomes
//     returns the decided ones only.
//
// The LapseStore contract is in RunLapseStore's comment.
package bookingtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// RunBookingStore runs the suite of booking.BookingStore. newStore returns a new, empty store
// of its own on each call (the subtests run in parallel), ready for use (indexes made, and
// whatever start-up work the store needs before its lists answer, done).
func RunBookingStore(t *testing.T, newStore func(t *testing.T) booking.BookingStore) {
	t.Helper()
	run := func(name string, f func(t *testing.T, ctx context.Context, s booking.BookingStore)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, t.Context(), newStore(t))
		})
	}
	runHolds(run)
	runSeatLog(run)
	runRecords(run)
}

type runFunc func(name string, f func(t *testing.T, ctx context.Context, s booking.BookingStore))

func runHolds(run runFunc) {
	run("NewID/DistinctWellFormed", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		seen := map[string]bool{}
		for range 1000 {
			id := s.NewID()
			if !core.IsID(id) || seen[id] {
				t.Fatalf("id %q: well-formed %v, seen before %v", id, core.IsID(id), seen[id])
			}
			seen[id] = true
		}
	})

	run("InsertHolds/FreeSeatsWon_TakenSeatsNotWon", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, other, a, b := s.NewID(), s.NewID(), s.NewID(), s.NewID()
		exp := msNow().Add(time.Hour)
		if won, err := s.InsertHolds(ctx, holds(show, a, exp, "A1", "A2")); err != nil || !sameSet(won, []string{"A1", "A2"}) {
			t.Fatalf("booking a: won %v, %v", won, err)
		}
		won, err := s.InsertHolds(ctx, holds(show, b, exp, "A2", "A3"))
		if err != nil || !sameSet(won, []string{"A3"}) {
			t.Fatalf("booking b over a's A2: won %v, %v; want [A3] and no error", won, err)
		}
		if won, err := s.InsertHolds(ctx, holds(other, b, exp, "A1")); err != nil || !sameSet(won, []string{"A1"}) {
			t.Fatalf("A1 of another show: won %v, %v", won, err)
		}
		if won, err := s.InsertHolds(ctx, nil); err != nil || len(won) != 0 {
			t.Fatalf("no holds: %v, %v", won, err)
		}
		got, err := s.ShowHolds(ctx, show)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"A1": a, "A2": a, "A3": b}
		if len(got) != len(want) {
			t.Fatalf("show holds %+v, want %v", got, want)
		}
		for _, h := range got {
			if h.ShowID != show || want[h.Seat] != h.BookingID || !h.ExpiresAt.Equal(exp) || h.Sold {
				t.Fatalf("show hold %+v, want seat -> booking %v, expiring %v, unsold", h, want, exp)
			}
		}
	})

	run(fmt.Sprintf("InsertHolds/Race%dOneSeat_ExactlyOneWins", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show := s.NewID()
		exp := msNow().Add(time.Hour)
		bookings := make([]string, racetest.Racers)
		for i := range bookings {
			bookings[i] = s.NewID()
		}
		won := make([][]string, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { won[i], errsOf[i] = s.InsertHolds(ctx, holds(show, bookings[i], exp, "A1")) })
		winner := -1
		for i := range won {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("booking %d: %v (a lost seat is not an error)", i, errsOf[i])
			case len(won[i]) > 0 && winner >= 0:
				t.Fatalf("bookings %d and %d both won A1", winner, i)
			case len(won[i]) > 0:
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("nobody won A1")
		}
		if got, err := s.ShowHolds(ctx, show); err != nil || len(got) != 1 || got[0].BookingID != bookings[winner] {
			t.Fatalf("show holds %+v, %v; want A1 held by booking %d alone", got, err, winner)
		}
	})

	run(fmt.Sprintf("InsertHolds/Race%dOverlappingSeats_EachSeatWonOnce", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show := s.NewID()
		exp := msNow().Add(time.Hour)
		pool := make([]string, 12)
		for i := range pool {
			pool[i] = fmt.Sprintf("B%d", i+1)
		}
		bookings := make([]string, racetest.Racers)
		tries := make([][]string, racetest.Racers)
		for i := range bookings {
			bookings[i] = s.NewID()
			for k := range 4 { // seats i, i+3, i+6, i+9 of the pool: every seat tried by several
				tries[i] = append(tries[i], pool[(i+3*k)%len(pool)])
			}
		}
		won := make([][]string, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { won[i], errsOf[i] = s.InsertHolds(ctx, holds(show, bookings[i], exp, tries[i]...)) })
		owner := map[string]string{}
		for i := range won {
			if errsOf[i] != nil {
				t.Fatalf("booking %d: %v", i, errsOf[i])
			}
			for _, seat := range won[i] {
				if !slices.Contains(tries[i], seat) {
					t.Fatalf("booking %d won %s, which it did not try", i, seat)
				}
				if prev, dup := owner[seat]; dup {
					t.Fatalf("seat %s won by %s and %s", seat, prev, bookings[i])
				}
				owner[seat] = bookings[i]
			}
		}
		if len(owner) != len(pool) {
			t.Fatalf("%d of the %d seats tried were won: %v", len(owner), len(pool), owner)
		}
		got, err := s.ShowHolds(ctx, show)
		if err != nil || len(got) != len(pool) {
			t.Fatalf("show holds: %d, %v; want %d", len(got), err, len(pool))
		}
		for _, h := range got {
			if owner[h.Seat] != h.BookingID {
				t.Fatalf("hold %+v, but %s won it", h, owner[h.Seat])
			}
		}
	})

	run("MissingHolds/SeatsThisBookingHoldsNot", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, a, b := s.NewID(), s.NewID(), s.NewID()
		exp := msNow().Add(time.Hour)
		if _, err := s.InsertHolds(ctx, holds(show, a, exp, "A1", "A2")); err != nil {
			t.Fatal(err)
		}
		if got, err := s.MissingHolds(ctx, show, a, []string{"A1", "A2", "A3"}); err != nil || !sameSet(got, []string{"A3"}) {
			t.Fatalf("a's missing: %v, %v; want [A3]", got, err)
		}
		if got, err := s.MissingHolds(ctx, show, b, []string{"A1", "A3"}); err != nil || !sameSet(got, []string{"A1", "A3"}) {
			t.Fatalf("b's missing (A1 is a's): %v, %v", got, err)
		}
		if got, err := s.MissingHolds(ctx, show, a, []string{"A1"}); err != nil || len(got) != 0 {
			t.Fatalf("none missing: %v, %v", got, err)
		}
	})

	run("ReleaseHolds/OwnHoldsOnly_SeatFreeAgain", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, a, b := s.NewID(), s.NewID(), s.NewID()
		exp := msNow().Add(time.Hour)
		if _, err := s.InsertHolds(ctx, holds(show, a, exp, "A1", "A2")); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseHolds(ctx, show, b, []string{"A1", "A9"}); err != nil {
			t.Fatalf("release of seats b does not hold: %v", err)
		}
		if got, _ := s.MissingHolds(ctx, show, a, []string{"A1", "A2"}); len(got) != 0 {
			t.Fatalf("b's release took a's holds: a misses %v", got)
		}
		if err := s.ReleaseHolds(ctx, show, a, []string{"A1"}); err != nil {
			t.Fatal(err)
		}
		if won, err := s.InsertHolds(ctx, holds(show, b, exp, "A1", "A2")); err != nil || !sameSet(won, []string{"A1"}) {
			t.Fatalf("after a released A1, b won %v, %v; want [A1]", won, err)
		}
		if err := s.ReleaseHolds(ctx, show, a, []string{"A1"}); err != nil {
			t.Fatalf("a releasing A1 again (now b's): %v", err)
		}
		if got, _ := s.MissingHolds(ctx, show, b, []string{"A1"}); len(got) != 0 {
			t.Fatal("a's second release took b's hold on A1")
		}
	})

	run("MarkSold/SetsTheHint_AllHoldsListsEveryShow", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, other, a := s.NewID(), s.NewID(), s.NewID()
		exp := msNow().Add(time.Hour)
		if _, err := s.InsertHolds(ctx, holds(show, a, exp, "A1", "A2")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.InsertHolds(ctx, holds(other, a, exp, "C1")); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSold(ctx, holds(show, a, exp, "A1")); err != nil {
			t.Fatal(err)
		}
		got, err := s.ShowHolds(ctx, show)
		if err != nil || len(got) != 2 {
			t.Fatalf("show holds %+v, %v", got, err)
		}
		for _, h := range got {
			if h.Sold != (h.Seat == "A1") {
				t.Fatalf("hold %+v: sold %v, want only A1 sold", h, h.Sold)
			}
		}
		all, err := s.AllHolds(ctx)
		if err != nil || len(all) != 3 {
			t.Fatalf("all holds %+v, %v; want 3", all, err)
		}
	})

	run(fmt.Sprintf("ClaimSlots/Race%dOneSlot_ExactlyOneWins_ReleaseOwnOnly", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		user, other := s.NewID(), s.NewID()
		bookings := make([]string, racetest.Racers)
		for i := range bookings {
			bookings[i] = s.NewID()
		}
		won := make([][]int, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { won[i], errsOf[i] = s.ClaimSlots(ctx, user, bookings[i], []int{0}) })
		winner := -1
		for i := range won {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("claim %d: %v (a lost slot is not an error)", i, errsOf[i])
			case len(won[i]) > 0 && winner >= 0:
				t.Fatalf("claims %d and %d both won slot 0", winner, i)
			case len(won[i]) > 0:
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("nobody won slot 0")
		}
		a, b := bookings[winner], s.NewID()
		if got, err := s.ClaimSlots(ctx, user, b, []int{0, 1}); err != nil || !slices.Equal(got, []int{1}) {
			t.Fatalf("b claims 0 and 1: won %v, %v; want [1]", got, err)
		}
		if got, err := s.ClaimSlots(ctx, other, b, []int{0}); err != nil || !slices.Equal(got, []int{0}) {
			t.Fatalf("another user's slot 0: won %v, %v", got, err)
		}
		if err := s.ReleaseSlots(ctx, user, b, []int{0}); err != nil {
			t.Fatalf("b releases slot 0, which is a's: %v", err)
		}
		c := s.NewID()
		if got, err := s.ClaimSlots(ctx, user, c, []int{0}); err != nil || len(got) != 0 {
			t.Fatalf("b's release freed a's slot 0: c won %v, %v", got, err)
		}
		if err := s.ReleaseSlots(ctx, user, a, []int{0}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ClaimSlots(ctx, user, c, []int{0}); err != nil || !slices.Equal(got, []int{0}) {
			t.Fatalf("after a released slot 0, c won %v, %v", got, err)
		}
		if got, err := s.ClaimSlots(ctx, user, c, nil); err != nil || len(got) != 0 {
			t.Fatalf("no slots: %v, %v", got, err)
		}
	})

	run("Intents/AddIdempotent_BucketsEarliestFirst_DeleteDrop", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, user := s.NewID(), s.NewID()
		base := msNow()
		soon := intent(s, show, user, base.Add(time.Minute), 0)
		late := intent(s, show, user, base.Add(time.Hour), 0)
		again := intent(s, show, user, soon.ExpiresAt, 1) // the same booking's next round
		again.BookingID, again.ID = soon.BookingID, core.IntentID(soon.BookingID, 1)
		for _, in := range []core.Intent{soon, late, again, soon} {
			if err := s.AddIntent(ctx, in); err != nil {
				t.Fatalf("add %s: %v (one there already is success)", in.ID, err)
			}
		}
		buckets, err := s.IntentBuckets(ctx)
		if err != nil || len(buckets) < 2 {
			t.Fatalf("buckets %+v, %v; want at least 2", buckets, err)
		}
		if !slices.IsSortedFunc(buckets, func(x, y core.IntentBucket) int { return x.Start.Compare(y.Start) }) {
			t.Fatalf("buckets not earliest first: %+v", buckets)
		}
		bucketOf := func(in core.Intent) core.IntentBucket {
			t.Helper()
			for _, b := range buckets {
				if !in.ExpiresAt.Before(b.Start) && in.ExpiresAt.Before(b.End) {
					return b
				}
			}
			t.Fatalf("no bucket holds %v: %+v", in.ExpiresAt, buckets)
			return core.IntentBucket{}
		}
		first, second := bucketOf(soon), bucketOf(late)
		got, err := s.BucketIntents(ctx, first.Name)
		if err != nil || len(got) != 2 {
			t.Fatalf("intents of %s: %+v, %v; want 2 (one copy each)", first.Name, got, err)
		}
		slices.SortFunc(got, func(x, y core.Intent) int { return strings.Compare(x.ID, y.ID) })
		if !sameIntent(got[0], soon) || !sameIntent(got[1], again) {
			t.Fatalf("intents of %s:\n%+v\nwant\n%+v", first.Name, got, []core.Intent{soon, again})
		}
		if got, err := s.BucketIntents(ctx, second.Name); err != nil || len(got) != 1 || !sameIntent(got[0], late) {
			t.Fatalf("intents of %s: %+v, %v", second.Name, got, err)
		}
		if err := s.DeleteIntents(ctx, soon.ExpiresAt, []string{soon.ID, "not-there:0"}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.BucketIntents(ctx, first.Name); err != nil || len(got) != 1 || got[0].ID != again.ID {
			t.Fatalf("after deleting %s: %+v, %v", soon.ID, got, err)
		}
		for range 2 {
			if err := s.DropIntentBucket(ctx, second.Name); err != nil {
				t.Fatalf("drop %s (again: gone already is no error): %v", second.Name, err)
			}
		}
		after, err := s.IntentBuckets(ctx)
		if err != nil || slices.ContainsFunc(after, func(b core.IntentBucket) bool { return b.Name == second.Name }) {
			t.Fatalf("buckets after the drop: %+v, %v", after, err)
		}
		if got, err := s.BucketIntents(ctx, second.Name); err != nil || len(got) != 0 {
			t.Fatalf("a dropped bucket reads %+v, %v; want nothing", got, err)
		}
		if n, err := s.ForwardLegacyIntents(ctx, 100); err != nil || n != 0 {
			t.Fatalf("forward from an empty legacy queue: %d, %v", n, err)
		}
	})

	run("ShowIntents/TheShowsIntentsInEveryBucket", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show, other, user := s.NewID(), s.NewID(), s.NewID()
		base := msNow()
		var want []string
		for i, d := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour} {
			in := intent(s, show, user, base.Add(d), 0)
			want = append(want, in.ID)
			if err := s.AddIntent(ctx, in); err != nil {
				t.Fatal(err)
			}
			if err := s.AddIntent(ctx, intent(s, other, user, base.Add(d+time.Duration(i)*time.Second), 0)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ShowIntents(ctx, show)
		ids := make([]string, len(got))
		for i, in := range got {
			ids[i] = in.ID
		}
		if err != nil || !sameSet(ids, want) {
			t.Fatalf("show intents %v, %v; want %v", ids, err, want)
		}
		if got, err := s.ShowIntents(ctx, s.NewID()); err != nil || len(got) != 0 {
			t.Fatalf("intents of a show without any: %+v, %v", got, err)
		}
	})

	run(fmt.Sprintf("ShowDeleting/Race%dMark_OneTrue_ReadUnmark", racetest.Racers), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		show := s.NewID()
		if _, ok, err := s.ShowDeleting(ctx, show); err != nil || ok {
			t.Fatalf("unmarked show: %v, %v", ok, err)
		}
		before := time.Now().Add(-time.Minute)
		oneTrue(t, "mark of one show", func() (bool, error) { return s.MarkShowDeleting(ctx, show) })
		at, ok, err := s.ShowDeleting(ctx, show)
		if err != nil || !ok || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Fatalf("marked show: %v %v, %v; want marked about now", at, ok, err)
		}
		if ok, err := s.MarkShowDeleting(ctx, show); err != nil || ok {
			t.Fatalf("a later mark: %v, %v; want false", ok, err)
		}
		for range 2 {
			if err := s.UnmarkShowDeleting(ctx, show); err != nil {
				t.Fatalf("unmark (again: gone already is no error): %v", err)
			}
		}
		if _, ok, err := s.ShowDeleting(ctx, show); err != nil || ok {
			t.Fatalf("unmarked show: %v, %v", ok, err)
		}
		if ok, err := s.MarkShowDeleting(ctx, show); err != nil || !ok {
			t.Fatalf("mark after unmark: %v, %v; want true", ok, err)
		}
	})

	run("Migrated/FalseUntilSet_SetAgainIsFine", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		if done, err := s.Migrated(ctx); err != nil || done {
			t.Fatalf("new store migrated: %v, %v", done, err)
		}
		for range 2 {
			if err := s.SetMigrated(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if done, err := s.Migrated(ctx); err != nil || !done {
			t.Fatalf("after SetMigrated: %v, %v", done, err)
		}
	})
}

// oneTrue races racetest.Racers calls of f: exactly one must answer true, none an error.
func oneTrue(t *testing.T, what string, f func() (bool, error)) {
	t.Helper()
	won := make([]bool, racetest.Racers)
	errsOf := make([]error, racetest.Racers)
	racetest.Race(racetest.Racers, func(i int) { won[i], errsOf[i] = f() })
	n := 0
	for i := range won {
		if errsOf[i] != nil {
			t.Fatalf("%s: call %d: %v", what, i, errsOf[i])
		}
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%s: %d of %d calls answered true; want exactly 1", what, n, racetest.Racers)
	}
}

func msNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func holds(show, bookingID string, exp time.Time, seats ...string) []core.Hold {
	out := make([]core.Hold, len(seats))
	for i, seat := range seats {
		out[i] = core.Hold{ShowID: show, Seat: seat, BookingID: bookingID, ExpiresAt: exp}
	}
	return out
}

func intent(s booking.BookingStore, show, user string, exp time.Time, round int) core.Intent {
	id := s.NewID()
	return core.Intent{ID: core.IntentID(id, round), BookingID: id, ShowID: show, UserID: user,
		Seats: []string{"A1", "A2"}, Slots: []int{0, 1}, ExpiresAt: exp}
}

func sameIntent(a, b core.Intent) bool {
	return a.ID == b.ID && a.BookingID == b.BookingID && a.ShowID == b.ShowID && a.UserID == b.UserID &&
		slices.Equal(a.Seats, b.Seats) && slices.Equal(a.Slots, b.Slots) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func sameEntry(a, b core.SeatLogEntry) bool {
	if a.ShowID != b.ShowID || a.Seq != b.Seq || len(a.Ops) != len(b.Ops) {
		return false
	}
	for i := range a.Ops {
		x, y := a.Ops[i], b.Ops[i]
		if x.Kind != y.Kind || x.BookingID != y.BookingID || !slices.Equal(x.Seats, y.Seats) || !x.ExpiresAt.Equal(y.ExpiresAt) {
			return false
		}
	}
	return true
}

func sameSnapshot(a, b core.SeatSnapshot) bool {
	if a.ShowID != b.ShowID || a.Seq != b.Seq || !sameSet(a.Sold, b.Sold) || len(a.Seats) != len(b.Seats) {
		return false
	}
	for i := range a.Seats {
		x, y := a.Seats[i], b.Seats[i]
		if x.Seat != y.Seat || x.BookingID != y.BookingID || !x.ExpiresAt.Equal(y.ExpiresAt) || x.Sold != y.Sold {
			return false
		}
	}
	return true
}

// sameSet reports whether a and b hold the same strings, whatever their order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
