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
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/notification"
)

// Store is the delivery store's method set the suite exercises: the delivery primitives
// jobs/sweeper uses (QueueLen stands for its backlog figure, which adds the open batches'
// sizes), and the ticket methods that give them tickets to deliver.
type Store interface {
	Create(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error)
	Get(ctx context.Context, id notification.ID) (*notification.Ticket, error)
	Requeue(ctx context.Context, id notification.ID) (*notification.Ticket, error)

	Enqueue(ctx context.Context, entries ...notification.QueueEntry) error
	QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error)
	QueueLen(ctx context.Context) (int64, error)
	Dequeue(ctx context.Context, keys []string) error
	GenerationStarted(ctx context.Context, ticket notification.ID, gen int) (bool, error)

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

// claimRace races racetest.Racers claims of batch from hint from at now until until, and returns the
// claim won; exactly one must win, the others answer not ok.
func claimRace(t *testing.T, ctx context.Context, s Store, batch string, from int, now, until time.Time) (int, bool) {
	t.Helper()
	ns := make([]int, racetest.Racers)
	oks := make([]bool, racetest.Racers)
	errsOf := make([]error, racetest.Racers)
	racetest.Race(racetest.Racers, func(i int) {
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
func newObjectID() notification.ID {
	var id notification.ID
	_, _ = rand.Read(id[:])
	return id
}

// idInShard returns a random ticket id whose queue entries go to shard i.
func idInShard(i int) notification.ID {
	id := newObjectID()
	id[11] = byte(i)<<4 | id[11]&0x0f
	return id
}

func entry(ticket notification.ID, gen int, at time.Time) notification.QueueEntry {
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
	return &notification.Batch{ID: notification.NewID().Hex(), From: "CineFlow <tickets@example.com>", Size: len(members),
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

func outcome(ticket notification.ID, gen int, st notification.Status, at time.Time) notification.Outcome {
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

func ticketIDs(ts []notification.Ticket) []notification.ID {
	out := make([]notification.ID, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}
