package mongostore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/jobs/sweeper/mongostore"
	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

func newStore(t *testing.T) (*mongostore.Store, *nstore.Store) {
	t.Parallel()
	db := devdb.TestDB(t)
	s := mongostore.New(db)
	if err := s.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, nstore.New(db)
}

func seed(t *testing.T, notes *nstore.Store, n int) []notification.Ticket {
	var out []notification.Ticket
	for range n {
		tk, _, err := notes.Create(context.Background(), &notification.Ticket{Subject: "s", Content: "c", RecipientEmails: []string{"a@b.co"}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *tk)
	}
	return out
}

// Many sweeps forming batches from the same tickets at once: every ticket ends in exactly
// one batch.
func TestConcurrentBatchesAssignEachTicketOnce(t *testing.T) {
	s, notes := newStore(t)
	tickets := seed(t, notes, 30)
	const racers = 20
	won := make([][]notification.Ticket, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now().UTC()
			b := &notification.Batch{ID: bson.NewObjectID().Hex(), NextAttemptAt: now.Add(time.Minute), CreatedAt: now, UpdatedAt: now}
			w, err := s.CreateBatch(context.Background(), b, tickets)
			if err != nil {
				t.Error(err)
			}
			won[i] = w
		}()
	}
	wg.Wait()
	owners := map[bson.ObjectID]int{}
	for _, w := range won {
		for _, tk := range w {
			owners[tk.ID]++
		}
	}
	for _, tk := range tickets {
		if owners[tk.ID] != 1 {
			t.Fatalf("ticket %s is in %d batches", tk.ID.Hex(), owners[tk.ID])
		}
	}
}

// Many sweeps claiming one abandoned batch at once: exactly one wins each lease, and a new
// lease can be taken only after the previous one ended.
func TestClaimIsWonByExactlyOneSweep(t *testing.T) {
	s, _ := newStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	b := &notification.Batch{ID: bson.NewObjectID().Hex(), NextAttemptAt: now.Add(-time.Minute), CreatedAt: now, UpdatedAt: now}
	if _, err := s.CreateBatch(context.Background(), b, nil); err != nil {
		t.Fatal(err)
	}
	claimAll := func(at time.Time) []string {
		var mu sync.Mutex
		var keys []string
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key, ok, err := s.Claim(context.Background(), b, bson.NewObjectID().Hex(), at, at.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					keys = append(keys, key)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return keys
	}
	first := claimAll(now)
	if len(first) != 1 {
		t.Fatalf("%d sweeps won the first lease: %v", len(first), first)
	}
	if again := claimAll(now.Add(30 * time.Second)); len(again) != 0 {
		t.Fatalf("a held lease was taken: %v", again)
	}
	later := claimAll(now.Add(2 * time.Minute)) // the first lease has expired
	if len(later) != 1 || later[0] == first[0] {
		t.Fatalf("after expiry want exactly one new lease, got %v (first %s)", later, first[0])
	}
	// Releasing ends a lease at once.
	if err := s.ReleaseClaim(context.Background(), later[0], now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if next := claimAll(now.Add(2*time.Minute + time.Second)); len(next) != 1 {
		t.Fatalf("after release want one new lease, got %v", next)
	}
}

// Deciding a ticket twice keeps the first outcome.
func TestDecideKeepsTheFirstOutcome(t *testing.T) {
	s, notes := newStore(t)
	tk := seed(t, notes, 1)[0]
	key := notification.AssignmentKey(tk.ID, 0)
	first := notification.Outcome{Key: key, Ticket: tk.ID, Status: notification.StatusSuccess, ProviderMessageID: "m1", At: time.Now()}
	if already, err := s.Decide(context.Background(), []notification.Outcome{first}); err != nil || len(already) != 0 {
		t.Fatal(already, err)
	}
	second := first
	second.Status, second.ProviderMessageID = notification.StatusFailed, ""
	already, err := s.Decide(context.Background(), []notification.Outcome{second})
	if err != nil || !already[key] {
		t.Fatalf("second decision: %v, %v", already, err)
	}
	got, err := notes.Get(context.Background(), tk.ID)
	if err != nil || got.Status != notification.StatusSuccess || got.ProviderMessageID != "m1" {
		t.Fatalf("ticket: %+v, %v", got, err)
	}
}
