package mongostore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

func newStore(t *testing.T) (*mongostore.Store, func(id notification.ID), *mongo.Database) {
	t.Helper()
	db := devdb.TestDB(t)
	s := mongostore.New(db)
	if err := s.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail := func(id notification.ID) {
		t.Helper()
		_, err := db.Collection(mongostore.TicketsCollection).UpdateOne(context.Background(), bson.M{"_id": id},
			bson.M{"$set": bson.M{"status": notification.StatusFailed, "lastError": "550 mailbox unavailable",
				"errors": bson.A{bson.M{"at": time.Now(), "attempt": 1, "error": "550 mailbox unavailable"}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return s, fail, db
}

func newTicket(t *testing.T, s *mongostore.Store) *notification.Ticket {
	t.Helper()
	tk, created, err := s.Create(context.Background(), &notification.Ticket{Subject: "s", Content: "c",
		RecipientEmails: []string{"a@example.com"}})
	if err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	return tk
}

// A re-queue whose decision was recorded but whose ticket update never happened (the
// process died, the database blipped) must not leave the ticket FAILED forever.
func TestRequeueFinishesAnInterruptedRequeue(t *testing.T) {
	t.Parallel()
	s, fail, db := newStore(t)
	ctx := context.Background()
	tk := newTicket(t, s)
	fail(tk.ID)

	// Simulate the interrupted re-queue: its record exists, the ticket is still FAILED.
	if _, err := db.Collection(mongostore.RequeuesCollection).InsertOne(ctx,
		bson.M{"_id": tk.ID.Hex() + ":0", "at": time.Now()}); err != nil {
		t.Fatal(err)
	}

	_, err := s.Requeue(ctx, tk.ID)
	if !errs.Is(err, errs.Conflict) {
		t.Fatalf("Requeue after an interrupted one: %v, want conflict", err)
	}
	got, err := s.Get(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != notification.StatusPending || got.Generation != 1 || len(got.Errors) != 1 {
		t.Fatalf("ticket stuck after an interrupted re-queue: %+v", got)
	}
	// From there, the normal cycle: FAILED again, re-queued into generation 2.
	fail(tk.ID)
	got, err = s.Requeue(ctx, tk.ID)
	if err != nil || got.Generation != 2 || got.Status != notification.StatusPending {
		t.Fatalf("next re-queue: %+v %v", got, err)
	}
}

func TestRequeueConcurrentOneWins(t *testing.T) {
	t.Parallel()
	s, fail, _ := newStore(t)
	tk := newTicket(t, s)
	fail(tk.ID)
	const n = 8
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = s.Requeue(context.Background(), tk.ID)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range results {
		switch {
		case err == nil:
			wins++
		case !errs.Is(err, errs.Conflict):
			t.Errorf("Requeue: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d re-queues succeeded, want 1", wins)
	}
	got, _ := s.Get(context.Background(), tk.ID)
	if got.Generation != 1 || got.Status != notification.StatusPending {
		t.Errorf("ticket %+v", got)
	}
}
