package devdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The statements FerretDB runs for a find, update or delete by exactly one _id are served by
// an index once the indexer has seen the collection's table, and they still find, change and
// remove the right documents.
func TestExactIDStatementsUseAnIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	ctx := context.Background()
	coll := client.Database("idx").Collection("things")
	ids := make([]bson.ObjectID, 50)
	docs := make([]any, len(ids))
	for i := range ids {
		ids[i] = bson.NewObjectID()
		docs[i] = bson.M{"_id": ids[i], "n": i}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Database("idx").Collection("strings").InsertOne(ctx, bson.M{"_id": "a:0"}); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", "file:"+dir+"/idx.sqlite?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := func() []string {
		rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\_ferretdb\_%' ESCAPE '\'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			out = append(out, n)
		}
		return out
	}
	plan := func(q string, args ...any) string {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			b.WriteString(detail + "; ")
		}
		return b.String()
	}
	if got := tables(); len(got) != 2 {
		t.Fatalf("tables %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, tbl := range tables() {
		for {
			var n int
			db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, tbl+idIndexSuffix).Scan(&n)
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("table %s has no _id index after 10s", tbl)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, q := range []string{
			fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, tbl),
			fmt.Sprintf(`UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, tbl),
			fmt.Sprintf(`DELETE FROM %q WHERE _ferretdb_sjson->'$._id' IN (?, ?)`, tbl),
		} {
			args := []any{"x", "y"}
			if strings.HasPrefix(q, "SELECT") {
				args = args[:1]
			}
			if p := plan(q, args...); !strings.Contains(p, "USING INDEX "+tbl+idIndexSuffix) {
				t.Errorf("%s: plan %q does not use the _id index", q, p)
			}
		}
	}

	// The documents are found, changed and removed by _id as before.
	if err := coll.FindOne(ctx, bson.M{"_id": ids[49]}).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := coll.UpdateOne(ctx, bson.M{"_id": ids[48]}, bson.M{"$set": bson.M{"n": -1}}); err != nil || r.ModifiedCount != 1 {
		t.Fatalf("update: %+v %v", r, err)
	}
	var got struct{ N int }
	if err := coll.FindOne(ctx, bson.M{"_id": ids[48]}).Decode(&got); err != nil || got.N != -1 {
		t.Fatalf("after update: %+v %v", got, err)
	}
	if r, err := coll.DeleteOne(ctx, bson.M{"_id": ids[47]}); err != nil || r.DeletedCount != 1 {
		t.Fatalf("delete: %+v %v", r, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.M{}); err != nil || n != 49 {
		t.Fatalf("count after delete: %d %v", n, err)
	}
	// The unique _id is still enforced (by FerretDB's own index).
	if _, err := coll.InsertOne(ctx, bson.M{"_id": ids[0]}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate _id: %v", err)
	}
	// Dropping the collection drops its table and the added index with it.
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tables(); len(got) != 1 {
		t.Fatalf("tables after drop %v", got)
	}
}
