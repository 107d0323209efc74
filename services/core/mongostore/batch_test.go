package mongostore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

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
