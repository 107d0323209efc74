package mongostore

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// clockAt is a store clock fixed at t.
func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// TestIdempotencyTakeover: a claim left by a request whose process died (its clock an hour
// back) is taken over by the retries once its lease has passed: of 20 concurrent retries on
// two connections exactly one runs the request, every other is told it is in progress or
// gets its stored response; the dead request coming back to life changes nothing.
func TestIdempotencyTakeover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	name := devdb.TestDatabase(t)
	dead := NewIdempotencyWith(devdb.TestDBNamed(t, name), IdempotencyOptions{Now: clockAt(time.Now().Add(-time.Hour))})
	replicas := []*Idempotency{NewIdempotency(devdb.TestDBNamed(t, name)), NewIdempotency(devdb.TestDBNamed(t, name))}
	const scope, fp = "user|bookings|key-1", "fp-1"
	if r, c, err := dead.Begin(ctx, scope, fp); err != nil || r != nil || c.Generation != 0 {
		t.Fatalf("first claim: %v %v %+v", err, r, c)
	}
	// within the lease, a retry is told the request is in progress
	young := NewIdempotencyWith(devdb.TestDBNamed(t, name), IdempotencyOptions{Now: clockAt(time.Now().Add(-time.Hour + 30*time.Second))})
	if _, _, err := young.Begin(ctx, scope, fp); !errs.Is(err, errs.Conflict) {
		t.Fatalf("retry within the lease: %v", err)
	}
	if _, _, err := replicas[0].Begin(ctx, scope, "another body"); !errs.Is(err, errs.Unprocessable) {
		t.Fatalf("another body: %v", err)
	}

	const n = 20
	var (
		mu                  sync.Mutex
		ran, busy, replayed int
		winner              core.IdempotencyClaim
		start               = make(chan struct{})
		wg                  sync.WaitGroup
	)
	for i := range n {
		s := replicas[i%2]
		wg.Go(func() {
			<-start
			r, c, err := s.Begin(ctx, scope, fp)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && r == nil:
				ran++
				winner = c
				if err := s.Finish(ctx, c, fp, core.StoredResponse{Status: 201, Body: []byte(`{"booking":"B"}`)}); err != nil {
					t.Error(err)
				}
			case err == nil && string(r.Body) == `{"booking":"B"}` && r.Status == 201:
				replayed++
			case errs.Is(err, errs.Conflict):
				busy++
			default:
				t.Errorf("retry: %v %+v", err, r)
			}
		})
	}
	close(start)
	wg.Wait()
	if ran != 1 || winner.Generation != 1 {
		t.Fatalf("%d retries ran the request (generation %d), %d in progress, %d replayed; want exactly 1", ran, winner.Generation, busy, replayed)
	}
	t.Logf("1 retry ran the request, %d were told it is in progress, %d got its response", busy, replayed)

	// The dead request was only slow: its response and its failure change nothing.
	if err := dead.Finish(ctx, core.IdempotencyClaim{Scope: scope}, fp, core.StoredResponse{Status: 201, Body: []byte(`{"booking":"A"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := dead.Abandon(ctx, core.IdempotencyClaim{Scope: scope}); err != nil {
		t.Fatal(err)
	}
	r, _, err := replicas[1].Begin(ctx, scope, fp)
	if err != nil || r == nil || string(r.Body) != `{"booking":"B"}` {
		t.Fatalf("after the takeover: %v %+v", err, r)
	}
}

// TestIdempotencyAbandon: a request that failed (5xx) gives its key up: the next request with
// it runs at once, as a new generation, and only one of several concurrent ones does.
func TestIdempotencyAbandon(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := NewIdempotency(devdb.TestDB(t))
	const scope, fp = "user|payments|k", "fp"
	_, c, err := s.Begin(ctx, scope, fp)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Begin(ctx, scope, fp); !errs.Is(err, errs.Conflict) {
		t.Fatalf("while running: %v", err)
	}
	if err := s.Abandon(ctx, c); err != nil {
		t.Fatal(err)
	}
	var ran int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			r, c, err := s.Begin(ctx, scope, fp)
			if err == nil && r == nil {
				mu.Lock()
				ran++
				mu.Unlock()
				if c.Generation != 1 {
					t.Errorf("generation %d after one abandon", c.Generation)
				}
			} else if !errs.Is(err, errs.Conflict) {
				t.Errorf("retry: %v", err)
			}
		})
	}
	wg.Wait()
	if ran != 1 {
		t.Fatalf("%d retries ran after the abandon; want 1", ran)
	}
}

// TestIdempotencyCleanup: records older than the retention are removed, younger ones kept;
// the clean-up reads only the oldest rows (an empty filter and a limit) and deletes by exact
// _id, so its cost does not grow with the records kept; it stops at the first young one.
func TestIdempotencyCleanup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	name := devdb.TestDatabase(t)
	var cmds []bson.Raw
	var mu sync.Mutex
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" || e.CommandName == "delete" {
			mu.Lock()
			cmds = append(cmds, e.Command)
			mu.Unlock()
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(t)).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	db := client.Database(name)
	now := time.Now()
	at := func(ago time.Duration) *Idempotency {
		return NewIdempotencyWith(db, IdempotencyOptions{Now: clockAt(now.Add(-ago))})
	}
	// 150 old keys (claimed, answered, some given up), then 5 young, then one old again
	for i := range 150 {
		s := at(25*time.Hour - time.Duration(i)*time.Second)
		_, c, err := s.Begin(ctx, fmt.Sprintf("old-%d", i), "fp")
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			err = s.Abandon(ctx, c)
		} else {
			err = s.Finish(ctx, c, "fp", core.StoredResponse{Status: 201, Body: []byte("{}")})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		s := at(23 * time.Hour)
		_, c, _ := s.Begin(ctx, fmt.Sprintf("young-%d", i), "fp")
		if err := s.Finish(ctx, c, "fp", core.StoredResponse{Status: 201, Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := at(30*time.Hour).Begin(ctx, "late-old", "fp"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	cmds = nil
	mu.Unlock()

	removed, err := at(0).Clean(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	cleanCmds := cmds
	mu.Unlock()
	// 150 claims + 15 release markers + 135 responses
	if removed != 300 {
		t.Fatalf("removed %d records; want the 300 older than 24 h", removed)
	}
	s := at(0)
	for _, c := range []*mongo.Collection{s.keys, s.results} {
		n, _ := c.CountDocuments(ctx, bson.D{{Key: "createdAt", Value: bson.D{{Key: "$lt", Value: now.Add(-24 * time.Hour)}}}})
		young, _ := c.CountDocuments(ctx, bson.D{{Key: "createdAt", Value: bson.D{{Key: "$gte", Value: now.Add(-24 * time.Hour)}}}})
		want := int64(0)
		if c == s.keys {
			want = 1 // the old key stored after the young ones waits for them
		}
		if n != want || young != 5 {
			t.Errorf("%s: %d old and %d young records left; want %d and 5", c.Name(), n, young, want)
		}
	}
	for _, y := range []string{"young-0", "young-4"} {
		if r, _, err := s.Begin(ctx, y, "fp"); err != nil || r == nil {
			t.Errorf("young key %s lost its response: %v", y, err)
		}
	}
	if _, c, err := s.Begin(ctx, "old-3", "fp"); err != nil || c.Generation != 0 {
		t.Errorf("a key older than the retention is new again: %v %+v", err, c)
	}

	finds := 0
	for _, cmd := range cleanCmds {
		if cmd.Lookup("find").Type == bson.TypeString {
			finds++
			f, _ := cmd.Lookup("filter").Document().Elements()
			if len(f) != 0 || cmd.Lookup("limit").IsZero() || !cmd.Lookup("sort").IsZero() || !cmd.Lookup("skip").IsZero() {
				t.Errorf("clean-up find is not an empty filter with a limit: %s", cmd)
			}
			continue
		}
		deletes, _ := cmd.Lookup("deletes").Array().Values()
		for _, d := range deletes {
			q, _ := d.Document().Lookup("q").Document().Elements()
			if len(q) != 1 || q[0].Key() != "_id" || q[0].Value().Type == bson.TypeEmbeddedDocument {
				t.Errorf("clean-up delete is not by exact _id: %s", d)
			}
		}
	}
	if finds == 0 || finds > 10 {
		t.Errorf("%d finds for 300 records", finds)
	}
}

// TestIdempotencyTTL: where the server has TTL indexes, EnsureTTL creates them; the embedded
// database refuses them, and says so (the core then cleans up periodically).
func TestIdempotencyTTL(t *testing.T) {
	t.Parallel()
	s := NewIdempotency(devdb.TestDB(t))
	err := s.EnsureTTL(t.Context())
	if os.Getenv("TEST_MONGODB_URI") != "" {
		if err != nil {
			t.Fatalf("MongoDB refused the TTL index: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("the embedded database accepted a TTL index: let the clean-up go")
	}
	t.Logf("the embedded database refuses: %v", err)
}
