package mongostore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// failAt records FAILED outcomes of the tickets' current generations as a sweep does (the
// store's Decide), stamped at, with the reason.
func failAt(t testing.TB, s *mongostore.Store, at time.Time, reason string, tickets ...notification.ID) {
	t.Helper()
	ctx := context.Background()
	var out []notification.Outcome
	for _, id := range tickets {
		g, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, notification.Outcome{Key: notification.AssignmentKey(id, g.Generation), Ticket: id,
			Generation: g.Generation, Status: notification.StatusFailed, Error: reason, Attempts: 1, At: at})
	}
	if _, err := s.Decide(ctx, out); err != nil {
		t.Fatal(err)
	}
}

// newTickets creates n PENDING tickets, a few at a time.
func newTickets(t testing.TB, s *mongostore.Store, n int) []notification.ID {
	t.Helper()
	out := make([]notification.ID, n)
	err := parallel(n, 8, func(i int) error {
		tk, _, err := s.Create(context.Background(), &notification.Ticket{Subject: fmt.Sprintf("s%d", i), Content: "c",
			RecipientEmails: []string{fmt.Sprintf("u%d@example.com", i)}})
		if err == nil {
			out[i] = tk.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parallel runs f(i) for i in [0, n), width at a time, and returns the first error.
func parallel(n, width int, f func(i int) error) error {
	sem := make(chan struct{}, width)
	errc := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// statusOf returns the tickets' resolved status and generation, as "STATUS/gen".
func statusOf(t testing.TB, s *mongostore.Store, tickets ...notification.ID) []string {
	t.Helper()
	out := make([]string, len(tickets))
	for i, id := range tickets {
		tk, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = fmt.Sprintf("%s/%d", tk.Status, tk.Generation)
	}
	return out
}

func all(n int, v string) []string { return slices.Repeat([]string{v}, n) }

func TestRequeueFailedSelectsByWindowAndReason(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	base := msNow().Add(-3 * time.Hour)
	ts := newTickets(t, s, 21)
	old, mid, rejected, recent, done, pending := ts[0:5], ts[5:10], ts[10:13], ts[13:17], ts[17:19], ts[19:21]
	failAt(t, s, base, "550 mailbox unavailable", old...)
	failAt(t, s, base.Add(time.Hour), "gave up after 8 attempts: provider 503", mid...)
	decideAll(t, s, notification.StatusSuccess, done...)
	failAt(t, s, base.Add(time.Hour+time.Minute), "rejected by the provider: invalid recipient", rejected...)
	failAt(t, s, base.Add(170*time.Minute), "gave up after 8 attempts: timeout", recent...)

	requeue := func(f notification.RequeueFilter) notification.RequeueReport {
		t.Helper()
		rep, err := s.RequeueFailed(ctx, f)
		if err != nil {
			t.Fatalf("RequeueFailed %+v: %v", f, err)
		}
		return rep
	}
	window := notification.RequeueFilter{FailedSince: base.Add(30 * time.Minute), FailedUntil: base.Add(90 * time.Minute)}

	// A dry run counts and changes nothing; the reason matches whatever its case.
	dry := window
	dry.ReasonContains, dry.DryRun = "GAVE UP", true
	if rep := requeue(dry); rep.Matched != 5 || rep.Requeued != 0 || rep.More || !rep.DryRun {
		t.Fatalf("dry run: %+v, want 5 matched", rep)
	}
	if got := statusOf(t, s, mid...); !slices.Equal(got, all(5, "FAILED/0")) {
		t.Fatalf("after the dry run: %v", got)
	}

	// The window, 6 at a time: the newest failures first, then the rest from the cursor.
	first := window
	first.Limit = 6
	rep := requeue(first)
	if rep.Matched != 6 || rep.Requeued != 6 || !rep.More || rep.Next == "" {
		t.Fatalf("first page: %+v, want 6 re-queued and more", rep)
	}
	if got := statusOf(t, s, rejected...); !slices.Equal(got, all(3, "PENDING/1")) {
		t.Fatalf("the newest failures of the window first: %v", got)
	}
	next := first
	next.Cursor = rep.Next
	if rep := requeue(next); rep.Matched != 2 || rep.Requeued != 2 || rep.More {
		t.Fatalf("second page: %+v, want the 2 left and no more", rep)
	}
	if got := statusOf(t, s, append(slices.Clone(mid), rejected...)...); !slices.Equal(got, all(8, "PENDING/1")) {
		t.Fatalf("the window: %v", got)
	}
	if got := statusOf(t, s, append(slices.Clone(old), recent...)...); !slices.Equal(got, all(9, "FAILED/0")) {
		t.Fatalf("outside the window: %v", got)
	}
	if got := statusOf(t, s, append(slices.Clone(done), pending...)...); !slices.Equal(got, []string{"SUCCESS/0", "SUCCESS/0", "PENDING/0", "PENDING/0"}) {
		t.Fatalf("delivered and pending tickets: %v", got)
	}
	// The same request again: the tickets are PENDING, nothing matches.
	if rep := requeue(first); rep.Matched != 0 || rep.Requeued != 0 || rep.More {
		t.Fatalf("repeated request: %+v, want nothing", rep)
	}

	// A reason picks among the failures; no upper bound reaches the newest.
	if rep := requeue(notification.RequeueFilter{FailedSince: base, ReasonContains: "timeout"}); rep.Requeued != 4 {
		t.Fatalf("by reason: %+v, want the 4 timeouts", rep)
	}
	if got := statusOf(t, s, recent...); !slices.Equal(got, all(4, "PENDING/1")) {
		t.Fatalf("timeouts: %v", got)
	}
	// A ticket re-queued fails again: its new generation is a failure of its own.
	failAt(t, s, msNow(), "550 mailbox unavailable", recent[0])
	if rep := requeue(notification.RequeueFilter{FailedSince: base}); rep.Requeued != 6 || rep.Matched != 6 {
		t.Fatalf("everything left: %+v, want the 5 old ones and the one failed again", rep)
	}
	if got := statusOf(t, s, recent[0]); got[0] != "PENDING/2" {
		t.Fatalf("failed again and re-queued: %v", got)
	}
	tally, err := s.ReadTally(ctx)
	if err != nil || tally.Requeued != 18 {
		t.Fatalf("re-queues counted: %+v %v, want 18", tally, err)
	}

	// Bad filters and cursors.
	for _, f := range []notification.RequeueFilter{
		{},
		{FailedSince: base, FailedUntil: base.Add(-time.Second)},
		{FailedSince: base, Limit: notification.MaxRequeueLimit + 1},
		{FailedSince: base, Cursor: "r01"},
		{FailedSince: base, Cursor: "f12"},
	} {
		if _, err := s.RequeueFailed(ctx, f); !errs.Is(err, errs.Invalid) {
			t.Errorf("RequeueFailed %+v: %v, want invalid", f, err)
		}
	}
}

// The walk reads the failures from FailedUntil down to FailedSince: its reads do not grow
// with the failures outside the window (nor with the tickets stored).
func TestRequeueFailedReadsOnlyTheWindow(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	now := msNow()
	const nOld, nNew = 300, 10
	ts := newTickets(t, s, nOld+nNew)
	old, recent := ts[:nOld], ts[nOld:]
	failAt(t, s, now.Add(-2*time.Hour), "550", old...)
	failAt(t, s, now.Add(-time.Minute), "550", recent...)

	last, err := s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: now.Add(-10 * time.Minute), DryRun: true})
	if err != nil || last.Matched != nNew || last.More {
		t.Fatalf("the last 10 minutes: %+v %v", last, err)
	}
	// One round of 16 entries covers the 10 failures and the first one before the window.
	if last.Examined > 16 {
		t.Errorf("the last 10 minutes examined %d entries for %d failures (of %d)", last.Examined, nNew, nOld+nNew)
	}
	// An old window: the newest failures are skipped by bisection, not read one by one.
	rep, err := s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: now.Add(-3 * time.Hour),
		FailedUntil: now.Add(-2*time.Hour + time.Second), Limit: 40, DryRun: true})
	if err != nil || rep.Matched != 40 || !rep.More {
		t.Fatalf("an old window: %+v %v", rep, err)
	}
	if rep.Examined > 40+16+12 { // its 40, a round's slack, the bisection
		t.Errorf("an old window examined %d entries for 40 matches", rep.Examined)
	}
	t.Logf("of %d failures: the last 10 minutes read %d entries; 40 of an old window %d", nOld+nNew, last.Examined, rep.Examined)
}

// Bulk re-queues and single retries of the same tickets at once: each ticket's generation is
// re-queued once, by exactly one of them.
func TestRequeueFailedRacingRetriesRequeuesEachOnce(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	const n = 40
	ts := newTickets(t, s, n)
	since := msNow()
	failAt(t, s, since, "gave up after 8 attempts", ts...)

	var bulk, single atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 4 { // bulk re-queues, newest failures first, in pages of various sizes
		wg.Go(func() {
			<-start
			f := notification.RequeueFilter{FailedSince: since, Limit: 3 + 5*w}
			for range 100 {
				rep, err := s.RequeueFailed(ctx, f)
				if err != nil {
					t.Error(err)
					return
				}
				bulk.Add(int64(rep.Requeued))
				if !rep.More {
					return
				}
				f.Cursor = rep.Next
			}
		})
	}
	for range 4 { // and retries of every ticket, oldest first
		wg.Go(func() {
			<-start
			for _, id := range ts {
				_, err := s.Requeue(ctx, id)
				switch {
				case err == nil:
					single.Add(1)
				case !errs.Is(err, errs.Conflict):
					t.Error(err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := bulk.Load() + single.Load(); got != n {
		t.Fatalf("%d bulk + %d single re-queues, want %d in all", bulk.Load(), single.Load(), n)
	}
	if got := statusOf(t, s, ts...); !slices.Equal(got, all(n, "PENDING/1")) {
		t.Fatalf("tickets after the race: %v", got)
	}
	tally, err := s.ReadTally(ctx)
	if err != nil || tally.Requeued != n {
		t.Fatalf("re-queues counted: %+v %v, want %d", tally, err, n)
	}
	if bulk.Load() == 0 || single.Load() == 0 {
		t.Fatalf("%d bulk and %d single re-queues: the race was not exercised", bulk.Load(), single.Load())
	}
	t.Logf("%d re-queued by bulk requests, %d by single retries", bulk.Load(), single.Load())
}

// Tickets an earlier version stored FAILED (no delivery records) are listed by the back-fill,
// ordered by ticket rather than by failure: a window that opens before the back-fill ended
// reads them all and re-queues those that match; one that opens after it does not read them.
func TestRequeueFailedReachesBackfilledTickets(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t)
	ctx := context.Background()
	now := msNow()
	var legacy []notification.ID
	for i := range 20 {
		legacy = append(legacy, legacyTicket(t, db, now.Add(-3*time.Hour+time.Duration(i)*time.Second), notification.StatusFailed, 0))
	}
	s := mongostore.New(db)
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.BackfillList(ctx); err != nil || n != len(legacy) {
		t.Fatalf("back-fill: %d %v", n, err)
	}
	// The back-fill ended an hour ago; since then 5 tickets failed.
	if _, err := db.Collection(mongostore.MigrationsCollection).UpdateOne(ctx, bson.M{"_id": "ticket-list-v1"},
		bson.M{"$set": bson.M{"at": now.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	fresh := newTickets(t, s, 5)
	failAt(t, s, now.Add(-time.Minute), "timeout", fresh...)

	rep, err := s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: now.Add(-10 * time.Minute), DryRun: true})
	if err != nil || rep.Matched != 5 || rep.More || rep.Examined > 5 {
		t.Fatalf("a window after the back-fill: %+v %v, want the 5 fresh failures and no back-filled entry read", rep, err)
	}
	rep, err = s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: now.Add(-4 * time.Hour), FailedUntil: now.Add(-2 * time.Hour)})
	if err != nil || rep.Requeued != 20 || rep.More {
		t.Fatalf("a window before the back-fill: %+v %v, want the 20 earlier tickets", rep, err)
	}
	if got := statusOf(t, s, legacy...); !slices.Equal(got, all(20, "PENDING/1")) {
		t.Fatalf("earlier tickets: %v", got)
	}
	if got := statusOf(t, s, fresh...); !slices.Equal(got, all(5, "FAILED/0")) {
		t.Fatalf("fresh failures outside the window: %v", got)
	}
}

// Failure times are stored to the millisecond: a window opening within a failure's
// millisecond includes it.
func TestRequeueFailedSinceWithinTheMillisecond(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	at := msNow()
	ts := newTickets(t, s, 1)
	failAt(t, s, at, "550", ts...)
	rep, err := s.RequeueFailed(context.Background(), notification.RequeueFilter{FailedSince: at.Add(700 * time.Microsecond)})
	if err != nil || rep.Requeued != 1 {
		t.Fatalf("%+v %v, want the failure re-queued", rep, err)
	}
}
