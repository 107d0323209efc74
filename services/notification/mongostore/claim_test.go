package mongostore_test

import (
	"context"
	"math/bits"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// A claim is found from a hint however far behind (or ahead of) the batch's last claim, at a
// cost that grows with the log of the distance: sweeps that claim a batch and let it go
// without saving the claim number (a batch read not due after all, a sweep killed after its
// claim) never make it unclaimable. From an exact hint a claim costs two reads by _id and
// one insert.
func TestClaimFromAHintFarBehindCostsLogarithmicReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var finds, inserts atomic.Int64
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		if coll != mongostore.ClaimsCollection {
			return
		}
		switch e.CommandName {
		case "find":
			finds.Add(1)
		case "insert":
			inserts.Add(1)
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(t)).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	s := mongostore.New(client.Database(devdb.TestDatabase(t)))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}

	batch := bson.NewObjectID().Hex()
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(i int) time.Time { return now.Add(time.Duration(i) * time.Second) }
	// claim claims at time i (each lease lasting a minute) from hint from and reports the
	// number won and the reads and inserts it made.
	claim := func(i, from int) (n int, ok bool, reads, ins int64) {
		t.Helper()
		f0, i0 := finds.Load(), inserts.Load()
		n, ok, err := s.Claim(ctx, batch, from, "h", at(i), at(i).Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return n, ok, finds.Load() - f0, inserts.Load() - i0
	}
	// 1,000 claims taken and released at once, the hint kept up to date.
	const last = 1000
	for i := 1; i <= last; i++ {
		n, ok, _, _ := claim(i, i-1)
		if n != i || !ok {
			t.Fatalf("claim %d from hint %d: %d %v", i, i-1, n, ok)
		}
		if err := s.ReleaseClaim(ctx, batch, n, at(i)); err != nil {
			t.Fatal(err)
		}
	}
	// log2 of a distance, rounded up
	log2 := func(d int) int64 { return int64(bits.Len(uint(d))) }

	next := last + 1
	for _, tc := range []struct {
		name     string
		from     int
		maxReads int64
	}{
		{"no hint", 0, 2*log2(last) + 1},
		{"a hint 500 behind", next - 500, 2*log2(500) + 2},
		{"a hint 65 behind", next - 65, 2*log2(65) + 2},
		{"a hint 4,000 ahead", next + 4000, log2(next+4000) + 2},
		{"the exact hint", next + 3, 2}, // the last claim: next+3 once the cases above took theirs
	} {
		n, ok, reads, ins := claim(next, tc.from)
		if n != next || !ok {
			t.Fatalf("%s (%d): claim %d %v; want claim %d", tc.name, tc.from, n, ok, next)
		}
		if reads > tc.maxReads || ins != 1 {
			t.Fatalf("%s (%d): %d reads, %d inserts; want at most %d reads and one insert", tc.name, tc.from, reads, ins, tc.maxReads)
		}
		t.Logf("%s: %d reads", tc.name, reads)
		// While the lease holds, no hint wins a claim.
		if n, ok, _, _ := claim(next, 0); ok {
			t.Fatalf("claim %d won while claim %d holds", n, next)
		}
		if n, ok, _, _ := claim(next, next); ok {
			t.Fatalf("claim %d won while claim %d holds", n, next)
		}
		if err := s.ReleaseClaim(ctx, batch, next, at(next)); err != nil {
			t.Fatal(err)
		}
		next++
	}
}
