package deliverytest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/notification"
)

// The suite of outcomes, claims, the tally and the projection queue (see the package comment).

func runDecisions(run runFunc) {
	run(fmt.Sprintf("Decide/Race%dOneKey_FirstKept_RestToldAlready", racetest.Racers), func(t *testing.T, ctx context.Context, s Store) {
		id := newObjectID()
		key := notification.AssignmentKey(id, 0)
		tried := make([]notification.Outcome, racetest.Racers)
		for i := range tried {
			st := notification.StatusSuccess
			if i%2 == 1 {
				st = notification.StatusFailed
			}
			tried[i] = outcome(id, 0, st, msNow().Add(time.Duration(i)*time.Millisecond))
			tried[i].Attempts = i + 1
		}
		already := make([]map[string]bool, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { already[i], errsOf[i] = s.Decide(ctx, []notification.Outcome{tried[i]}) })
		winner := -1
		for i := range already {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("decide %d: %v", i, errsOf[i])
			case !already[i][key] && winner >= 0:
				t.Fatalf("decides %d and %d both kept", winner, i)
			case !already[i][key]:
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("every decide was told already: none kept")
		}
		got, err := s.Outcomes(ctx, []string{key})
		if err != nil || got[key] == nil || !sameOutcome(*got[key], tried[winner]) {
			t.Fatalf("outcome in force: %+v, %v; want decide %d's %+v", got[key], err, winner, tried[winner])
		}
		// Several at once, some decided already: only those are told.
		other := outcome(newObjectID(), 2, notification.StatusSuccess, msNow())
		already2, err := s.Decide(ctx, []notification.Outcome{tried[0], other})
		if err != nil || len(already2) != 1 || !already2[key] {
			t.Fatalf("decide of a decided and a new one: already %v, %v; want %s alone", already2, err, key)
		}
		got, err = s.Outcomes(ctx, []string{key, other.Key, notification.AssignmentKey(newObjectID(), 0)})
		if err != nil || len(got) != 2 || !sameOutcome(*got[other.Key], other) || !sameOutcome(*got[key], tried[winner]) {
			t.Fatalf("outcomes: %+v, %v; want the two decided alone", got, err)
		}
	})

	run(fmt.Sprintf("Claim/Race%d_OneWinsClaimOne_RestHeld", racetest.Racers), func(t *testing.T, ctx context.Context, s Store) {
		batch := notification.NewID().Hex()
		now := msNow()
		n, ok := claimRace(t, ctx, s, batch, 0, now, now.Add(time.Minute))
		if n != 1 || !ok {
			t.Fatalf("first lease: claim %d, %v; want 1", n, ok)
		}
		if n, ok, err := s.Claim(ctx, batch, 1, "late", now.Add(time.Second), now.Add(time.Minute)); err != nil || ok {
			t.Fatalf("a claim while the lease holds: %d %v, %v; want not ok", n, ok, err)
		}
		// The lease ends by its time: the next claims race for claim 2.
		later := now.Add(2 * time.Minute)
		if n, ok := claimRace(t, ctx, s, batch, 1, later, later.Add(time.Minute)); n != 2 || !ok {
			t.Fatalf("after the lease ended: claim %d, %v; want 2", n, ok)
		}
	})

	run("Claim/ReleaseEndsTheLease_HintTooHighWalksBack_HintTooLowWalksOn", func(t *testing.T, ctx context.Context, s Store) {
		batch := notification.NewID().Hex()
		now := msNow()
		claim := func(from int, at time.Time) (int, bool) {
			t.Helper()
			n, ok, err := s.Claim(ctx, batch, from, "h", at, at.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return n, ok
		}
		if n, ok := claim(0, now); n != 1 || !ok {
			t.Fatalf("first claim: %d %v", n, ok)
		}
		if err := s.ReleaseClaim(ctx, batch, 1, now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, ok := claim(1, now.Add(2*time.Second)); n != 2 || !ok {
			t.Fatalf("after release: %d %v; want claim 2", n, ok)
		}
		if err := s.ReleaseClaim(ctx, batch, 2, now.Add(3*time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, ok := claim(40, now.Add(4*time.Second)); n != 3 || !ok {
			t.Fatalf("hint 40 (too high): %d %v; want claim 3", n, ok)
		}
		if err := s.ReleaseClaim(ctx, batch, 3, now.Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, ok := claim(0, now.Add(6*time.Second)); n != 4 || !ok {
			t.Fatalf("hint 0 (too low): %d %v; want claim 4", n, ok)
		}
		if n, ok := claim(4, now.Add(7*time.Second)); ok {
			t.Fatalf("claim while 4 holds: %d %v; want not ok", n, ok)
		}
	})

	run(fmt.Sprintf("AppendTally/Race%dOneKey_CountedOnce_Race%dKeys_EachCounted", racetest.Racers, racetest.Racers), func(t *testing.T, ctx context.Context, s Store) {
		errsOf := make([]error, 2*racetest.Racers)
		racetest.Race(2*racetest.Racers, func(i int) {
			if i < racetest.Racers {
				errsOf[i] = s.AppendTally(ctx, "batch:one", notification.Tally{Success: 3, Failed: 1})
			} else {
				errsOf[i] = s.AppendTally(ctx, fmt.Sprint("requeue:", i), notification.Tally{Requeued: 1})
			}
		})
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if got, err := s.ReadTally(ctx); err != nil || got != (notification.Tally{Success: 3, Failed: 1, Requeued: racetest.Racers}) {
			t.Fatalf("tally %+v, %v; want 3/1/%d", got, err, racetest.Racers)
		}
	})

	run("ReadTally/ExactOverManyEntries_RepeatsNotCounted", func(t *testing.T, ctx context.Context, s Store) {
		if got, err := s.ReadTally(ctx); err != nil || got != (notification.Tally{}) {
			t.Fatalf("empty tally %+v, %v", got, err)
		}
		const n = 150 // past any fold a store makes every 64 or 100 entries
		want := notification.Tally{}
		for i := range n {
			d := notification.Tally{Success: int64(i % 3), Failed: int64(i % 2)}
			if err := s.AppendTally(ctx, fmt.Sprint("batch:", i), d); err != nil {
				t.Fatal(err)
			}
			want = want.Add(d)
			if i%50 == 49 {
				if got, err := s.ReadTally(ctx); err != nil || got != want {
					t.Fatalf("after %d: %+v, %v; want %+v", i+1, got, err, want)
				}
				if err := s.AppendTally(ctx, fmt.Sprint("batch:", i-7), notification.Tally{Success: 1000}); err != nil {
					t.Fatalf("a repeated key: %v", err)
				}
			}
		}
		for range 2 {
			if got, err := s.ReadTally(ctx); err != nil || got != want {
				t.Fatalf("after %d: %+v, %v; want %+v", n, got, err, want)
			}
		}
	})

	run("Projection/QueuedOnce_OldestFirst_DoneRemoves", func(t *testing.T, ctx context.Context, s Store) {
		ids := []string{"b1", "b2", "b3"}
		for _, id := range append(slices.Clone(ids), "b1") {
			if err := s.EnqueueProjection(ctx, id); err != nil {
				t.Fatalf("enqueue projection of %s (again: no error): %v", id, err)
			}
		}
		for _, limit := range []int{2, 10} {
			if got, err := s.ProjectionHead(ctx, limit); err != nil || !slices.Equal(got, ids[:min(limit, 3)]) {
				t.Fatalf("head, limit %d: %v, %v", limit, got, err)
			}
		}
		for range 2 {
			if err := s.ProjectionDone(ctx, "b1"); err != nil {
				t.Fatalf("done (again: gone already is no error): %v", err)
			}
		}
		if got, err := s.ProjectionHead(ctx, 10); err != nil || !slices.Equal(got, ids[1:]) {
			t.Fatalf("head after b1 done: %v, %v", got, err)
		}
	})

	run("ProjectMember/TicketReadsItsOutcome", func(t *testing.T, ctx context.Context, s Store) {
		for _, withOutcome := range []bool{true, false} {
			tk := newTicket(t, ctx, s)
			b := newBatch(msNow(), notification.Member{Ticket: tk.ID})
			insertAndAssign(t, ctx, s, b)
			o := outcome(tk.ID, 0, notification.StatusSuccess, msNow())
			if _, err := s.Decide(ctx, []notification.Outcome{o}); err != nil {
				t.Fatal(err)
			}
			arg := &o
			if !withOutcome {
				arg = nil // the caller did not read it: the store does
			}
			if err := s.ProjectMember(ctx, b.Members[0], b, arg); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, tk.ID)
			if err != nil || got.Status != notification.StatusSuccess || got.SentAt == nil || !got.SentAt.Equal(*o.SentAt) ||
				got.ProviderMessageID != o.ProviderMessageID || got.Batch != b.ID {
				t.Fatalf("ticket after projecting (outcome given %v): %+v, %v", withOutcome, got, err)
			}
		}
	})
}
