package faultproxy

import (
	"context"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
)

// StartTest starts a proxy in front of devdb.TestURI and connects a client of its own through
// it (a pool of poolSize); it returns the proxy and database db as reached through it. Both
// are closed when the test ends.
func StartTest(tb testing.TB, db string, poolSize uint64) (*Proxy, *mongo.Database) {
	tb.Helper()
	u, err := url.Parse(devdb.TestURI(tb))
	if err != nil {
		tb.Fatal(err)
	}
	p, err := Start(u.Host)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + p.Addr() + "/").SetMaxPoolSize(poolSize).
		SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Disconnect(context.Background()) })
	return p, client.Database(db)
}
