// Package outboxtest is the conformance suite of outbox.OutboxStore, in the manner of
// riverqueue/river's driver suite (riverdrivertest): one function runs every method's
// contract, and its concurrency contract, against a store an implementation's own tests make.
//
// The contract it checks, method by method (subtest names say the same):
//
//   - Enqueue is an insert keyed by Email.Key, durable when it returns nil, due at once. A key
//     enqueued again while its email waits unattempted is success and keeps the first email:
//     of many Enqueues of one key at once every one succeeds and one email, whole, is kept. A
//     key enqueued again after Reschedule moved its email is success too (the store may then
//     keep a second copy; Pending still lists the key once).
//   - Pending lists up to limit emails due at now, the longest due first, each key at most
//     once, with what was enqueued and its relay state (CreatedAt, Attempts, NextAttemptAt,
//     LastError).
//   - Reschedule makes an entry due again at next with its attempts and last error: it is not
//     pending before next, and is at next, once. Rescheduling an entry another relay deleted
//     or rescheduled meanwhile is no error (the email may be queued again: at most once).
//   - Delete removes an entry; one gone already is no error (of many Deletes of one entry at
//     once, every one succeeds).
//   - Backlog is zero, with a zero Oldest, when the outbox is empty; otherwise Pending is at
//     least one and at most the number of emails (an estimate), and Oldest the CreatedAt of
//     the oldest email, wherever it waits.
package outboxtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// RunOutboxStore runs the suite. newStore returns a new, empty store of its own on each call
// (the subtests run in parallel), ready for use. Its clock must be the wall clock: the suite
// asks for the emails due at time.Now().
func RunOutboxStore(t *testing.T, newStore func(t *testing.T) outbox.OutboxStore) {
	t.Helper()
	run := func(name string, f func(t *testing.T, ctx context.Context, s outbox.OutboxStore)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, t.Context(), newStore(t))
		})
	}

	run("Enqueue/DueAtOnce_ReadBackWhole", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		before := time.Now().Add(-time.Second)
		e := email("k1")
		if err := s.Enqueue(ctx, e); err != nil {
			t.Fatal(err)
		}
		due := pending(t, ctx, s, time.Now(), 10)
		if len(due) != 1 {
			t.Fatalf("pending %v, want k1", keys(due))
		}
		got := due[0]
		if fmt.Sprint(got.Email) != fmt.Sprint(e) || got.Attempts != 0 || got.LastError != "" ||
			got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now()) || got.NextAttemptAt.After(time.Now()) {
			t.Fatalf("pending entry %+v, want %+v enqueued just now, not attempted", got, e)
		}
	})

	run("Enqueue/SameKeyAgainIsSuccess_KeepsTheFirst", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		first := email("k1")
		second := first
		second.Subject, second.Content = "something else", "other content"
		for _, e := range []core.Email{first, second} {
			if err := s.Enqueue(ctx, e); err != nil {
				t.Fatalf("enqueue %q: %v (a key again is success)", e.Subject, err)
			}
		}
		due := pending(t, ctx, s, time.Now(), 10)
		if len(due) != 1 || fmt.Sprint(due[0].Email) != fmt.Sprint(first) {
			t.Fatalf("pending %+v, want the first email alone", due)
		}
	})

	run(fmt.Sprintf("Enqueue/Race%dOneKey_AllSucceed_OneEmailKept", racetest.Racers), func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		sent := make([]core.Email, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		for i := range sent {
			sent[i] = email("k1")
			sent[i].Subject, sent[i].Content = fmt.Sprint("subject ", i), fmt.Sprint("content ", i)
		}
		racetest.Race(racetest.Racers, func(i int) { errsOf[i] = s.Enqueue(ctx, sent[i]) })
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("enqueue %d: %v", i, err)
			}
		}
		due := pending(t, ctx, s, time.Now(), 100)
		if len(due) != 1 || !slices.ContainsFunc(sent, func(e core.Email) bool { return fmt.Sprint(e) == fmt.Sprint(due[0].Email) }) {
			t.Fatalf("pending %+v, want one of the emails, whole", due)
		}
		if b, err := s.Backlog(ctx); err != nil || b.Pending != 1 {
			t.Fatalf("backlog %+v, %v; want 1", b, err)
		}
	})

	run("Enqueue/AgainAfterReschedule_IsSuccess_ListedOnce", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		if err := s.Enqueue(ctx, email("k1")); err != nil {
			t.Fatal(err)
		}
		e := pending(t, ctx, s, time.Now(), 10)[0]
		if err := s.Reschedule(ctx, e, 1, ms(time.Now().Add(time.Minute)), "503"); err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(ctx, email("k1")); err != nil {
			t.Fatalf("enqueue of a rescheduled key: %v", err)
		}
		if due := pending(t, ctx, s, time.Now().Add(time.Hour), 10); len(due) != 1 {
			t.Fatalf("pending %+v, want k1 once", due)
		}
	})

	run("Pending/LongestDueFirst_UpToLimit", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		for i := range 6 {
			if err := s.Enqueue(ctx, email(fmt.Sprint("k", i))); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		all := pending(t, ctx, s, now, 100)
		if len(all) != 6 {
			t.Fatalf("pending %v, want 6", keys(all))
		}
		// k1 fails: due in a minute; k4 later still.
		retry := map[string]time.Time{"k1": ms(now.Add(time.Minute)), "k4": ms(now.Add(2 * time.Minute))}
		for _, e := range all {
			if next, ok := retry[e.Key]; ok {
				if err := s.Reschedule(ctx, e, 1, next, "503"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := keys(pending(t, ctx, s, now, 100)); !sameSet(got, []string{"k0", "k2", "k3", "k5"}) {
			t.Fatalf("due now: %v, want k0 k2 k3 k5", got)
		}
		two := pending(t, ctx, s, now, 2)
		if len(two) != 2 {
			t.Fatalf("due now, limit 2: %v", keys(two))
		}
		for _, e := range all {
			if _, later := retry[e.Key]; !later && !slices.ContainsFunc(two, func(x core.OutboxEntry) bool { return x.Key == e.Key }) &&
				e.NextAttemptAt.Before(two[1].NextAttemptAt) {
				t.Fatalf("limit 2 listed %v, but %s was due longer", keys(two), e.Key)
			}
		}
		got := keys(pending(t, ctx, s, now.Add(3*time.Minute), 100))
		if len(got) != 6 || got[4] != "k1" || got[5] != "k4" {
			t.Fatalf("due in 3 minutes: %v, want the four, then k1, then k4", got)
		}
	})

	run("Reschedule/NotDueBeforeNext_DueAtNextOnce_WithItsState", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		if err := s.Enqueue(ctx, email("k1")); err != nil {
			t.Fatal(err)
		}
		e := pending(t, ctx, s, time.Now(), 10)[0]
		next := ms(time.Now().Add(time.Hour))
		if err := s.Reschedule(ctx, e, 1, next, "connection refused"); err != nil {
			t.Fatal(err)
		}
		if due := pending(t, ctx, s, next.Add(-time.Second), 10); len(due) != 0 {
			t.Fatalf("pending before its next attempt: %v", keys(due))
		}
		due := pending(t, ctx, s, next, 10)
		if len(due) != 1 || due[0].Key != "k1" || due[0].Attempts != 1 || due[0].LastError != "connection refused" ||
			!due[0].NextAttemptAt.Equal(next) || !due[0].CreatedAt.Equal(e.CreatedAt) || fmt.Sprint(due[0].Email) != fmt.Sprint(e.Email) {
			t.Fatalf("pending at its next attempt: %+v, want k1 attempted once, due %v", due, next)
		}
		// Again, from where it waits now: both near (same span) and far.
		for i, d := range []time.Duration{time.Second, 24 * time.Hour} {
			e = due[0]
			next = ms(e.NextAttemptAt.Add(d))
			if err := s.Reschedule(ctx, e, 2+i, next, fmt.Sprint("503 #", 2+i)); err != nil {
				t.Fatal(err)
			}
			if early := pending(t, ctx, s, next.Add(-time.Millisecond), 10); len(early) != 0 {
				t.Fatalf("pending just before its next attempt: %+v", early)
			}
			due = pending(t, ctx, s, next, 10)
			if len(due) != 1 || due[0].Attempts != 2+i || due[0].LastError != fmt.Sprint("503 #", 2+i) || !due[0].NextAttemptAt.Equal(next) {
				t.Fatalf("rescheduled again: %+v, want attempt %d due %v", due, 2+i, next)
			}
		}
	})

	run(fmt.Sprintf("Delete/Race%dOneEntry_AllSucceed_Gone", racetest.Racers), func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		for _, k := range []string{"k1", "k2"} {
			if err := s.Enqueue(ctx, email(k)); err != nil {
				t.Fatal(err)
			}
		}
		var e core.OutboxEntry
		for _, x := range pending(t, ctx, s, time.Now(), 10) {
			if x.Key == "k1" {
				e = x
			}
		}
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { errsOf[i] = s.Delete(ctx, e) })
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("delete %d: %v (gone already is no error)", i, err)
			}
		}
		if got := keys(pending(t, ctx, s, time.Now().Add(time.Hour), 10)); !slices.Equal(got, []string{"k2"}) {
			t.Fatalf("pending after the deletes: %v, want k2 alone", got)
		}
		if err := s.Delete(ctx, e); err != nil {
			t.Fatalf("a later delete: %v", err)
		}
	})

	run(fmt.Sprintf("Reschedule/Race%dOneEntry_AllSucceed_OneCopy", racetest.Racers), func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		if err := s.Enqueue(ctx, email("k1")); err != nil {
			t.Fatal(err)
		}
		e := pending(t, ctx, s, time.Now(), 10)[0]
		next := ms(time.Now().Add(time.Minute))
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { errsOf[i] = s.Reschedule(ctx, e, 1, next, fmt.Sprint("relay ", i)) })
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("reschedule %d: %v", i, err)
			}
		}
		if due := pending(t, ctx, s, time.Now(), 10); len(due) != 0 {
			t.Fatalf("pending now: %v, want nothing", keys(due))
		}
		due := pending(t, ctx, s, next, 10)
		if len(due) != 1 || due[0].Attempts != 1 || !due[0].NextAttemptAt.Equal(next) {
			t.Fatalf("pending at next: %+v, want k1 once", due)
		}
		if err := s.Delete(ctx, due[0]); err != nil {
			t.Fatal(err)
		}
		if due := pending(t, ctx, s, next.Add(time.Hour), 10); len(due) != 0 {
			t.Fatalf("pending after its delete: %+v, want nothing (no copy left behind)", due)
		}
	})

	run("Reschedule/AfterAnotherRelayDeletedIt_NoError_AtMostOneCopy", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		if err := s.Enqueue(ctx, email("k1")); err != nil {
			t.Fatal(err)
		}
		e := pending(t, ctx, s, time.Now(), 10)[0]
		if err := s.Delete(ctx, e); err != nil { // relay A delivered it
			t.Fatal(err)
		}
		next := ms(time.Now().Add(time.Minute))
		if err := s.Reschedule(ctx, e, 1, next, "timeout"); err != nil { // relay B's attempt failed
			t.Fatalf("reschedule of an entry deleted meanwhile: %v", err)
		}
		if due := pending(t, ctx, s, next, 10); len(due) > 1 {
			t.Fatalf("pending %+v, want at most one copy", due)
		}
		// And at once, the two relays racing.
		if err := s.Enqueue(ctx, email("k2")); err != nil {
			t.Fatal(err)
		}
		var e2 core.OutboxEntry
		for _, x := range pending(t, ctx, s, time.Now(), 10) {
			if x.Key == "k2" {
				e2 = x
			}
		}
		errsOf := make([]error, 2)
		racetest.Race(2, func(i int) {
			if i == 0 {
				errsOf[i] = s.Delete(ctx, e2)
			} else {
				errsOf[i] = s.Reschedule(ctx, e2, 1, next, "timeout")
			}
		})
		if errsOf[0] != nil || errsOf[1] != nil {
			t.Fatalf("delete and reschedule at once: %v, %v", errsOf[0], errsOf[1])
		}
		n := 0
		for _, x := range pending(t, ctx, s, next, 10) {
			if x.Key == "k2" {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("k2 pending %d times, want at most once", n)
		}
	})

	run("Backlog/ZeroWhenEmpty_OldestWhereverItWaits", func(t *testing.T, ctx context.Context, s outbox.OutboxStore) {
		if b, err := s.Backlog(ctx); err != nil || b.Pending != 0 || !b.Oldest.IsZero() {
			t.Fatalf("empty outbox: %+v, %v", b, err)
		}
		for i := range 3 {
			if err := s.Enqueue(ctx, email(fmt.Sprint("k", i))); err != nil {
				t.Fatal(err)
			}
		}
		all := pending(t, ctx, s, time.Now(), 10)
		oldest := all[0].CreatedAt
		for _, e := range all {
			if e.CreatedAt.Before(oldest) {
				oldest = e.CreatedAt
			}
		}
		check := func(what string, most int64) {
			t.Helper()
			b, err := s.Backlog(ctx)
			if err != nil || b.Pending < 1 || b.Pending > most || !b.Oldest.Equal(oldest) {
				t.Fatalf("%s: backlog %+v, %v; want 1..%d since %v", what, b, err, most, oldest)
			}
		}
		check("3 enqueued", 3)
		for _, e := range all { // the oldest waits for a retry
			if e.CreatedAt.Equal(oldest) {
				if err := s.Reschedule(ctx, e, 1, ms(time.Now().Add(time.Hour)), "503"); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		check("the oldest rescheduled", 3)
		for _, e := range pending(t, ctx, s, time.Now().Add(2*time.Hour), 10) {
			if err := s.Delete(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if b, err := s.Backlog(ctx); err != nil || b.Pending != 0 || !b.Oldest.IsZero() {
			t.Fatalf("once every email is deleted: %+v, %v; want zero", b, err)
		}
	})
}

func email(key string) core.Email {
	return core.Email{Key: key, Recipients: []string{"ann@example.com", "bob@example.com"}, Subject: "Booked",
		Content: "Seats A1, A2", Kind: "booking-paid", Ref: "b-" + key,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
}

// pending is s.Pending, checked: at most limit, the longest due first, each key once, all due.
func pending(t *testing.T, ctx context.Context, s outbox.OutboxStore, now time.Time, limit int) []core.OutboxEntry {
	t.Helper()
	due, err := s.Pending(ctx, now, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) > limit {
		t.Fatalf("pending: %d entries, limit %d", len(due), limit)
	}
	seen := map[string]bool{}
	for i, e := range due {
		if seen[e.Key] {
			t.Fatalf("pending lists %s twice: %v", e.Key, keys(due))
		}
		seen[e.Key] = true
		if e.NextAttemptAt.After(now) {
			t.Fatalf("pending at %v lists %s, due at %v", now, e.Key, e.NextAttemptAt)
		}
		if i > 0 && e.NextAttemptAt.Before(due[i-1].NextAttemptAt) {
			t.Fatalf("pending not the longest due first: %+v", due)
		}
	}
	return due
}

func keys(es []core.OutboxEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
