package mongox_test

import (
	"context"
	"errors"
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
	"github.com/cineflow/cineflow/pkg/mongox"
)

// TestExpiryTTL: MongoDB takes the TTL index; the embedded database refuses it, and the
// refusal is told apart from an unreachable server.
func TestExpiryTTL(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t)
	e := mongox.Expiry{Colls: []*mongo.Collection{db.Collection("a"), db.Collection("b")}, Field: "createdAt",
		Index: "createdAt_ttl", Retention: time.Hour}
	err := e.EnsureTTL(t.Context())
	if os.Getenv("TEST_MONGODB_URI") != "" {
		if err != nil {
			t.Fatalf("MongoDB refused the TTL index: %v", err)
		}
		return
	}
	if err == nil || !mongox.TTLRefused(err) {
		t.Fatalf("the embedded database: %v (refused: %v), want a refusal", err, mongox.TTLRefused(err))
	}
	if mongox.TTLRefused(context.DeadlineExceeded) || mongox.TTLRefused(nil) {
		t.Fatal("a timeout (or no error) is not a refusal")
	}
}

// TestExpiryClean: Clean removes, per collection, the documents older than the retention in
// insertion order, at most limit of them, stops at the first younger one (an old document
// inserted after it waits), reads the oldest documents only by an empty filter with a limit
// (Page at a time, or the limit at once), and removes each by exact _id.
func TestExpiryClean(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := devdb.TestDatabase(t)
	var mu sync.Mutex
	var cmds []bson.Raw
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.DatabaseName == name && (e.CommandName == "find" || e.CommandName == "delete") {
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
	now := time.Now().UTC().Truncate(time.Millisecond)
	fill := func(c *mongo.Collection, old, young int) {
		var docs []any
		for i := range old {
			docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("old-%03d", i)}, {Key: "at", Value: now.Add(-25*time.Hour + time.Duration(i)*time.Second)}})
		}
		for i := range young {
			docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("young-%d", i)}, {Key: "at", Value: now.Add(-time.Hour)}})
		}
		docs = append(docs, bson.D{{Key: "_id", Value: "late-old"}, {Key: "at", Value: now.Add(-30 * time.Hour)}})
		if _, err := c.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	a, b := db.Collection("a"), db.Collection("b")
	fill(a, 150, 5)
	fill(b, 30, 2)
	left := func(c *mongo.Collection) int64 {
		n, err := c.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	finds := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, cmd := range cmds {
			if cmd.Lookup("find").Type == bson.TypeString {
				n++
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
		cmds = nil
		return n
	}

	// A bounded clean-up without a page: one read of the limit per collection.
	e := mongox.Expiry{Colls: []*mongo.Collection{a, b}, Field: "at", Retention: 24 * time.Hour}
	if n, err := e.Clean(ctx, now, 20); err != nil || n != 40 {
		t.Fatalf("Clean(limit 20) removed %d (%v), want 20 of each collection", n, err)
	}
	if f := finds(); f != 2 {
		t.Errorf("%d finds, want one per collection", f)
	}
	// Unbounded, 50 at a time: the rest of the old ones, up to the first young one.
	e.Page = 50
	if n, err := e.Clean(ctx, now, 0); err != nil || n != 130+10 {
		t.Fatalf("Clean removed %d (%v), want the 140 old ones left before the young", n, err)
	}
	if f := finds(); f != 3+1 {
		t.Errorf("%d finds, want 3 pages of a and 1 of b", f)
	}
	if na, nb := left(a), left(b); na != 6 || nb != 3 {
		t.Fatalf("%d and %d documents left, want the young ones and the late old one (6 and 3)", na, nb)
	}
	if n, err := e.Clean(ctx, now, 0); err != nil || n != 0 {
		t.Fatalf("a second Clean removed %d (%v)", n, err)
	}
	// Once the young ones are old too, everything goes.
	if n, err := e.Clean(ctx, now.Add(24*time.Hour), 0); err != nil || n != 9 {
		t.Fatalf("Clean a day later removed %d (%v), want 9", n, err)
	}

	// Wrap turns the failures into the caller's errors.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	e.Wrap = func(err error, reading bool) error { return fmt.Errorf("reading %v: %w", reading, err) }
	if _, err := e.Clean(canceled, now, 0); err == nil || !errors.Is(err, context.Canceled) || err.Error()[:12] != "reading true" {
		t.Fatalf("Clean on an ended context: %v", err)
	}
}
