package faultproxy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
)

// proxied returns a proxy in front of the test database, a collection through it and the same
// collection reached directly.
func proxied(t *testing.T) (*faultproxy.Proxy, *mongo.Collection, *mongo.Collection) {
	t.Helper()
	name := devdb.TestDatabase(t)
	p, db := faultproxy.StartTest(t, name, 2)
	return p, db.Collection("c"), devdb.TestDBNamed(t, name).Collection("c")
}

func exists(t *testing.T, c *mongo.Collection, id string) bool {
	t.Helper()
	err := c.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func TestDropReplyLandsTheWrite(t *testing.T) {
	t.Parallel()
	p, via, direct := proxied(t)
	ctx := context.Background()
	r := p.Add(&faultproxy.Rule{Command: "insert", Collection: "c", Fault: faultproxy.DropReply, Times: 1})
	if _, err := via.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err == nil {
		t.Fatal("insert with its reply dropped: no error")
	}
	if r.Fired() != 1 || !exists(t, direct, "a") {
		t.Fatalf("fired %d; the document must exist", r.Fired())
	}
	// The rule is spent: the next insert goes through, over a new connection.
	if _, err := via.InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}}); err != nil {
		t.Fatal(err)
	}
}

func TestCutBeforeLosesTheWrite(t *testing.T) {
	t.Parallel()
	p, via, direct := proxied(t)
	ctx := context.Background()
	p.Add(&faultproxy.Rule{Command: "insert", Collection: "c", Fault: faultproxy.CutBefore, Skip: 1, Times: 1})
	if _, err := via.InsertOne(ctx, bson.D{{Key: "_id", Value: "first"}}); err != nil {
		t.Fatal(err) // skipped
	}
	if _, err := via.InsertOne(ctx, bson.D{{Key: "_id", Value: "cut"}}); err == nil {
		t.Fatal("insert cut before the server: no error")
	}
	if exists(t, direct, "cut") || !exists(t, direct, "first") {
		t.Fatal("the cut insert must not exist, the first must")
	}
}

func TestDelayOutlastsTheClient(t *testing.T) {
	t.Parallel()
	p, via, direct := proxied(t)
	p.Add(&faultproxy.Rule{Command: "insert", Fault: faultproxy.Delay, Delay: 500 * time.Millisecond, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := via.InsertOne(ctx, bson.D{{Key: "_id", Value: "slow"}}); err == nil {
		t.Fatal("insert past its deadline: no error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !exists(t, direct, "slow") {
		if time.Now().After(deadline) {
			t.Fatal("the delayed insert never landed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMatchOnBody(t *testing.T) {
	t.Parallel()
	p, via, _ := proxied(t)
	ctx := context.Background()
	r := p.Add(&faultproxy.Rule{Command: "find", Fault: faultproxy.CutBefore, Match: func(b bson.Raw) bool {
		v, err := b.LookupErr("filter", "_id")
		return err == nil && v.StringValue() == "x"
	}})
	if err := via.FindOne(ctx, bson.D{{Key: "_id", Value: "y"}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("unmatched find: %v", err)
	}
	if err := via.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Err(); err == nil || errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("matched find: %v", err)
	}
	// The driver retries a read once on a network error: both attempts are cut.
	if r.Fired() < 1 || r.Fired() > 2 {
		t.Fatalf("fired %d", r.Fired())
	}
}
