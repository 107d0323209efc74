package devdb

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// repairIndexes lists, per table of the database file, whether it has the _id repair index.
func repairIndexes(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index') AND tbl_name NOT LIKE '\_ferretdb%' ESCAPE '\'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var typ, name, table string
		if err := rows.Scan(&typ, &name, &table); err != nil {
			t.Fatal(err)
		}
		if typ == "table" {
			out[table] = out[table] || false
		} else if name == idIndexName(table) {
			out[table] = true
		}
	}
	return out
}

// TestIDIndexRepair: every collection of every database gets the index FerretDB's _id
// queries need, also one dropped and created again, and the answers stay those of FerretDB.
func TestIDIndexRepair(t *testing.T) {
	t.Parallel()
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	ctx := context.Background()
	for _, name := range []string{"one", "two"} {
		for _, coll := range []string{"a", "b"} {
			docs := make([]any, 100)
			for i := range docs {
				docs[i] = bson.M{"_id": fmt.Sprint("k", i), "v": i}
			}
			if _, err := client.Database(name).Collection(coll).InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitRepaired := func(db string, tables int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := repairIndexes(t, filepath.Join(s.ids.dir, db+".sqlite"))
			all := len(got) == tables
			for _, ok := range got {
				all = all && ok
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("database %s: tables and repair indexes %v", db, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRepaired("one", 2)
	waitRepaired("two", 2)
	// The statements FerretDB runs for a find, an update and a delete by _id now search that
	// index (SQLite matches an index by its expression's text).
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.ids.dir, "two.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table := range repairIndexes(t, filepath.Join(s.ids.dir, "two.sqlite")) {
		for _, q := range []string{
			fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table),
			fmt.Sprintf(`UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, table),
			fmt.Sprintf(`DELETE FROM %q WHERE _ferretdb_sjson->'$._id' IN (?)`, table),
		} {
			args := []any{`"x"`, `"y"`}[:strings.Count(q, "?")]
			rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			for rows.Next() {
				var id, parent, notused int
				var detail string
				_ = rows.Scan(&id, &parent, &notused, &detail)
				plan.WriteString(detail + "; ")
			}
			rows.Close()
			if !strings.Contains(plan.String(), "USING INDEX "+idIndexName(table)) {
				t.Errorf("%s: plan %q does not use the repair index", q, plan.String())
			}
		}
	}
	c := client.Database("one").Collection("a")
	if err := c.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(ctx, bson.M{"_id": "again"}); err != nil {
		t.Fatal(err)
	}
	waitRepaired("one", 2)
	b := client.Database("two").Collection("b")
	var got bson.M
	if err := b.FindOne(ctx, bson.D{{Key: "_id", Value: "k99"}}).Decode(&got); err != nil || got["v"] != int32(99) {
		t.Fatalf("find: %v %v", got, err)
	}
	if err := b.FindOne(ctx, bson.D{{Key: "_id", Value: "nope"}}).Err(); err != mongo.ErrNoDocuments {
		t.Fatalf("a missing _id: %v", err)
	}
	if r, err := b.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k5"}}, bson.M{"$set": bson.M{"v": -1}}); err != nil || r.ModifiedCount != 1 {
		t.Fatalf("update: %+v %v", r, err)
	}
	if r, err := b.DeleteOne(ctx, bson.D{{Key: "_id", Value: "k6"}}); err != nil || r.DeletedCount != 1 {
		t.Fatalf("delete: %+v %v", r, err)
	}
	if _, err := b.InsertOne(ctx, bson.M{"_id": "k7"}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("a duplicate _id: %v", err)
	}
}

// BenchmarkIDQueries: finds (a late document, a missing one), updates and deletes by _id in
// a collection of 20,000 documents, with and without the repair index.
func BenchmarkIDQueries(b *testing.B) {
	for _, repair := range []bool{false, true} {
		b.Run(fmt.Sprintf("repair=%v", repair), func(b *testing.B) {
			s, err := Start(context.Background(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if !repair {
				s.ids.close()
				s.ids = nil
			}
			client, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
			if err != nil {
				b.Fatal(err)
			}
			defer client.Disconnect(context.Background())
			ctx := context.Background()
			c := client.Database("bench").Collection("docs")
			const n = 20000
			for j := 0; j < n; j += 1000 {
				docs := make([]any, 1000)
				for i := range docs {
					docs[i] = bson.M{"_id": fmt.Sprint("k", j+i), "v": i}
				}
				if _, err := c.InsertMany(ctx, docs); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(3 * idIndexEvery)
			for b.Loop() {
				const ops = 50
				timeIt := func(label string, op func(i int) error) {
					t0 := time.Now()
					for i := range ops {
						if err := op(i); err != nil && err != mongo.ErrNoDocuments {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/ops, label+"-ms/op")
				}
				timeIt("find-late", func(i int) error { return c.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("k", n-1-i)}}).Err() })
				timeIt("find-missing", func(i int) error { return c.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("x", i)}}).Err() })
				timeIt("update", func(i int) error {
					_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("k", n/2+i)}}, bson.M{"$inc": bson.M{"v": 1}})
					return err
				})
				timeIt("delete", func(i int) error {
					_, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("k", n-100-i)}})
					return err
				})
				timeIt("insert", func(i int) error {
					_, err := c.InsertOne(ctx, bson.M{"_id": fmt.Sprint("new", time.Now().UnixNano(), i)})
					return err
				})
				// Batches, as the booking engine's coalesced writes send them: per document.
				const batch = 500
				docs := make([]any, batch)
				dels := make([]mongo.WriteModel, batch)
				for i := range docs {
					id := fmt.Sprint("batch", time.Now().UnixNano(), i)
					docs[i] = bson.M{"_id": id, "v": i}
					dels[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}})
				}
				t0 := time.Now()
				if _, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/batch, "insertMany500-ms/doc")
				t0 = time.Now()
				if _, err := c.BulkWrite(ctx, dels, options.BulkWrite().SetOrdered(false)); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/batch, "delete500-ms/doc")
			}
		})
	}
}
