// Package deliverytest is the conformance suite of the notification service's delivery store:
// the delivery primitives the sweeper (jobs/sweeper) works with, as
// services/notification/mongostore.Store has them, in the manner of riverqueue/river's driver
// suite (riverdrivertest): one function runs every method's contract, and its concurrency
// contract, against a store an implementation's own tests make. It names the methods itself
// (Store), so that it depends on no interface of the sweeper's.
//
// The contract it checks (subtest names say the same; see notification/delivery.go for the
// records):
//
//   - The delivery queue: Enqueue inserts entries, an entry queued already is left as it is
//     (no error); QueueHead reads a shard's entries in the order they were inserted, up to a
//     limit; QueueLen counts every shard's; Dequeue removes the entries named (missing ones
//     are no error; a key that names no ticket id is an error and removes nothing). Create
//     queues a ticket's generation 0. GenerationStarted is true for generation 0 and for a
//     later one once its re-queue is decided: of many Requeues of one FAILED generation at
//     once, exactly one succeeds and every other is errs.Conflict.
//   - Batches: InsertBatch stores a batch and opens it (a second insert of its id fails);
//     Batch reads it (nil when there is none); OpenBatches lists the open entries in the
//     order opened, up to a limit; SaveBatch replaces the batch and, unless it is done, its
//     open entry; CloseBatch removes the open entry, DiscardBatch the batch and the entry
//     (each: gone already is no error).
//   - Assign is an insert per ticket generation into a unique key: of many batches assigning
//     one ticket generation at once exactly one owns it and every other is told it lost that
//     index (and wins its others). Members keeps, of a batch not yet verified, the members
//     whose assignment names it (and records that in the batch), and returns their tickets in
//     id order; a verified batch's members are taken as they are.
//   - Decide is an insert per outcome into the ticket generation's key: the first outcome is
//     kept; every later or concurrent one is told, by its key in already (of many at once on
//     one key, exactly one is not). Outcomes reads those that exist.
//   - Claim takes a batch's next lease: claim n is won by one insert, only once claim n-1 has
//     ended; of many Claims at once exactly one wins (n), the others answer ok=false while
//     the lease holds. ReleaseClaim ends a lease at once; a hint too high walks back.
//   - AppendTally records a change of the figures under a key once: of many appends of one
//     key at once it is counted once, of many keys at once each is counted; ReadTally sums
//     them exactly however many there are.
//   - The projection queue: EnqueueProjection of a batch queued already is no error and
//     keeps one entry; ProjectionHead reads the oldest first, up to a limit; ProjectionDone
//     removes one (gone already is no error). ProjectMember leaves the ticket reading its
//     outcome.
package deliverytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
)

// Store is the delivery store's method set the suite exercises: the delivery primitives
// jobs/sweeper uses (QueueLen stands for its backlog figure, which adds the open batches'
// sizes), and the ticket methods that give them tickets to deliver.
type Store interface {
	Create(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error)
	Get(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error)
	Requeue(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error)

	Enqueue(ctx context.Context, entries ...notification.QueueEntry) error
	QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error)
	QueueLen(ctx context.Context) (int64, error)
	Dequeue(ctx context.Context, keys []string) error
	GenerationStarted(ctx context.Context, ticket bson.ObjectID, gen int) (bool, error)

	InsertBatch(ctx context.Context, b *notification.Batch) error
	Batch(ctx context.Context, id string) (*notification.Batch, error)
	SaveBatch(ctx context.Context, b *notification.Batch) error
	CloseBatch(ctx context.Context, id string) error
	DiscardBatch(ctx context.Context, id string) error
	OpenBatches(ctx context.Context, limit int) ([]notification.OpenBatch, error)
	Assign(ctx context.Context, b *notification.Batch, members []notification.Member) (map[int]bool, error)
	Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error)
	Claim(ctx context.Context, batchID string, from int, holder string, now, until time.Time) (int, bool, error)
	ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error

	Decide(ctx context.Context, outcomes []notification.Outcome) (map[string]bool, error)
	Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error)

	AppendTally(ctx context.Context, key string, d notification.Tally) error
	ReadTally(ctx context.Context) (notification.Tally, error)

	EnqueueProjection(ctx context.Context, batchID string) error
	ProjectionHead(ctx context.Context, limit int) ([]string, error)
	ProjectionDone(ctx context.Context, batchID string) error
	ProjectMember(ctx context.Context, m notification.Member, b *notification.Batch, o *notification.Outcome) error
}

// Racers is how many goroutines the race subtests start at once on one key.
const Racers = 16

// RunDeliveryStore runs the suite. newStore returns a new, empty store of its own on each call
// (the subtests run in parallel), ready for use (indexes made).
func RunDeliveryStore(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	run := func(name string, f func(t *testing.T, ctx context.Context, s Store)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, t.Context(), newStore(t))
		})
	}
	runQueue(run)
	runBatches(run)
	runDecisions(run)
}

type runFunc func(name string, f func(t *testing.T, ctx context.Context, s Store))

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

	run(fmt.Sprintf("Requeue/Race%dOneGeneration_OneWinsRestConflict_GenerationStarted", Racers), func(t *testing.T, ctx context.Context, s Store) {
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
		errsOf := make([]error, Racers)
		race(Racers, func(i int) { _, errsOf[i] = s.Requeue(ctx, tk.ID) })
		oneWins(t, "re-queue of one generation", errsOf, errs.Conflict)
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

func runBatches(run runFunc) {
	run("InsertBatch/ReadBack_Opened_SecondInsertFails", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		b := newBatch(at, notification.Member{Ticket: newObjectID()}, notification.Member{Ticket: newObjectID(), Generation: 2})
		if err := s.InsertBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := s.Batch(ctx, b.ID)
		if err != nil || got == nil || !sameBatch(*got, *b) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, b)
		}
		open := openBatches(t, ctx, s, 10)
		if len(open) != 1 || !sameOpen(open[0], notification.OpenBatch{ID: b.ID, Due: b.NextAttemptAt, Size: b.Size, Oldest: b.Oldest, Claims: b.Claims}) {
			t.Fatalf("open batches %+v, want %s's entry", open, b.ID)
		}
		again := *b
		again.Size = 99
		if err := s.InsertBatch(ctx, &again); err == nil {
			t.Fatal("a second insert of the batch's id: no error")
		}
		if got, _ := s.Batch(ctx, b.ID); got.Size != b.Size {
			t.Fatalf("after the second insert: %+v, want the first", got)
		}
		if got, err := s.Batch(ctx, bson.NewObjectID().Hex()); err != nil || got != nil {
			t.Fatalf("unknown batch: %+v, %v; want nil", got, err)
		}
	})

	run("OpenBatches/InOrderOpened_UpToLimit", func(t *testing.T, ctx context.Context, s Store) {
		var ids []string
		for i := range 5 {
			b := newBatch(msNow().Add(-time.Duration(i)*time.Minute), notification.Member{Ticket: newObjectID()})
			if err := s.InsertBatch(ctx, b); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, b.ID)
		}
		for _, limit := range []int{2, 10} {
			open := openBatches(t, ctx, s, limit)
			got := make([]string, len(open))
			for i, o := range open {
				got[i] = o.ID
			}
			if want := ids[:min(limit, len(ids))]; !slices.Equal(got, want) {
				t.Fatalf("open batches, limit %d: %v, want %v", limit, got, want)
			}
		}
	})

	run("SaveBatch/ReplacesBatchAndOpenEntry_DoneLeavesEntry_CloseRemovesIt", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		b := newBatch(at, notification.Member{Ticket: newObjectID()})
		if err := s.InsertBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		b.Attempts, b.Claims, b.NextAttemptAt, b.LastError = 1, 3, at.Add(time.Minute), "429 slow down"
		b.Errors = append(b.Errors, notification.AttemptError{At: at, Attempt: 1, Error: "429 slow down"})
		b.UpdatedAt = at.Add(time.Second)
		if err := s.SaveBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Batch(ctx, b.ID); err != nil || got == nil || !sameBatch(*got, *b) {
			t.Fatalf("saved\n%+v, %v\nwant\n%+v", got, err, b)
		}
		want := notification.OpenBatch{ID: b.ID, Due: b.NextAttemptAt, Size: b.Size, Oldest: b.Oldest, Claims: 3}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || !sameOpen(open[0], want) {
			t.Fatalf("open entry %+v, want %+v", open, want)
		}
		b.Done, b.Attempts = true, 2
		if err := s.SaveBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Batch(ctx, b.ID); got == nil || !got.Done || got.Attempts != 2 {
			t.Fatalf("done batch read back %+v", got)
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || !sameOpen(open[0], want) {
			t.Fatalf("open entry of a done batch not yet closed: %+v, want it as it was", open)
		}
		for range 2 {
			if err := s.CloseBatch(ctx, b.ID); err != nil {
				t.Fatalf("close (again: gone already is no error): %v", err)
			}
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 0 {
			t.Fatalf("open after close: %+v", open)
		}
		if got, _ := s.Batch(ctx, b.ID); got == nil || !got.Done {
			t.Fatalf("a closed batch is kept: %+v", got)
		}
	})

	run("DiscardBatch/RemovesBatchAndEntry_GoneAlreadyNoError", func(t *testing.T, ctx context.Context, s Store) {
		b, kept := newBatch(msNow(), notification.Member{Ticket: newObjectID()}), newBatch(msNow(), notification.Member{Ticket: newObjectID()})
		for _, x := range []*notification.Batch{b, kept} {
			if err := s.InsertBatch(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if err := s.DiscardBatch(ctx, b.ID); err != nil {
				t.Fatalf("discard (again: gone already is no error): %v", err)
			}
		}
		if got, err := s.Batch(ctx, b.ID); err != nil || got != nil {
			t.Fatalf("discarded batch: %+v, %v", got, err)
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || open[0].ID != kept.ID {
			t.Fatalf("open batches %+v, want %s's alone", open, kept.ID)
		}
		if err := s.DiscardBatch(ctx, bson.NewObjectID().Hex()); err != nil {
			t.Fatalf("discard of a batch never made: %v", err)
		}
	})

	run(fmt.Sprintf("Assign/Race%dBatchesOneTicket_OneOwnsIt_OthersWinTheirOwn", Racers), func(t *testing.T, ctx context.Context, s Store) {
		shared := newTicket(t, ctx, s)
		batches := make([]*notification.Batch, Racers)
		own := make([]*notification.Ticket, Racers)
		for i := range batches {
			own[i] = newTicket(t, ctx, s)
			batches[i] = newBatch(msNow(), notification.Member{Ticket: own[i].ID}, notification.Member{Ticket: shared.ID})
			if err := s.InsertBatch(ctx, batches[i]); err != nil {
				t.Fatal(err)
			}
		}
		lost := make([]map[int]bool, Racers)
		errsOf := make([]error, Racers)
		race(Racers, func(i int) { lost[i], errsOf[i] = s.Assign(ctx, batches[i], batches[i].Members) })
		owner := -1
		for i := range lost {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("assign %d: %v (a lost member is not an error)", i, errsOf[i])
			case lost[i][0]:
				t.Fatalf("batch %d lost its own ticket", i)
			case !lost[i][1] && owner >= 0:
				t.Fatalf("batches %d and %d both own the shared ticket", owner, i)
			case !lost[i][1]:
				owner = i
			}
		}
		if owner < 0 {
			t.Fatal("no batch owns the shared ticket")
		}
		// A sweep taking each batch over keeps the members whose assignment names it.
		for i, b := range batches {
			tks, err := s.Members(ctx, b)
			want := []bson.ObjectID{own[i].ID}
			if i == owner {
				want = append(want, shared.ID)
				slices.SortFunc(want, func(x, y bson.ObjectID) int { return bytes.Compare(x[:], y[:]) })
			}
			if err != nil || !slices.Equal(ticketIDs(tks), want) {
				t.Fatalf("batch %d's members: %v, %v; want %v", i, ticketIDs(tks), err, want)
			}
			if !b.Verified || b.Size != len(want) || len(b.Members) != len(want) {
				t.Fatalf("batch %d after Members: verified %v, size %d, members %+v", i, b.Verified, b.Size, b.Members)
			}
		}
	})

	run("Members/ContentOfTheTickets_VerifiedListTakenAsItIs", func(t *testing.T, ctx context.Context, s Store) {
		a, b := newTicket(t, ctx, s), newTicket(t, ctx, s)
		batch := newBatch(msNow(), notification.Member{Ticket: b.ID, Generation: 3}, notification.Member{Ticket: a.ID})
		batch.Verified = true // not assigned: a verified list is not checked
		tks, err := s.Members(ctx, batch)
		if err != nil || len(tks) != 2 {
			t.Fatalf("members: %+v, %v", tks, err)
		}
		byID := map[bson.ObjectID]notification.Ticket{tks[0].ID: tks[0], tks[1].ID: tks[1]}
		if !slices.IsSortedFunc(tks, func(x, y notification.Ticket) int { return bytes.Compare(x.ID[:], y.ID[:]) }) {
			t.Fatalf("members not in id order: %v", ticketIDs(tks))
		}
		for _, c := range []struct {
			tk  *notification.Ticket
			gen int
		}{{a, 0}, {b, 3}} {
			got := byID[c.tk.ID]
			if got.Subject != c.tk.Subject || got.Content != c.tk.Content || !slices.Equal(got.RecipientEmails, c.tk.RecipientEmails) || got.Generation != c.gen {
				t.Fatalf("member %s: %+v, want the ticket's content at generation %d", c.tk.ID.Hex(), got, c.gen)
			}
		}
		gone := newBatch(msNow(), notification.Member{Ticket: newObjectID()}) // no such ticket
		insertAndAssign(t, ctx, s, gone)
		gone.Verified = false
		if tks, err := s.Members(ctx, gone); err != nil || len(tks) != 0 {
			t.Fatalf("a member without its ticket: %+v, %v; want none", tks, err)
		}
	})
}

func runDecisions(run runFunc) {
	run(fmt.Sprintf("Decide/Race%dOneKey_FirstKept_RestToldAlready", Racers), func(t *testing.T, ctx context.Context, s Store) {
		id := newObjectID()
		key := notification.AssignmentKey(id, 0)
		tried := make([]notification.Outcome, Racers)
		for i := range tried {
			st := notification.StatusSuccess
			if i%2 == 1 {
				st = notification.StatusFailed
			}
			tried[i] = outcome(id, 0, st, msNow().Add(time.Duration(i)*time.Millisecond))
			tried[i].Attempts = i + 1
		}
		already := make([]map[string]bool, Racers)
		errsOf := make([]error, Racers)
		race(Racers, func(i int) { already[i], errsOf[i] = s.Decide(ctx, []notification.Outcome{tried[i]}) })
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

	run(fmt.Sprintf("Claim/Race%d_OneWinsClaimOne_RestHeld", Racers), func(t *testing.T, ctx context.Context, s Store) {
		batch := bson.NewObjectID().Hex()
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
		batch := bson.NewObjectID().Hex()
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

	run(fmt.Sprintf("AppendTally/Race%dOneKey_CountedOnce_Race%dKeys_EachCounted", Racers, Racers), func(t *testing.T, ctx context.Context, s Store) {
		errsOf := make([]error, 2*Racers)
		race(2*Racers, func(i int) {
			if i < Racers {
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
		if got, err := s.ReadTally(ctx); err != nil || got != (notification.Tally{Success: 3, Failed: 1, Requeued: Racers}) {
			t.Fatalf("tally %+v, %v; want 3/1/%d", got, err, Racers)
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

// claimRace races Racers claims of batch from hint from at now until until, and returns the
// claim won; exactly one must win, the others answer not ok.
func claimRace(t *testing.T, ctx context.Context, s Store, batch string, from int, now, until time.Time) (int, bool) {
	t.Helper()
	ns := make([]int, Racers)
	oks := make([]bool, Racers)
	errsOf := make([]error, Racers)
	race(Racers, func(i int) {
		ns[i], oks[i], errsOf[i] = s.Claim(ctx, batch, from, fmt.Sprint("holder ", i), now, until)
	})
	winner := -1
	for i := range oks {
		switch {
		case errsOf[i] != nil:
			t.Fatalf("claim %d: %v", i, errsOf[i])
		case oks[i] && winner >= 0:
			t.Fatalf("claims %d and %d both won (claims %d and %d)", winner, i, ns[winner], ns[i])
		case oks[i]:
			winner = i
		}
	}
	if winner < 0 {
		return 0, false
	}
	return ns[winner], true
}

func msNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// newObjectID returns a random ObjectID (not one of this process's sequence, which idInShard
// would otherwise risk colliding with).
func newObjectID() bson.ObjectID {
	var id bson.ObjectID
	_, _ = rand.Read(id[:])
	return id
}

// idInShard returns a random ticket id whose queue entries go to shard i.
func idInShard(i int) bson.ObjectID {
	id := newObjectID()
	id[11] = byte(i)<<4 | id[11]&0x0f
	return id
}

func entry(ticket bson.ObjectID, gen int, at time.Time) notification.QueueEntry {
	t := &notification.Ticket{ID: ticket, Subject: "Booked " + ticket.Hex()[18:], Content: "Seats A1, A2",
		RecipientEmails: []string{"ann@example.com"}, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		CreatedAt: at.Add(-time.Minute)}
	return notification.NewQueueEntry(t, gen, at)
}

func head(t *testing.T, ctx context.Context, s Store, shard, limit int) []notification.QueueEntry {
	t.Helper()
	got, err := s.QueueHead(ctx, shard, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > limit {
		t.Fatalf("queue head of %d, limit %d", len(got), limit)
	}
	return got
}

func sameEntries(a, b []notification.QueueEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Key != y.Key || x.Ticket != y.Ticket || x.Generation != y.Generation || x.Subject != y.Subject ||
			x.Content != y.Content || !slices.Equal(x.RecipientEmails, y.RecipientEmails) || x.TraceParent != y.TraceParent ||
			!x.CreatedAt.Equal(y.CreatedAt) || !x.QueuedAt.Equal(y.QueuedAt) {
			return false
		}
	}
	return true
}

func sortedByKey(es []notification.QueueEntry) []notification.QueueEntry {
	out := slices.Clone(es)
	slices.SortFunc(out, func(x, y notification.QueueEntry) int {
		switch {
		case x.Key < y.Key:
			return -1
		case x.Key > y.Key:
			return 1
		}
		return 0
	})
	return out
}

func newTicket(t *testing.T, ctx context.Context, s Store) *notification.Ticket {
	t.Helper()
	tk, created, err := s.Create(ctx, &notification.Ticket{Subject: "Booked", Content: fmt.Sprint("Seats ", newObjectID().Hex()),
		RecipientEmails: []string{"ann@example.com", "bob@example.com"}})
	if err != nil || !created {
		t.Fatalf("create a ticket: %v, %v", created, err)
	}
	return tk
}

// newBatch is a batch as a sweep forms it: held by its creator for a minute.
func newBatch(at time.Time, members ...notification.Member) *notification.Batch {
	first := at
	return &notification.Batch{ID: bson.NewObjectID().Hex(), From: "CineFlow <tickets@example.com>", Size: len(members),
		Members: members, FirstSendAt: &first, NextAttemptAt: at.Add(time.Minute), Oldest: at.Add(-time.Minute),
		Errors: []notification.AttemptError{}, CreatedAt: at, UpdatedAt: at}
}

// insertAndAssign inserts b and assigns its members to it (each must be won), verified.
func insertAndAssign(t *testing.T, ctx context.Context, s Store, b *notification.Batch) {
	t.Helper()
	if err := s.InsertBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	lost, err := s.Assign(ctx, b, b.Members)
	if err != nil || len(lost) != 0 {
		t.Fatalf("assign: lost %v, %v", lost, err)
	}
	b.Verified = true
}

func outcome(ticket bson.ObjectID, gen int, st notification.Status, at time.Time) notification.Outcome {
	o := notification.Outcome{Key: notification.AssignmentKey(ticket, gen), Ticket: ticket, Generation: gen, Status: st,
		Attempts: 1, At: at}
	if st == notification.StatusSuccess {
		sent := at
		o.SentAt, o.ProviderMessageID = &sent, "msg-"+ticket.Hex()
	} else {
		o.Error = "550 mailbox unavailable"
	}
	return o
}

func openBatches(t *testing.T, ctx context.Context, s Store, limit int) []notification.OpenBatch {
	t.Helper()
	got, err := s.OpenBatches(ctx, limit)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameOpen(a, b notification.OpenBatch) bool {
	return a.ID == b.ID && a.Due.Equal(b.Due) && a.Size == b.Size && a.Oldest.Equal(b.Oldest) && a.Claims == b.Claims
}

func sameBatch(a, b notification.Batch) bool {
	return a.ID == b.ID && a.From == b.From && a.Size == b.Size && slices.Equal(a.Members, b.Members) &&
		a.Verified == b.Verified && (a.FirstSendAt == nil) == (b.FirstSendAt == nil) &&
		(a.FirstSendAt == nil || a.FirstSendAt.Equal(*b.FirstSendAt)) && a.Claims == b.Claims && a.Oldest.Equal(b.Oldest) &&
		a.Attempts == b.Attempts && a.NextAttemptAt.Equal(b.NextAttemptAt) && a.Done == b.Done && a.LastError == b.LastError &&
		fmt.Sprint(utcErrors(a.Errors)) == fmt.Sprint(utcErrors(b.Errors)) && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func utcErrors(es []notification.AttemptError) []notification.AttemptError {
	out := make([]notification.AttemptError, len(es))
	for i, e := range es {
		out[i] = notification.AttemptError{At: e.At.UTC(), Attempt: e.Attempt, Error: e.Error}
	}
	return out
}

func sameOutcome(a, b notification.Outcome) bool {
	return a.Key == b.Key && a.Ticket == b.Ticket && a.Generation == b.Generation && a.Status == b.Status &&
		a.ProviderMessageID == b.ProviderMessageID && (a.SentAt == nil) == (b.SentAt == nil) &&
		(a.SentAt == nil || a.SentAt.Equal(*b.SentAt)) && a.Error == b.Error && a.Attempts == b.Attempts && a.At.Equal(b.At)
}

func ticketIDs(ts []notification.Ticket) []bson.ObjectID {
	out := make([]bson.ObjectID, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// oneWins checks that exactly one of errsOf is nil and every other carries code loser.
func oneWins(t *testing.T, what string, errsOf []error, loser errs.Code) {
	t.Helper()
	winner := -1
	for i, err := range errsOf {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("%s: calls %d and %d both succeeded", what, winner, i)
		case err == nil:
			winner = i
		case !errs.Is(err, loser):
			t.Fatalf("%s: call %d: %v, want nil or %s", what, i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no call succeeded", what)
	}
}

// race runs f(0..n-1) in n goroutines released together, and waits for them all.
func race(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}
