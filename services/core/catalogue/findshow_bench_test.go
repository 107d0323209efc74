package catalogue_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// BenchmarkFindShowUncached: the booking engine's show lookup with its cache off, on a
// catalogue of 200 shows, for a show a minute old and for one just created (whose theatre and
// movie are also checked for deletion markers). Per lookup: ns/op.
func BenchmarkFindShowUncached(b *testing.B) {
	for _, age := range []time.Duration{0, 2 * time.Minute} {
		b.Run(fmt.Sprintf("age=%s", age), func(b *testing.B) {
			stores := mongostore.NewCatalogue(devdb.TestDB(b))
			if err := stores.EnsureIndexes(b.Context()); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			now := t0
			c := catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{ShowCacheTTL: -1, Now: func() time.Time { return now }})
			ctx := b.Context()
			th, err := c.CreateTheatre(ctx, catAdmin, theatrePatch("Rex"))
			if err != nil {
				b.Fatal(err)
			}
			m, err := c.CreateMovie(ctx, catAdmin, moviePatch("Heat"))
			if err != nil {
				b.Fatal(err)
			}
			var last *core.Show
			for i := range 200 {
				s := core.NewShow{TheatreID: th.ID, MovieID: m.ID, ShowPatch: core.ShowPatch{Timing: ptr(fmt.Sprintf("2030-01-01T%02d:%02d:00Z", i/60, i%60)),
					NoOfSeats: ptr(10), Price: ptr(100.0)}}
				if last, err = c.CreateShow(ctx, catAdmin, s); err != nil {
					b.Fatal(err)
				}
			}
			now = t0.Add(age)
			for b.Loop() {
				if _, err := c.FindShow(ctx, th.ID, m.ID, last.Timing); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
