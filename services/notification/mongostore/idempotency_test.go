package mongostore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

func keyed(key, hash string) *notification.Ticket {
	return &notification.Ticket{Subject: "s", Content: "c", RecipientEmails: []string{"a@example.com"},
		IdempotencyKey: key, RequestHash: hash}
}

// claimRecord is an Idempotency-Key record as a create writes it before its ticket.
func claimRecord(key string, gen int, ticket notification.ID, hash string, at time.Time) bson.M {
	sum := sha256.Sum256([]byte(key))
	return bson.M{"_id": fmt.Sprintf("%s:%d", hex.EncodeToString(sum[:]), gen), "ticket": ticket, "requestHash": hash, "createdAt": at}
}

func TestIdempotentCreateReplaysTheFirstTicket(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	first, created, err := s.Create(ctx, keyed("k1", "h1"))
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := s.Create(ctx, keyed("k1", "h1"))
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("replay: %+v %v %v", again, created, err)
	}
	if _, _, err := s.Create(ctx, keyed("k1", "other")); !errs.Is(err, errs.Unprocessable) {
		t.Fatalf("another request under the key: %v, want unprocessable", err)
	}
	// The key stays with its record, not in the ticket.
	if n, _ := db.Collection(mongostore.TicketsCollection).CountDocuments(ctx, bson.M{"idempotencyKey": bson.M{"$exists": true}}); n != 0 {
		t.Fatalf("%d tickets carry the key", n)
	}
}

// A key claimed by a request whose ticket is not stored yet is "in progress" during its
// lease; after it (the request's process died), a repeat takes the key over in a new
// generation, decided by insert: of many repeats at once exactly one creates the ticket and
// every other gets that ticket (or is asked to retry while it is being stored).
func TestIdempotencyClaimOfADeadRequestIsTakenOver(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	idem := db.Collection(mongostore.IdempotencyCollection)
	lost := notification.NewID() // the ticket the dead request never stored

	insert(t, db, mongostore.IdempotencyCollection, claimRecord("k-live", 0, lost, "h", msNow()))
	_, _, err := s.Create(ctx, keyed("k-live", "h"))
	var e *errs.Error
	if !errs.Is(err, errs.Conflict) || !asErr(err, &e) || e.RetryAfter <= 0 {
		t.Fatalf("a claim within its lease: %v, want conflict with a retry delay", err)
	}
	if _, _, err := s.Create(ctx, keyed("k-live", "other")); !errs.Is(err, errs.Unprocessable) {
		t.Fatalf("another request under a claimed key: %v", err)
	}

	insert(t, db, mongostore.IdempotencyCollection, claimRecord("k-dead", 0, lost, "h", msNow().Add(-2*mongostore.IdempotencyLease)))
	const n = 16
	ids := make([]notification.ID, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			for try := 0; try < 200; try++ {
				tk, c, err := s.Create(ctx, keyed("k-dead", "h"))
				if errs.Is(err, errs.Conflict) { // the winner is storing its ticket
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				ids[i], created[i] = tk.ID, c
				return
			}
			t.Error("still in progress after 200 tries")
		})
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if created[i] {
			fresh++
		}
		if ids[i] != ids[0] || ids[i] == lost {
			t.Errorf("request %d got ticket %s, request 0 %s (the dead one's %s)", i, ids[i].Hex(), ids[0].Hex(), lost.Hex())
		}
	}
	if fresh != 1 {
		t.Errorf("%d requests created a ticket, want 1", fresh)
	}
	if c, _ := db.Collection(mongostore.TicketsCollection).CountDocuments(ctx, bson.M{}); c != 1 {
		t.Errorf("%d tickets stored, want 1", c)
	}
	if c, err := s.QueueLen(ctx); err != nil || c != 1 {
		t.Errorf("%d queue entries (%v), want 1", c, err)
	}
	if c, _ := idem.CountDocuments(ctx, bson.M{}); c != 3 {
		t.Errorf("%d Idempotency-Key records, want 3 (k-live, k-dead and its take-over)", c)
	}
}

// A ticket stored by a create that died before queueing it is queued by a replay of its key.
func TestIdempotencyReplayQueuesATicketLeftUnqueued(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	tk, _, err := s.Create(ctx, keyed("k", "h"))
	if err != nil {
		t.Fatal(err)
	}
	queue := db.Collection(mongostore.QueueShardCollection(notification.QueueShard(tk.ID)))
	if _, err := queue.DeleteOne(ctx, bson.M{"_id": notification.AssignmentKey(tk.ID, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.Create(ctx, keyed("k", "h")); err != nil || created {
		t.Fatalf("replay: %v %v", created, err)
	}
	if c, _ := queue.CountDocuments(ctx, bson.M{"_id": notification.AssignmentKey(tk.ID, 0)}); c != 1 {
		t.Fatalf("the replay did not queue the ticket")
	}
}

// Records older than 24 hours are removed, oldest first, at most limit per call; a key
// removed is free again.
func TestCleanupIdempotencyRemovesOnlyExpiredRecords(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	t0 := msNow()
	s.Now = func() time.Time { return t0 }
	var old []*notification.Ticket
	for i := range 5 {
		tk, _, err := s.Create(ctx, keyed(fmt.Sprintf("old-%d", i), "h"))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, tk)
	}
	later := t0.Add(mongostore.IdempotencyRetention + time.Minute)
	s.Now = func() time.Time { return later }
	for i := range 2 {
		if _, _, err := s.Create(ctx, keyed(fmt.Sprintf("new-%d", i), "h")); err != nil {
			t.Fatal(err)
		}
	}
	idem := db.Collection(mongostore.IdempotencyCollection)
	if n, err := s.CleanupIdempotency(ctx, 3); err != nil || n != 3 {
		t.Fatalf("first clean-up removed %d (%v), want the limit 3", n, err)
	}
	if n, err := s.CleanupIdempotency(ctx, 100); err != nil || n != 2 {
		t.Fatalf("second clean-up removed %d (%v), want the 2 expired left", n, err)
	}
	if n, err := s.CleanupIdempotency(ctx, 100); err != nil || n != 0 {
		t.Fatalf("third clean-up removed %d (%v)", n, err)
	}
	if c, _ := idem.CountDocuments(ctx, bson.M{}); c != 2 {
		t.Fatalf("%d records left, want the 2 young ones", c)
	}
	// An expired key makes a new ticket; a young one still replays.
	tk, created, err := s.Create(ctx, keyed("old-0", "h"))
	if err != nil || !created || tk.ID == old[0].ID {
		t.Fatalf("expired key: created %v, %v", created, err)
	}
	if _, created, err := s.Create(ctx, keyed("new-1", "h")); err != nil || created {
		t.Fatalf("young key: created %v, %v", created, err)
	}
}

// The figures' tally counts each key once, however many writers append it at once, and
// reads the same from a fresh store (another process) after folding into snapshots.
func TestTallyCountsEachKeyOnce(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	const keys = 300
	delta := func(k int) notification.Tally {
		return notification.Tally{Success: int64(k % 7), Failed: int64(k % 3), Requeued: int64(k % 2)}
	}
	var want notification.Tally
	for k := range keys {
		want = want.Add(delta(k))
	}
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			st := mongostore.New(db) // a writer of its own, as another sweep would be
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 60 {
				k := r.IntN(keys)
				if err := st.AppendTally(ctx, fmt.Sprintf("key-%d", k), delta(k)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for k := range keys { // every key at least once
		if err := s.AppendTally(ctx, fmt.Sprintf("key-%d", k), delta(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []*mongostore.Store{s, mongostore.New(db), s} {
		got, err := st.ReadTally(ctx)
		if err != nil || got != want {
			t.Fatalf("tally %+v (%v), want %+v", got, err, want)
		}
	}
	if n, _ := db.Collection(mongostore.TallyCollection).CountDocuments(ctx, bson.M{}); n != keys {
		t.Fatalf("%d tally entries, want %d", n, keys)
	}
	if n, _ := db.Collection(mongostore.TallySnapshotsCollection).CountDocuments(ctx, bson.M{}); n == 0 {
		t.Fatal("no snapshot was folded")
	}
}

func asErr(err error, target **errs.Error) bool {
	e, ok := err.(*errs.Error)
	*target = e
	return ok
}
