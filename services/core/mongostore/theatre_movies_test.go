package mongostore

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// TestTheatreMoviesConcurrent: 30 goroutines on two connections (two replicas) each add a movie
// to one theatre, while its name is changed 10 times: every movie ends in the list (read one
// by one, in the list of theatres and through the ?movieId= filter) and the last name too.
func TestTheatreMoviesConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	name := devdb.TestDatabase(t)
	replicas := []*Theatres{NewCatalogue(devdb.TestDBNamed(t, name)).Theatres, NewCatalogue(devdb.TestDBNamed(t, name)).Theatres}
	th := &core.Theatre{Name: "Rex", City: "Pune", PinCode: 411001, Owner: bson.NewObjectID().Hex()}
	if err := replicas[0].Create(ctx, th); err != nil {
		t.Fatal(err)
	}
	const n = 30
	movies := make([]string, n)
	for i := range movies {
		movies[i] = bson.NewObjectID().Hex()
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, n+10)
	for i, m := range movies {
		s := replicas[i%2]
		wg.Go(func() {
			<-start
			if _, err := s.AddMovies(ctx, th.ID, []string{m}, catAt); err != nil {
				errc <- err
			}
		})
	}
	wg.Go(func() {
		<-start
		for k := range 10 {
			name := fmt.Sprintf("Rex %d", k)
			if _, err := replicas[k%2].Update(ctx, th.ID, core.TheatrePatch{Name: &name}, catAt); err != nil {
				errc <- err
			}
		}
	})
	close(start)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("change: %v", err)
	}
	for k, s := range replicas {
		got, err := s.Get(ctx, th.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Movies) != n || got.Name != "Rex 9" {
			t.Fatalf("replica %d: %d movies (want %d), name %q", k, len(got.Movies), n, got.Name)
		}
		ts, _, err := s.List(ctx, core.TheatreFilter{Page: core.Page{Limit: 10}})
		if err != nil || len(ts) != 1 || len(ts[0].Movies) != n {
			t.Fatalf("replica %d: list: %v %+v", k, err, ts)
		}
		for _, m := range movies {
			ts, total, err := s.List(ctx, core.TheatreFilter{MovieID: m, Page: core.Page{Limit: 10}})
			if err != nil || len(ts) != 1 || total != 1 || ts[0].ID != th.ID {
				t.Fatalf("replica %d: ?movieId=%s: %v %d %+v", k, m, err, total, ts)
			}
		}
	}
}

// TestTheatreMoviesStaleProjection: a projection left behind (its writer died after its insert,
// or wrote after a newer one) is read past, and repaired by the read; a theatre created with
// movies is found by the filter; deleting a movie everywhere and deleting the theatre clean up.
func TestTheatreMoviesStaleProjection(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestCatalogue(t).Theatres
	m1, m2, m3 := bson.NewObjectID().Hex(), bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	th := &core.Theatre{Name: "Rex", City: "Pune", PinCode: 411001, Owner: bson.NewObjectID().Hex(), Movies: []string{m1}}
	if err := s.Create(ctx, th); err != nil {
		t.Fatal(err)
	}
	if ts, _, err := s.List(ctx, core.TheatreFilter{MovieID: m1, Page: core.Page{Limit: 10}}); err != nil || len(ts) != 1 {
		t.Fatalf("created with a movie, filter: %v %+v", err, ts)
	}
	if _, err := s.AddMovies(ctx, th.ID, []string{m2}, catAt); err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(th.ID)
	// version 2 inserted by a writer that died before projecting it
	m3oid, _ := bson.ObjectIDFromHex(m3)
	var l movieListDoc
	if err := s.lists.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&l); err != nil || l.Version != 1 {
		t.Fatalf("projection: %+v %v", l, err)
	}
	if _, err := s.versions.InsertOne(ctx, movieVersionDoc{ID: movieVersionID(oid, 2), TheatreID: oid, Version: 2,
		Movies: append(slices.Clone(l.Movies), m3oid), UpdatedAt: catAt}); err != nil {
		t.Fatal(err)
	}
	if ts, _, _ := s.List(ctx, core.TheatreFilter{MovieID: m3, Page: core.Page{Limit: 10}}); len(ts) != 0 {
		t.Fatalf("the filter reads the projection, which is behind: %+v", ts)
	}
	got, err := s.Get(ctx, th.ID)
	if err != nil || !slices.Equal(got.Movies, []string{m1, m2, m3}) {
		t.Fatalf("get past the projection: %v %+v", err, got)
	}
	if ts, _, _ := s.List(ctx, core.TheatreFilter{MovieID: m3, Page: core.Page{Limit: 10}}); len(ts) != 1 {
		t.Fatalf("the read did not repair the projection: %+v", ts)
	}
	// a change from a stale projection redoes itself on the latest version
	if _, err := s.lists.ReplaceOne(ctx, bson.D{{Key: "_id", Value: oid}}, l); err != nil {
		t.Fatal(err)
	}
	got, err = s.RemoveMovies(ctx, th.ID, []string{m1}, catAt)
	if err != nil || !slices.Equal(got.Movies, []string{m2, m3}) {
		t.Fatalf("remove over a stale projection: %v %+v", err, got)
	}
	if err := s.RemoveMovieEverywhere(ctx, m3, catAt); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, th.ID); !slices.Equal(got.Movies, []string{m2}) {
		t.Fatalf("after removing m3 everywhere: %+v", got.Movies)
	}
	if err := s.Delete(ctx, th.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.lists.CountDocuments(ctx, bson.D{}); n != 0 {
		t.Fatalf("%d projections left after the delete", n)
	}
}
