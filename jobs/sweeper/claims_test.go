package sweeper_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/mongostore"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

var errInjected = errors.New("injected database failure")

// faultyStore is the real store with failures injected into the calls a sweep makes on a
// batch after it has won the batch's claim.
type faultyStore struct {
	*mongostore.Store
	failMembers atomic.Bool
	failClose   atomic.Bool
}

func (s *faultyStore) Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error) {
	if s.failMembers.Load() {
		return nil, errInjected
	}
	return s.Store.Members(ctx, b)
}

func (s *faultyStore) CloseBatch(ctx context.Context, id string) error {
	if s.failClose.Load() {
		return errInjected
	}
	return s.Store.CloseBatch(ctx, id)
}

// A batch that many sweeps in a row claim and let go without saving the claim number they
// won (so the batch's claim hint stays where it was) is still taken by the next sweep that
// can work on it: a claim is found from a hint however far behind. Three ways to get there:
//   - stale open entry: the retry time of a failed batch reached its record but not its open
//     entry (the second write of a save was lost), so every sweep until the retry finds it
//     due, claims it, reads it not due and releases the claim;
//   - store fails after the claim: every sweep that takes the batch over fails reading its
//     members (as a sweep killed after its claim: nothing saved, the lease runs out);
//   - done, not closed: the batch was delivered but removing its open entry fails, so every
//     sweep claims it, finds it done, fails to close it and releases the claim.
//
// With a Claim that walked at most 64 claims from the hint, the batch could no longer be
// claimed after 64 such sweeps: its tickets were never delivered (nor FAILED), or its open
// entry never removed (counted in the backlog for ever).
func TestBatchPassedOverManySweepsIsStillTaken(t *testing.T) {
	const passes = 70 // sweeps that claim the batch and let it go
	for _, tc := range []struct {
		name    string
		first   resendfake.Faults // of the sweep that creates the batch
		backoff time.Duration
		// before runs after the first sweep, before the passes; it returns when the batch is
		// due again.
		before func(t *testing.T, e *env, fs *faultyStore, b notification.Batch, t0 time.Time) time.Time
		done   bool // the first sweep delivers the batch
	}{
		{"stale open entry", resendfake.Faults{FailRate: 1}, 10 * time.Hour,
			func(t *testing.T, e *env, _ *faultyStore, b notification.Batch, t0 time.Time) time.Time {
				// The open entry as the batch's creator inserted it (due when its lease ends,
				// no claim): the write that moved it to the retry time is lost.
				open := notification.OpenBatch{ID: b.ID, Due: t0.Add(time.Minute), Size: b.Size, Oldest: b.Oldest}
				if _, err := e.db.Collection(nstore.OpenBatchesCollection).ReplaceOne(context.Background(), bson.M{"_id": b.ID}, open); err != nil {
					t.Fatal(err)
				}
				if !b.NextAttemptAt.After(t0.Add((passes + 1) * 2 * time.Minute)) {
					t.Fatalf("the retry (%v) comes before the passes end", b.NextAttemptAt)
				}
				return b.NextAttemptAt
			}, false},
		{"store fails after the claim", resendfake.Faults{FailRate: 1}, time.Minute,
			func(t *testing.T, _ *env, fs *faultyStore, b notification.Batch, _ time.Time) time.Time {
				fs.failMembers.Store(true)
				return b.NextAttemptAt
			}, false},
		{"done, not closed", resendfake.Faults{}, time.Minute,
			func(t *testing.T, _ *env, _ *faultyStore, b notification.Batch, t0 time.Time) time.Time {
				return t0.Add(time.Minute) // its creator's lease
			}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, resendfake.Options{})
			ctx := context.Background()
			const tickets = 5
			e.seed(tickets, nil)
			fs := &faultyStore{Store: e.store}
			t0 := time.Now().UTC().Truncate(time.Millisecond)
			var clock atomic.Int64
			clock.Store(t0.UnixNano())
			cfg := sweeper.Config{From: "CineFlow <tickets@cineflow.test>", RateLimit: 1000, DBShare: 1,
				Deadline: 30 * time.Second, LeaseMargin: 30 * time.Second, // leases end 1 min after a sweep starts
				BackoffBase: tc.backoff, BackoffMax: tc.backoff, MaxAttempts: 8,
				Now:    func() time.Time { return time.Unix(0, clock.Load()).UTC() },
				Logger: slog.New(slog.DiscardHandler)} // 140 sweeps' logs say nothing here
			sweep := func() sweeper.Report {
				t.Helper()
				rep, err := sweeper.New(fs, e.mailer(5*time.Second), cfg).Run(ctx)
				if err != nil && !errors.Is(err, sweeper.ErrProviderFailing) { // the first sweep's provider fails on purpose
					t.Fatal(err)
				}
				return rep
			}

			e.fake.SetFaults(tc.first)
			fs.failClose.Store(tc.done)
			rep := sweep()
			if tc.done && rep.Sent != tickets || !tc.done && rep.Retried != tickets {
				t.Fatalf("first sweep: %+v", rep)
			}
			e.fake.SetFaults(resendfake.Faults{})
			var all []notification.Batch
			cur, err := e.db.Collection(nstore.BatchesCollection).Find(ctx, bson.M{})
			if err != nil {
				t.Fatal(err)
			}
			if err := cur.All(ctx, &all); err != nil || len(all) != 1 {
				t.Fatalf("batches: %d, %v", len(all), err)
			}
			b := all[0]
			due := tc.before(t, e, fs, b, t0)

			for i := 1; i <= passes; i++ {
				clock.Store(t0.Add(time.Duration(i) * 2 * time.Minute).UnixNano()) // the last pass's lease has ended
				if rep := sweep(); rep.Requests != 0 {
					t.Fatalf("pass %d sent the batch: %+v", i, rep)
				}
			}
			claims, err := e.db.Collection(nstore.ClaimsCollection).CountDocuments(ctx, bson.M{"batch": b.ID})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d claims on the batch after %d passes", claims, passes)

			// The fault is gone and the batch is due: the next sweep takes it.
			fs.failMembers.Store(false)
			fs.failClose.Store(false)
			at := t0.Add((passes + 1) * 2 * time.Minute)
			if due.After(at) {
				at = due
			}
			clock.Store(at.Add(time.Minute).UnixNano())
			rep = sweep()
			if tc.done {
				if rep.Requests != 0 || rep.Backlog != 0 {
					t.Fatalf("sweep after the passes: %+v; want the done batch closed without a send", rep)
				}
				open, err := e.store.OpenBatches(ctx, 10)
				if err != nil || len(open) != 0 {
					t.Fatalf("open batches after the passes: %+v, %v; want none", open, err)
				}
			} else if rep.Sent != tickets {
				t.Fatalf("sweep after the passes: %+v; want the %d tickets of the batch delivered", rep, tickets)
			}
			e.assertExactlyOnce()
			if claims < passes {
				t.Fatalf("%d claims after %d passes: the passes did not all claim the batch", claims, passes)
			}
		})
	}
}
