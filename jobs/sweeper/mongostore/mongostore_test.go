package mongostore_test

import (
	"context"
	"sync"
	"testing"
	"time"

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

// queued returns the queue entries of the given tickets.
func queued(tickets []notification.Ticket) []notification.Member {
	out := make([]notification.Member, len(tickets))
	for i, tk := range tickets {
		out[i] = notification.Member{Ticket: tk.ID}
	}
	return out
}

// Many sweeps forming batches from the same tickets at once: every ticket ends in exactly
// one batch.
func TestConcurrentBatchesAssignEachTicketOnce(t *testing.T) {
	s, notes := newStore(t)
	members := queued(seed(t, notes, 30))
	const racers = 20
	won := make([][]notification.Member, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			now := time.Now().UTC()
			b := &notification.Batch{ID: notification.NewID().Hex(), Members: members, NextAttemptAt: now.Add(time.Minute), CreatedAt: now, UpdatedAt: now}
			if err := s.InsertBatch(context.Background(), b); err != nil {
				t.Error(err)
				return
			}
			lost, err := s.Assign(context.Background(), b, members)
			if err != nil {
				t.Error(err)
			}
			for j, m := range members {
				if !lost[j] {
					won[i] = append(won[i], m)
				}
			}
		})
	}
	wg.Wait()
	owners := map[notification.ID]int{}
	for _, w := range won {
		for _, m := range w {
			owners[m.Ticket]++
		}
	}
	for _, m := range members {
		if owners[m.Ticket] != 1 {
			t.Fatalf("ticket %s is in %d batches", m.Ticket.Hex(), owners[m.Ticket])
		}
	}
	// The batch that owns a ticket lists it as a verified member once taken over.
	open, err := s.OpenBatches(context.Background(), 100)
	if err != nil || len(open) != racers {
		t.Fatalf("%d open batches, want %d: %v", len(open), racers, err)
	}
	total := 0
	for _, ob := range open {
		b, err := s.Batch(context.Background(), ob.ID)
		if err != nil {
			t.Fatal(err)
		}
		tickets, err := s.Members(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if !b.Verified || len(b.Members) != len(tickets) {
			t.Fatalf("batch %s: verified %v, %d members, %d tickets", b.ID, b.Verified, len(b.Members), len(tickets))
		}
		total += len(tickets)
	}
	if total != len(members) {
		t.Fatalf("the batches hold %d tickets, want %d", total, len(members))
	}
}

// Many sweeps claiming one batch at once, each from whatever (stale) claim number it knew:
// exactly one wins each lease, a lease is taken only after the previous one ended, and the
// winner learns its claim number from its own insert.
func TestClaimIsWonByExactlyOneSweep(t *testing.T) {
	s, _ := newStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := notification.NewID().Hex()
	claimAll := func(at time.Time) []int {
		var mu sync.Mutex
		var won []int
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				n, ok, err := s.Claim(context.Background(), id, i%3, notification.NewID().Hex(), at, at.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					won = append(won, n)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return won
	}
	first := claimAll(now)
	if len(first) != 1 || first[0] != 1 {
		t.Fatalf("first lease won as %v, want exactly claim 1", first)
	}
	if again := claimAll(now.Add(30 * time.Second)); len(again) != 0 {
		t.Fatalf("a held lease was taken: %v", again)
	}
	later := claimAll(now.Add(2 * time.Minute)) // the first lease has expired
	if len(later) != 1 || later[0] != 2 {
		t.Fatalf("after expiry want exactly claim 2, got %v", later)
	}
	// Releasing ends a lease at once.
	if err := s.ReleaseClaim(context.Background(), id, 2, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if next := claimAll(now.Add(2*time.Minute + time.Second)); len(next) != 1 || next[0] != 3 {
		t.Fatalf("after release want exactly claim 3, got %v", next)
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
