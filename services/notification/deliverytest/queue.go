package deliverytest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/notification"
)

// The suite of the delivery queue and generations (see the package comment).

func runQueue(run runFunc) {
	run("Enqueue/ShardHeadInInsertionOrder_QueuedAlreadyLeftAsItIs", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		var shard3 []notification.QueueEntry
		for i := range 4 {
			shard3 = append(shard3, entry(idInShard(3), 0, at.Add(time.Duration(i)*time.Second)))
		}
		other := entry(idInShard(5), 0, at)
		for _, e := range shard3[:2] {
			if err := s.Enqueue(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Enqueue(ctx, other, shard3[2], shard3[3]); err != nil {
			t.Fatal(err)
		}
		if got := head(t, ctx, s, 3, 10); !sameEntries(got, shard3) {
			t.Fatalf("shard 3:\n%+v\nwant, in insertion order\n%+v", got, shard3)
		}
		if got := head(t, ctx, s, 3, 2); !sameEntries(got, shard3[:2]) {
			t.Fatalf("shard 3, limit 2: %+v", got)
		}
		if got := head(t, ctx, s, 5, 10); !sameEntries(got, []notification.QueueEntry{other}) {
			t.Fatalf("shard 5: %+v", got)
		}
		changed := shard3[1]
		changed.Subject, changed.QueuedAt = "changed", at.Add(time.Hour)
		if err := s.Enqueue(ctx, changed, entry(idInShard(3), 0, at)); err != nil {
			t.Fatalf("enqueue of an entry queued already (with a new one): %v", err)
		}
		got := head(t, ctx, s, 3, 10)
		if len(got) != 5 || !sameEntries(got[:4], shard3) {
			t.Fatalf("shard 3 after the repeat: %+v; want the first entries as they were, then the new one", got)
		}
		if n, err := s.QueueLen(ctx); err != nil || n != 6 {
			t.Fatalf("queue length %d, %v; want 6", n, err)
		}
	})

	run("Dequeue/RemovesThoseNamed_MissingNoError_MalformedKeyErrsRemovesNothing", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		var es []notification.QueueEntry
		for i := range 6 {
			es = append(es, entry(idInShard(i%2), 0, at))
		}
		if err := s.Enqueue(ctx, es...); err != nil {
			t.Fatal(err)
		}
		if err := s.Dequeue(ctx, []string{es[0].Key}); err != nil { // one
			t.Fatal(err)
		}
		if err := s.Dequeue(ctx, []string{es[1].Key, es[2].Key, es[4].Key, notification.AssignmentKey(idInShard(0), 0)}); err != nil { // several, shards 0 and 1, one missing
			t.Fatal(err)
		}
		if err := s.Dequeue(ctx, []string{es[3].Key, "not-a-key"}); err == nil {
			t.Fatal("dequeue of a malformed key: no error")
		}
		left := append(head(t, ctx, s, 0, 10), head(t, ctx, s, 1, 10)...)
		if !sameEntries(sortedByKey(left), sortedByKey([]notification.QueueEntry{es[3], es[5]})) {
			t.Fatalf("left %+v, want entries 3 and 5", left)
		}
		if err := s.Dequeue(ctx, []string{es[0].Key}); err != nil {
			t.Fatalf("dequeue of an entry gone already: %v", err)
		}
		if n, err := s.QueueLen(ctx); err != nil || n != 2 {
			t.Fatalf("queue length %d, %v; want 2", n, err)
		}
	})

	run("Create/QueuesGenerationZero_GenerationStarted", func(t *testing.T, ctx context.Context, s Store) {
		tk := newTicket(t, ctx, s)
		got := head(t, ctx, s, notification.QueueShard(tk.ID), 10)
		if len(got) != 1 || got[0].Key != notification.AssignmentKey(tk.ID, 0) || got[0].Ticket != tk.ID ||
			got[0].Generation != 0 || got[0].Subject != tk.Subject || got[0].Content != tk.Content ||
			!slices.Equal(got[0].RecipientEmails, tk.RecipientEmails) {
			t.Fatalf("queue after create: %+v, want generation 0 of %s", got, tk.ID.Hex())
		}
		for gen, want := range []bool{true, false} {
			if ok, err := s.GenerationStarted(ctx, tk.ID, gen); err != nil || ok != want {
				t.Fatalf("generation %d started: %v, %v; want %v", gen, ok, err, want)
			}
		}
	})

	run(fmt.Sprintf("Requeue/Race%dOneGeneration_OneWinsRestConflict_GenerationStarted", racetest.Racers), func(t *testing.T, ctx context.Context, s Store) {
		tk := newTicket(t, ctx, s)
		key := notification.AssignmentKey(tk.ID, 0)
		if err := s.Dequeue(ctx, []string{key}); err != nil {
			t.Fatal(err)
		}
		b := newBatch(msNow(), notification.Member{Ticket: tk.ID})
		insertAndAssign(t, ctx, s, b)
		if _, err := s.Decide(ctx, []notification.Outcome{outcome(tk.ID, 0, notification.StatusFailed, msNow())}); err != nil {
			t.Fatal(err)
		}
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { _, errsOf[i] = s.Requeue(ctx, tk.ID) })
		racetest.OneWins(t, "re-queue of one generation", errsOf, errs.Conflict)
		for gen, want := range []bool{true, true, false} {
			if ok, err := s.GenerationStarted(ctx, tk.ID, gen); err != nil || ok != want {
				t.Fatalf("generation %d started: %v, %v; want %v", gen, ok, err, want)
			}
		}
		got := head(t, ctx, s, notification.QueueShard(tk.ID), 10)
		if len(got) != 1 || got[0].Key != notification.AssignmentKey(tk.ID, 1) {
			t.Fatalf("queue after the re-queue: %+v, want generation 1 once", got)
		}
		if g, err := s.Get(ctx, tk.ID); err != nil || g.Generation != 1 || g.Status != notification.StatusPending {
			t.Fatalf("ticket after the re-queue: %+v, %v", g, err)
		}
	})
}
