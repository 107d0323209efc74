package mongostore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

func newTestOutbox(t *testing.T) (*Outbox, *time.Time) {
	t.Helper()
	s := NewOutbox(devdb.TestDB(t))
	if err := s.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIndexes(t.Context()); err != nil { // idempotent
		t.Fatal(err)
	}
	now := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	return s, &now
}

func outboxEmail(key string) core.Email {
	return core.Email{Key: key, Recipients: []string{"ann@example.com", "bob@example.com"}, Subject: "Booked",
		Content: "Seats A1, A2", Kind: "booking-paid", Ref: "b-" + key,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
}

func TestOutboxEnqueueSameKeyKeepsOne(t *testing.T) {
	t.Parallel()
	s, _ := newTestOutbox(t)
	ctx := t.Context()
	first := outboxEmail("k1")
	second := first
	second.Subject = "something else"
	if err := s.Enqueue(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, second); err != nil {
		t.Fatalf("a repeated key must be success: %v", err)
	}
	// Concurrent repeats too: one document, no error.
	var wg sync.WaitGroup
	errc := make(chan error, 10)
	for range 10 {
		wg.Go(func() { errc <- s.Enqueue(ctx, outboxEmail("k2")) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.coll.CountDocuments(ctx, bson.M{}); err != nil || n != 2 {
		t.Fatalf("%d documents (%v), want 2", n, err)
	}
	due, err := s.Pending(ctx, s.now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var got core.OutboxEntry
	for _, e := range due {
		if e.Key == "k1" {
			got = e
		}
	}
	want := core.OutboxEntry{Email: first, CreatedAt: s.now(), NextAttemptAt: s.now()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}
	var raw bson.M
	if err := s.coll.FindOne(ctx, bson.M{"_id": "k1"}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"recipients", "subject", "content", "kind", "ref", "traceParent", "createdAt", "attempts", "nextAttemptAt"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("document lacks %s: %v", f, raw)
		}
	}
}

func TestOutboxPendingIsDueOnly(t *testing.T) {
	t.Parallel()
	s, now := newTestOutbox(t)
	ctx := t.Context()
	for i := range 5 {
		*now = now.Add(time.Second)
		if err := s.Enqueue(ctx, outboxEmail(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	// k1 fails: due in a minute; k3 was tried later, due in 2s.
	if err := s.Reschedule(ctx, "k1", 1, now.Add(time.Minute), "connection refused"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reschedule(ctx, "k3", 2, now.Add(2*time.Second), "503"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reschedule(ctx, "gone", 1, now.Add(time.Minute), "x"); err != nil {
		t.Fatalf("rescheduling a delivered email: %v", err)
	}
	keys := func(at time.Time, limit int) []string {
		t.Helper()
		due, err := s.Pending(ctx, at, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range due {
			out = append(out, e.Key)
		}
		return out
	}
	if got := fmt.Sprint(keys(*now, 10)); got != "[k0 k2 k4]" {
		t.Fatalf("due now: %s", got)
	}
	if got := fmt.Sprint(keys(*now, 2)); got != "[k0 k2]" {
		t.Fatalf("due now, limit 2: %s", got)
	}
	if got := fmt.Sprint(keys(now.Add(3*time.Second), 10)); got != "[k0 k2 k4 k3]" {
		t.Fatalf("due in 3s: %s", got)
	}
	if got := fmt.Sprint(keys(now.Add(time.Hour), 10)); got != "[k0 k2 k4 k3 k1]" {
		t.Fatalf("due in an hour: %s", got)
	}
	due, _ := s.Pending(ctx, now.Add(time.Hour), 10)
	e := due[len(due)-1]
	if e.Attempts != 1 || e.LastError != "connection refused" || !e.NextAttemptAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("rescheduled entry %+v", e)
	}
	if n, _ := s.coll.CountDocuments(ctx, bson.M{}); n != 5 {
		t.Fatalf("Reschedule of a missing key created a document: %d", n)
	}
}

func TestOutboxDeleteAndBacklog(t *testing.T) {
	t.Parallel()
	s, now := newTestOutbox(t)
	ctx := t.Context()
	b, err := s.Backlog(ctx)
	if err != nil || b.Pending != 0 || !b.Oldest.IsZero() {
		t.Fatalf("empty backlog %+v %v", b, err)
	}
	start := *now
	for i := range 3 {
		if err := s.Enqueue(ctx, outboxEmail(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Minute)
	}
	if b, err = s.Backlog(ctx); err != nil || b.Pending != 3 || !b.Oldest.Equal(start) {
		t.Fatalf("backlog %+v %v, want 3 since %v", b, err, start)
	}
	if err := s.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k0"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if b, err = s.Backlog(ctx); err != nil || b.Pending != 2 || !b.Oldest.Equal(start.Add(time.Minute)) {
		t.Fatalf("backlog after delete %+v %v", b, err)
	}
	due, _ := s.Pending(ctx, now.Add(time.Hour), 10)
	if len(due) != 2 || due[0].Key != "k1" {
		t.Fatalf("due after delete: %+v", due)
	}
}
