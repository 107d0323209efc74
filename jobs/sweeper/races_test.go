package sweeper_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

// watchMailer wraps a Mailer and records, per idempotency key (per batch), how many sends
// were made and the most that were in flight at once.
type watchMailer struct {
	next  sweeper.Mailer
	hold  time.Duration // each send stays in flight at least this long
	mu    sync.Mutex
	now   map[string]int
	peak  map[string]int
	sends map[string]int
}

func newWatchMailer(next sweeper.Mailer, hold time.Duration) *watchMailer {
	return &watchMailer{next: next, hold: hold, now: map[string]int{}, peak: map[string]int{}, sends: map[string]int{}}
}

func (w *watchMailer) Send(ctx context.Context, key string, emails []sweeper.Email) ([]sweeper.Outcome, error) {
	w.mu.Lock()
	w.now[key]++
	w.sends[key]++
	w.peak[key] = max(w.peak[key], w.now[key])
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.now[key]--
		w.mu.Unlock()
	}()
	time.Sleep(w.hold)
	return w.next.Send(ctx, key, emails)
}

// Many sweeps at once over batches that fail and are retried: a batch is never held by two
// sweeps (no two sends of one batch in flight at once), every send of a batch is recorded as
// exactly one attempt (so no attempt number was taken twice), and no email goes out twice.
func TestConcurrentSweepsNeverHoldOneBatchTwice(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(400, nil)
	// Half the requests fail before the provider processes them: retried with a 1 ms backoff,
	// so batches change hands between sweeps all the time. Sends are slow (60 ms) and leases
	// short (3.1 s), so a sweep works from what it read seconds ago while leases it saw
	// expire: a claim keyed on a stale attempt count let two sweeps hold one batch here.
	e.fake.SetFaults(resendfake.Faults{FailRate: 0.5})
	watch := newWatchMailer(e.mailer(5*time.Second), 60*time.Millisecond)
	cfg := sweeper.Config{From: "CineFlow <tickets@cineflow.test>", BatchSize: 10, PageSize: 50, RateLimit: 1000,
		MaxAttempts: 100, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond, Deadline: 3 * time.Second,
		LeaseMargin: 100 * time.Millisecond, ProjectFor: time.Millisecond, DBShare: 1}
	const sweepers = 6
	var wg sync.WaitGroup
	var sweeps atomic.Int64
	deadline := time.Now().Add(90 * time.Second)
	for range sweepers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				rep, err := sweeper.New(e.store, watch, cfg).Run(context.Background())
				sweeps.Add(1)
				if err != nil && !errors.Is(err, sweeper.ErrProviderFailing) { // half the requests fail
					t.Error(err)
					return
				}
				if rep.Backlog == 0 && rep.Requests == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	e.fake.SetFaults(resendfake.Faults{})
	if _, err := e.sweeper(sweeper.Config{}).Run(context.Background()); err != nil { // anything left
		t.Fatal(err)
	}
	e.assertExactlyOnce()

	watch.mu.Lock()
	defer watch.mu.Unlock()
	batches := e.db.Collection(nstore.BatchesCollection)
	cur, err := batches.Find(context.Background(), bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	var all []notification.Batch
	if err := cur.All(context.Background(), &all); err != nil {
		t.Fatal(err)
	}
	retried := 0
	for _, b := range all {
		key := b.IdempotencyKey()
		if watch.peak[key] > 1 {
			t.Errorf("batch %s was sent by %d sweeps at once", b.ID, watch.peak[key])
		}
		if watch.sends[key] != b.Attempts {
			t.Errorf("batch %s: %d sends, %d attempts recorded", b.ID, watch.sends[key], b.Attempts)
		}
		if b.Attempts > 1 {
			retried++
		}
	}
	if retried < 5 {
		t.Fatalf("only %d batches were retried: the race was not exercised (%d sweeps)", retried, sweeps.Load())
	}
	t.Logf("%d sweeps, %d batches, %d retried", sweeps.Load(), len(all), retried)
}

// An operator re-queues FAILED tickets while sweeps project their old generation's outcome
// onto the ticket documents (on a database whose updates are read-then-write): no re-queue is
// lost. Readers see the new generation at once, every ticket is queued for it, the documents
// end on it, and the next sweep delivers each ticket exactly once.
func TestRequeueRacingProjectionIsNeverLost(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	const n = 60
	e.seed(n, nil)
	e.fake.SetFaults(resendfake.Faults{FailRate: 1})
	// Every ticket fails for good (one attempt); nothing is projected yet.
	rep, err := e.sweeper(sweeper.Config{MaxAttempts: 1, ProjectFor: time.Nanosecond}).Run(context.Background())
	if !errors.Is(err, sweeper.ErrProviderFailing) || rep.Failed != n {
		t.Fatalf("failing sweep: %+v %v", rep, err)
	}
	e.fake.SetFaults(resendfake.Faults{})
	ctx := context.Background()
	// The generation-0 outcomes, as projection copies them.
	type member struct {
		m notification.Member
		b *notification.Batch
		o *notification.Outcome
	}
	var gen0 []member
	for _, id := range e.ids {
		tk, err := e.notes.Get(ctx, id)
		if err != nil || tk.Status != notification.StatusFailed {
			t.Fatalf("ticket %s before the race: %+v %v", id.Hex(), tk, err)
		}
		b, err := e.notes.Batch(ctx, tk.Batch)
		if err != nil || b == nil {
			t.Fatalf("batch of %s: %v", id.Hex(), err)
		}
		m := notification.Member{Ticket: id}
		outs, err := e.notes.Outcomes(ctx, []string{m.Key()})
		if err != nil || outs[m.Key()] == nil {
			t.Fatalf("outcome of %s: %v", id.Hex(), err)
		}
		gen0 = append(gen0, member{m, b, outs[m.Key()]})
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, id := range e.ids {
		wg.Go(func() { // the operator
			<-start
			if i%2 == 1 {
				time.Sleep(time.Millisecond)
			}
			if _, err := e.notes.Requeue(ctx, id); err != nil {
				t.Errorf("requeue %s: %v", id.Hex(), err)
			}
		})
	}
	for w := range 4 {
		wg.Go(func() { // late projections of generation 0, over and over
			<-start
			for round := range 3 {
				for k := range gen0 {
					g := gen0[(k+w*15+round*7)%len(gen0)]
					if err := e.notes.ProjectMember(ctx, g.m, g.b, g.o); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	var racing sweeper.Report
	wg.Go(func() { // and a sweep projecting what the failing sweep left (and delivering what is re-queued by then)
		<-start
		var err error
		if racing, err = e.sweeper(sweeper.Config{ProjectFor: time.Minute, ProjectShare: 1}).Run(ctx); err != nil {
			t.Error(err)
		}
	})
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	tickets := e.db.Collection(nstore.TicketsCollection)
	for _, id := range e.ids {
		tk, err := e.notes.Get(ctx, id)
		if err != nil || tk.Generation != 1 || (tk.Status != notification.StatusPending && tk.Status != notification.StatusSuccess) {
			t.Errorf("ticket %s after the race: generation %d %s (%v)", id.Hex(), tk.Generation, tk.Status, err)
			continue
		}
		var doc notification.Ticket
		if err := tickets.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil || doc.Generation != 1 {
			t.Errorf("stored ticket %s: generation %d %s (%v): a stale projection stayed", id.Hex(), doc.Generation, doc.Status, err)
		}
		if tk.Status == notification.StatusPending && tk.Batch == "" {
			queue := e.db.Collection(nstore.QueueShardCollection(notification.QueueShard(id)))
			if n, err := queue.CountDocuments(ctx, bson.M{"_id": notification.AssignmentKey(id, 1)}); err != nil || n != 1 {
				t.Errorf("ticket %s: generation 1 is not queued (%d, %v)", id.Hex(), n, err)
			}
		}
	}
	st, err := e.notes.Stats(ctx)
	if err != nil || st.ByStatus[notification.StatusFailed] != 0 {
		t.Errorf("figures after the re-queues: %v %v", st.ByStatus, err)
	}
	if t.Failed() {
		return
	}
	rep, err = e.sweeper(sweeper.Config{Deadline: time.Minute, ProjectFor: time.Minute, ProjectShare: 1}).Run(ctx)
	if err != nil || racing.Sent+rep.Sent != n {
		t.Fatalf("delivering sweep: %+v %v (the racing sweep sent %d)", rep, err, racing.Sent)
	}
	e.assertExactlyOnce()
	for _, id := range e.ids {
		var doc notification.Ticket
		if err := tickets.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil || doc.Generation != 1 ||
			doc.Status != notification.StatusSuccess || doc.Attempts != 2 {
			t.Errorf("stored ticket %s: generation %d %s, %d attempts (%v)", id.Hex(), doc.Generation, doc.Status, doc.Attempts, err)
		}
	}
}

// A batch whose first send is older than the provider keeps its idempotency key (23 h here,
// for Resend's 24 h) is not sent again: its tickets end FAILED saying delivery is unknown,
// and an operator's re-queue sends them again under a new key. One sent less long ago is
// re-sent under its key as before. The clock is injected.
func TestExpiredIdempotencyKeyIsNeverReused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		later   time.Duration
		faults  resendfake.Faults // of the first send
		unknown bool
	}{
		{"failed send, 23h01m later", 23*time.Hour + time.Minute, resendfake.Faults{FailRate: 1}, true},
		{"lost response, 23h01m later", 23*time.Hour + time.Minute, resendfake.Faults{LoseRate: 1}, true},
		{"lost response, 22h59m later", 22*time.Hour + 59*time.Minute, resendfake.Faults{LoseRate: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, resendfake.Options{})
			e.seed(20, nil)
			t0 := time.Now().UTC().Truncate(time.Millisecond)
			var clock atomic.Int64
			clock.Store(t0.UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
			cfg := sweeper.Config{Now: now, BackoffBase: time.Minute, BackoffMax: time.Minute, MaxAttempts: 8}

			e.fake.SetFaults(tc.faults)
			rep, err := e.sweeper(cfg).Run(context.Background())
			if !errors.Is(err, sweeper.ErrProviderFailing) || rep.Retried != 20 {
				t.Fatalf("first sweep: %+v %v", rep, err)
			}
			e.fake.SetFaults(resendfake.Faults{})
			before := e.fake.Stats().Requests
			clock.Store(t0.Add(tc.later).UnixNano())
			rep, err = e.sweeper(cfg).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.unknown {
				if rep.Sent != 20 || e.fake.Stats().Requests != before+1 {
					t.Fatalf("within the key's life the batch is re-sent: %+v", rep)
				}
				e.assertExactlyOnce()
				return
			}
			if rep.Requests != 0 || e.fake.Stats().Requests != before || rep.Unknown != 20 || rep.Failed != 20 {
				t.Fatalf("sweep after the key expired: %+v (provider requests %d -> %d)", rep, before, e.fake.Stats().Requests)
			}
			want := sweeper.DeliveryUnknown(t0)
			for _, id := range e.ids {
				tk := e.ticket(id)
				if tk.Status != notification.StatusFailed || tk.LastError != want ||
					!strings.Contains(tk.LastError, "requeue to send again") || !strings.Contains(tk.LastError, t0.Format(time.RFC3339)) {
					t.Fatalf("ticket %s: %s %q, want FAILED %q", id.Hex(), tk.Status, tk.LastError, want)
				}
			}
			if st, err := e.notes.Stats(context.Background()); err != nil || st.ByStatus[notification.StatusFailed] != 20 {
				t.Fatalf("figures: %v %v", st.ByStatus, err)
			}
			// The operator re-queues one ticket: it goes out in a new batch, under a new key.
			delivered := e.fake.DeliveredCount(e.ids[0].Hex())
			if _, err := e.notes.Requeue(context.Background(), e.ids[0]); err != nil {
				t.Fatal(err)
			}
			rep, err = e.sweeper(cfg).Run(context.Background())
			if err != nil || rep.Sent != 1 {
				t.Fatalf("after the re-queue: %+v %v", rep, err)
			}
			if got := e.fake.DeliveredCount(e.ids[0].Hex()); got != delivered+1 {
				t.Fatalf("re-queued ticket delivered %d times, %d before", got, delivered)
			}
			if tk := e.ticket(e.ids[0]); tk.Status != notification.StatusSuccess || tk.Generation != 1 {
				t.Fatalf("re-queued ticket: %s generation %d", tk.Status, tk.Generation)
			}
		})
	}
}

// Data written before the work collections (tickets PENDING with no queue entry, a batch in
// flight with no member list and no open entry, decided outcomes, a re-queue, a ticket
// created under an Idempotency-Key) is migrated once: the figures stay exact, the key still
// replays its ticket, and a sweep then delivers every pending ticket exactly once (the batch
// in flight re-sent under its own key).
func TestLegacyDataIsMigratedOnce(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	ctx := context.Background()
	// The database predates the new layout (newEnv's EnsureIndexes found it empty and marked
	// the migration needless).
	if _, err := e.db.Collection(nstore.MigrationsCollection).DeleteMany(ctx, bson.M{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Minute)
	tickets := e.db.Collection(nstore.TicketsCollection)
	insert := func(coll string, docs ...any) {
		t.Helper()
		if _, err := e.db.Collection(coll).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	legacy := func(i int, st notification.Status, extra bson.M) notification.ID {
		id := notification.NewID()
		doc := bson.M{"_id": id, "subject": "s", "content": "c", "recepientEmails": bson.A{"old" + string(rune('a'+i)) + "@example.com"},
			"status": st, "attempts": 0, "errors": bson.A{}, "generation": 0, "batch": "", "nextAttemptAt": now,
			"createdAt": now, "updatedAt": now}
		for k, v := range extra {
			doc[k] = v
		}
		insert(nstore.TicketsCollection, doc)
		return id
	}
	var pending []notification.ID
	for i := range 5 {
		pending = append(pending, legacy(i, notification.StatusPending, nil))
	}
	keyed := legacy(5, notification.StatusPending, bson.M{"idempotencyKey": "booking-paid:legacy", "requestHash": "h"})
	pending = append(pending, keyed)
	// A batch in flight, the old way: the batch and its assignments only.
	inFlight := []notification.ID{legacy(6, notification.StatusPending, nil), legacy(7, notification.StatusPending, nil)}
	pending = append(pending, inFlight...)
	insert(nstore.BatchesCollection, bson.M{"_id": "legacy-batch", "from": "CineFlow <tickets@cineflow.test>", "size": 2,
		"attempts": 1, "nextAttemptAt": now, "done": false, "errors": bson.A{}, "createdAt": now, "updatedAt": now})
	for _, id := range inFlight {
		insert(nstore.AssignmentsCollection, notification.Assignment{Key: notification.AssignmentKey(id, 0), Ticket: id,
			Batch: "legacy-batch", CreatedAt: now})
	}
	// Decided before: two delivered, one failed and re-queued (now pending in generation 1).
	for i := range 2 {
		id := legacy(8+i, notification.StatusSuccess, nil)
		insert(nstore.OutcomesCollection, notification.Outcome{Key: notification.AssignmentKey(id, 0), Ticket: id,
			Status: notification.StatusSuccess, At: now})
	}
	requeued := legacy(10, notification.StatusPending, bson.M{"generation": 1})
	insert(nstore.OutcomesCollection, notification.Outcome{Key: notification.AssignmentKey(requeued, 0), Ticket: requeued,
		Status: notification.StatusFailed, Error: "550", At: now})
	insert(nstore.RequeuesCollection, notification.GenerationRecord{Key: notification.AssignmentKey(requeued, 0), Ticket: requeued, At: now})
	pending = append(pending, requeued)

	for round := range 2 {
		rep, err := e.notes.MigrateLegacy(ctx)
		if err != nil || rep.Done != (round == 0) {
			t.Fatalf("migration round %d: %+v %v", round, rep, err)
		}
		if round == 0 && (rep.Queued != 7 || rep.Reopened != 1 || rep.Idempotent != 1) {
			t.Fatalf("migration: %+v, want 7 queued, 1 batch reopened, 1 key", rep)
		}
	}
	st, err := e.notes.Stats(ctx)
	if err != nil || st.ByStatus[notification.StatusSuccess] != 2 || st.ByStatus[notification.StatusFailed] != 0 ||
		st.ByStatus[notification.StatusPending] != int64(len(pending)) {
		t.Fatalf("figures after the migration: %v %v", st.ByStatus, err)
	}
	again, created, err := e.notes.Create(ctx, &notification.Ticket{Subject: "s", Content: "c",
		RecipientEmails: []string{"x@example.com"}, IdempotencyKey: "booking-paid:legacy", RequestHash: "h"})
	if err != nil || created || again.ID != keyed {
		t.Fatalf("the legacy key does not replay its ticket: %v %v", created, err)
	}
	rep, err := e.sweeper(sweeper.Config{BackoffBase: time.Millisecond}).Run(ctx)
	if err != nil || rep.Sent != len(pending) {
		t.Fatalf("sweep after the migration: %+v %v", rep, err)
	}
	e.ids = pending
	e.assertExactlyOnce()
	if n, _ := tickets.CountDocuments(ctx, bson.M{"status": notification.StatusSuccess}); n != int64(len(pending)+2) {
		t.Fatalf("%d tickets projected SUCCESS, want %d", n, len(pending)+2)
	}
}
