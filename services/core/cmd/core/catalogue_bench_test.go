package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

const benchConcurrency = 16

// benchFixture is one service with 50 movies, shared by the catalogue benchmarks (each
// benchmark function runs several times while b.N grows).
type benchFixture struct {
	m       *Main
	base    string
	client  *http.Client
	movieID string
}

var (
	benchOnce sync.Once
	bench     *benchFixture
	benchErr  error
)

func catalogueBench(b *testing.B) *benchFixture {
	b.Helper()
	benchOnce.Do(func() {
		cfg := testConfig(b)
		cfg.LogLevel = "error"
		m := &Main{Config: cfg, Logger: logging.NewTo(io.Discard, "error", "core"), SetupTelemetry: sharedTelemetry}
		ctx := context.Background()
		if benchErr = m.Run(ctx); benchErr != nil {
			return
		}
		admin, err := m.Users.GetByEmail(ctx, adminEmail)
		if err != nil {
			benchErr = err
			return
		}
		f := &benchFixture{m: m, base: "http://" + m.Addr(),
			client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
		for i := range 50 {
			p := core.MoviePatch{Name: ptrTo(fmt.Sprintf("Movie %02d", i)), Description: ptrTo("A long enough description of the film, as catalogues have."),
				Casts: &[]string{"Ann Actor", "Bob Actor", "Cat Actor"}, TrailerURL: ptrTo("https://videos.example.com/trailer"),
				ReleaseDate: ptrTo("2024-01-15"), Director: ptrTo("Dee Director")}
			mv, err := m.Catalogue.CreateMovie(ctx, admin, p)
			if err != nil {
				benchErr = err
				return
			}
			f.movieID = mv.ID
		}
		bench = f
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

func ptrTo[T any](v T) *T { return &v }

// runConcurrent runs op b.N times over benchConcurrency goroutines (runLoad) and reports the
// rate and the latency percentiles.
func runConcurrent(b *testing.B, op func() error) {
	b.Helper()
	var failed atomic.Value
	b.ResetTimer()
	st := runLoad(b.N, benchConcurrency, func(int) int {
		if err := op(); err != nil {
			failed.Store(err)
			return 0
		}
		return 200
	})
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	st.report(b, "")
	b.ReportMetric(0, "ns/op")
}

func (f *benchFixture) get(path string) error {
	resp, err := f.client.Get(f.base + path)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	return nil
}

// driverDB is the fixture's database on a client of its own with the pool size the dev
// database serves best (2, see devdb.TestDB): the driver at its fastest.
func (f *benchFixture) driverDB(b *testing.B) *mongo.Database {
	b.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(b)).SetMaxPoolSize(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Disconnect(context.Background()) })
	return client.Database(f.m.DB.Name())
}

// BenchmarkGetMovies: GET /movies (50 movies) over real HTTP, 16 at a time.
func BenchmarkGetMovies(b *testing.B) {
	f := catalogueBench(b)
	runConcurrent(b, func() error { return f.get(base + "/movies") })
}

// BenchmarkGetMovieByID: GET /movies/:id over real HTTP, 16 at a time.
func BenchmarkGetMovieByID(b *testing.B) {
	f := catalogueBench(b)
	runConcurrent(b, func() error { return f.get(base + "/movies/" + f.movieID) })
}

// BenchmarkDriverFindMovies: the driver's own rate of reading the 50 movies (the store's
// List, on the service's client), 16 at a time: what GET /movies costs without the cache.
func BenchmarkDriverFindMovies(b *testing.B) {
	f := catalogueBench(b)
	movies := mongostore.NewCatalogue(f.driverDB(b)).Movies
	ctx := context.Background()
	runConcurrent(b, func() error {
		ms, _, err := movies.List(ctx, core.MovieFilter{Page: core.Page{Limit: core.DefaultPageLimit}})
		if err == nil && len(ms) != 50 {
			err = fmt.Errorf("%d movies", len(ms))
		}
		return err
	})
}

// BenchmarkDriverFindMovieByID: the driver's own rate of reading one movie by _id.
func BenchmarkDriverFindMovieByID(b *testing.B) {
	f := catalogueBench(b)
	coll := f.driverDB(b).Collection(mongostore.MoviesCollection)
	oid, _ := bson.ObjectIDFromHex(f.movieID)
	ctx := context.Background()
	runConcurrent(b, func() error {
		var doc bson.M
		return coll.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&doc)
	})
}
