package mongox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/mongox"
)

// TestInserterDecidesEachKeyOnce: 40 goroutines insert overlapping documents (each key by
// 8 of them) through one inserter: every key is won by exactly one caller, each caller learns
// exactly which of its documents lost, and the collection holds every key once.
func TestInserterDecidesEachKeyOnce(t *testing.T) {
	t.Parallel()
	coll := devdb.TestDB(t).Collection("batch_test")
	in := mongox.NewInserter(coll)
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
			dup, err := in.Insert(context.Background(), docs...)
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

// TestInserterOneDocumentPerCaller: 200 callers insert one document each into one of three
// collections, 4 callers per key: in each collection every key is won once, and each loser
// gets an error for which IsDuplicateKey holds (InsertOneInto's contract); a document of
// another kind of failure (here none) would be an error of its own.
func TestInserterOneDocumentPerCaller(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t)
	colls := []*mongo.Collection{db.Collection("shard0"), db.Collection("shard1"), db.Collection("shard2")}
	in := mongox.NewInserter(colls...)
	const callers = 200
	var won, lost [3]atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			shard := c % 3
			err := in.InsertOneInto(context.Background(), shard, bson.M{"_id": fmt.Sprintf("k%03d", c/4), "by": c})
			switch {
			case err == nil:
				won[shard].Add(1)
			case mongox.IsDuplicateKey(err):
				lost[shard].Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for shard, c := range colls {
		n, err := c.CountDocuments(context.Background(), bson.M{})
		if err != nil || n != won[shard].Load() {
			t.Errorf("shard %d: %d documents (%v), %d won", shard, n, err, won[shard].Load())
		}
	}
	if w := won[0].Load() + won[1].Load() + won[2].Load(); w+lost[0].Load()+lost[1].Load()+lost[2].Load() != callers {
		t.Fatalf("%d won and %d lost of %d", w, callers-w, callers)
	}
	// Keys per shard: each key k is inserted by callers 4k..4k+3, whose shards are the
	// residues of those numbers mod 3; count the distinct (shard, key) pairs.
	pairs := map[[2]int]bool{}
	for c := range callers {
		pairs[[2]int{c % 3, c / 4}] = true
	}
	if w := won[0].Load() + won[1].Load() + won[2].Load(); w != int64(len(pairs)) {
		t.Fatalf("%d inserts won, want one per shard and key (%d)", w, len(pairs))
	}
	if err := in.InsertOne(context.Background(), bson.M{"_id": "k000"}); !mongox.IsDuplicateKey(err) {
		t.Fatalf("InsertOne of a stored key: %v, want a duplicate", err)
	}
}

// TestInserterReportsContextEnd: a caller whose context has ended gets its error at once.
func TestInserterReportsContextEnd(t *testing.T) {
	t.Parallel()
	in := mongox.NewInserter(devdb.TestDB(t).Collection("batch_ctx"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.Insert(ctx, bson.M{"_id": "x"}); err == nil {
		t.Fatal("no error after the context ended")
	}
	if err := in.InsertOne(ctx, bson.M{"_id": "y"}); err == nil {
		t.Fatal("no error after the context ended")
	}
}

// BenchmarkInserter: 16 concurrent callers insert through one inserter, one document each
// (a ticket's create) or four of which one is a duplicate (a booking's holds).
func BenchmarkInserter(b *testing.B) {
	for _, per := range []int{1, 4} {
		b.Run(fmt.Sprintf("docs=%d", per), func(b *testing.B) {
			in := mongox.NewInserter(devdb.TestDB(b).Collection("bench"))
			var seq atomic.Int64
			b.SetParallelism(8) // 16 callers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					if per == 1 {
						if err := in.InsertOne(context.Background(), bson.M{"_id": n}); err != nil {
							b.Error(err)
						}
						continue
					}
					docs := make([]any, per)
					for i := range docs {
						docs[i] = bson.M{"_id": fmt.Sprintf("%d-%d", n, i)}
					}
					docs[per-1] = bson.M{"_id": fmt.Sprintf("%d-%d", n-1, 0)} // the previous caller's first
					if _, err := in.Insert(context.Background(), docs...); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}
