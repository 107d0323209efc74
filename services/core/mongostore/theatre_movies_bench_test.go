package mongostore

import (
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// BenchmarkTheatreReads: 1,000 theatres running 5 movies each (each list changed once),
// then one theatre read by id, and the theatres running one movie (?movieId=), as the HTTP
// layer asks for them on a cache miss.
func BenchmarkTheatreReads(b *testing.B) {
	ctx := b.Context()
	s := NewCatalogue(devdb.TestDB(b))
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	owner := bson.NewObjectID().Hex()
	movies := make([]string, 50)
	for i := range movies {
		movies[i] = bson.NewObjectID().Hex()
	}
	var ids []string
	for i := range 1000 {
		th := &core.Theatre{Name: fmt.Sprintf("T%d", i), City: "Pune", PinCode: 411001, Owner: owner}
		if err := s.Theatres.Create(ctx, th); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Theatres.AddMovies(ctx, th.ID, movies[i%46:i%46+5], catAt); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, th.ID)
	}
	b.Run("GetByID", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Theatres.Get(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("ListByMovie", func(b *testing.B) {
		for b.Loop() {
			ts, _, err := s.Theatres.List(ctx, core.TheatreFilter{MovieID: movies[10], Page: core.Page{Limit: 100}})
			if err != nil || len(ts) == 0 {
				b.Fatal(err, len(ts))
			}
		}
	})
	b.Run("ListPage", func(b *testing.B) {
		for b.Loop() {
			if ts, _, err := s.Theatres.List(ctx, core.TheatreFilter{Page: core.Page{Limit: 100}}); err != nil || len(ts) != 100 {
				b.Fatal(err)
			}
		}
	})
}
