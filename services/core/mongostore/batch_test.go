package mongostore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// TestInserterDecidesEachKeyOnce: 40 goroutines insert overlapping documents (each key by
// 8 of them) through one inserter: every key is won by exactly one caller, each caller learns
// exactly which of its documents lost, and the collection holds every key once.
func TestInserterDecidesEachKeyOnce(t *testing.T) {
	t.Parallel()
	coll := devdb.TestDB(t).Collection("batch_test")
	in := newInserter(coll)
	const callers, keys = 40, 50
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			var docs []any
			var ids []string
			for k := c % 8; k < keys; k += 8 { // callers c and c+8, c+16... share keys
				id := fmt.Sprintf("k%02d", k)
				ids = append(ids, id)
				docs = append(docs, bson.M{"_id": id, "by": c})
			}
			dup, err := in.insert(context.Background(), docs...)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, id := range ids {
				if !dup[i] {
					wins[id]++
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		id := fmt.Sprintf("k%02d", k)
		if wins[id] != 1 {
			t.Errorf("%s won %d times", id, wins[id])
		}
	}
	n, err := coll.CountDocuments(context.Background(), bson.M{})
	if err != nil || n != keys {
		t.Fatalf("%d documents (%v), want %d", n, err, keys)
	}
}

// TestInserterReportsContextEnd: a caller whose context has ended gets its error at once.
func TestInserterReportsContextEnd(t *testing.T) {
	t.Parallel()
	in := newInserter(devdb.TestDB(t).Collection("batch_ctx"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.insert(ctx, bson.M{"_id": "x"}); err == nil {
		t.Fatal("no error after the context ended")
	}
}

// TestRequestWritesPassBackgroundBatches: while the expirer's (background) delete of 499
// holds is in flight, a request's delete of one hold goes out beside it, not queued behind it.
func TestRequestWritesPassBackgroundBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewBookings(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	holds := make([]core.Hold, 500)
	seats := make([]string, len(holds))
	for i := range holds {
		seats[i] = fmt.Sprintf("S%d", i)
		holds[i] = core.Hold{ShowID: "show", Seat: seats[i], BookingID: "bk", ExpiresAt: time.Now().Add(time.Hour)}
	}
	if won, err := s.InsertHolds(ctx, holds); err != nil || len(won) != len(holds) {
		t.Fatalf("won %d %v", len(won), err)
	}
	bgDone := make(chan error, 1)
	go func() { bgDone <- s.ReleaseHolds(core.AsBackground(ctx), "show", "bk", seats[1:]) }()
	for deadline := time.Now().Add(5 * time.Second); !func() bool {
		d := s.bg.del.holds
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.running
	}(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background delete never went out on the background queue")
		}
	}
	if err := s.ReleaseHolds(ctx, "show", "bk", seats[:1]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bgDone:
		t.Fatalf("the request's delete waited for the background batch (%v)", err)
	default:
	}
	if err := <-bgDone; err != nil {
		t.Fatal(err)
	}
	if left, err := s.ShowHolds(ctx, "show"); err != nil || len(left) != 0 {
		t.Fatalf("%d holds left (%v)", len(left), err)
	}
}

// TestSetByIDsManyAtOnce: a projection batch (up to projectionBatch ids) sets every document.
// The embedded database never answered one bulk write of about 100 update statements, so the
// statements go out in smaller bulk writes.
func TestSetByIDsManyAtOnce(t *testing.T) {
	t.Parallel()
	c := devdb.TestDB(t).Collection("projected")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const n = 500
	docs, ids := make([]any, n), make([]any, n)
	for i := range n {
		ids[i] = fmt.Sprintf("doc-%03d", i)
		docs[i] = bson.M{"_id": ids[i], "status": "IN_PROCESS"}
	}
	if _, err := c.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if err := setByIDs(ctx, c, ids, bson.M{"status": "SUCCESSFULL"}); err != nil {
		t.Fatalf("setByIDs of %d: %v", n, err)
	}
	left, err := c.CountDocuments(ctx, bson.M{"status": "IN_PROCESS"})
	if err != nil || left != 0 {
		t.Fatalf("%d documents not set (%v)", left, err)
	}
}
