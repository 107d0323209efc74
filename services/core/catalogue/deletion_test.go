package catalogue_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// markerKey is the key of a deletion marker of kind ("theatre", "movie") id made at at: the
// marker's window is the minute (deletionMarkerStale) it was made in.
func markerKey(kind, id string, at time.Time) string {
	return fmt.Sprintf("%s:%s:%d", kind, id, at.UnixMilli()/time.Minute.Milliseconds())
}

// windowStart is a time one second into a marker window, an hour from now.
func windowStart() time.Time {
	w := time.Now().Add(time.Hour).UnixMilli() / time.Minute.Milliseconds()
	return time.UnixMilli(w*time.Minute.Milliseconds() + 1000).UTC()
}

// catClock is a settable clock for the catalogue.
type catClock struct{ ns atomic.Int64 }

func (c *catClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *catClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *catClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func showOf(th *core.Theatre, m *core.Movie, timing string) core.NewShow {
	return core.NewShow{TheatreID: th.ID, MovieID: m.ID, ShowPatch: core.ShowPatch{Timing: ptr(timing), NoOfSeats: ptr(10), Price: ptr(100.0)}}
}

func showsOfTheatre(t *testing.T, c *catalogue.Catalogue, id string) []*core.Show {
	t.Helper()
	list, _, err := c.ListShows(t.Context(), core.ShowFilter{TheatreID: id})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func lists(t *testing.T, c *catalogue.Catalogue, theatre, movie string) bool {
	t.Helper()
	th, err := c.GetTheatre(t.Context(), theatre)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(th.Movies, movie)
}

// TestDeletionMarkerBlocksThenLapses: a deleter that died left its marker. While the marker is
// younger than a minute, a show of the theatre (or the movie) is refused and nothing of it
// stays, the movie cannot join a theatre, and a second deletion in the marker's window is
// refused; once the marker is a minute old it blocks nothing. (A show refused for its theatre
// leaves the movie on the theatre's list: the theatre is going, or keeps a harmless link.)
func TestDeletionMarkerBlocksThenLapses(t *testing.T) {
	t.Parallel()
	clk := &catClock{}
	t0 := windowStart()
	clk.Set(t0)
	c, stores := newTestCatalogue(t, catalogue.CatalogueOptions{Now: clk.Now, ShowCacheTTL: -1})
	ctx := t.Context()
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.CreateTheatre(ctx, catClient, theatrePatch("Odeon"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.CreateMovie(ctx, catClient, moviePatch("Heat"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := c.CreateMovie(ctx, catClient, moviePatch("Ran"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{markerKey("theatre", th.ID, t0), markerKey("movie", m2.ID, t0)} {
		if won, err := stores.Deletions.Mark(ctx, k, t0); err != nil || !won {
			t.Fatalf("mark %s: %v %v", k, won, err)
		}
	}
	clk.Advance(30 * time.Second)

	if _, err := c.CreateShow(ctx, catClient, showOf(th, m, "2030-01-01")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a show of a theatre being deleted: %v; want conflict", err)
	}
	if n := len(showsOfTheatre(t, c, th.ID)); n != 0 {
		t.Fatalf("the refused show left %d show(s)", n)
	}
	if _, err := c.CreateShow(ctx, catClient, showOf(other, m2, "2030-01-01")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a show of a movie being deleted: %v; want conflict", err)
	}
	if n := len(showsOfTheatre(t, c, other.ID)); n != 0 || lists(t, c, other.ID, m2.ID) {
		t.Fatalf("the refused show left %d show(s), the theatre lists the movie: %v", n, lists(t, c, other.ID, m2.ID))
	}
	if _, err := c.UpdateTheatreMovies(ctx, catClient, other.ID, []string{m.ID, m2.ID}, true); !errs.Is(err, errs.Conflict) {
		t.Fatalf("adding a movie being deleted: %v; want conflict", err)
	}
	if lists(t, c, other.ID, m2.ID) || !lists(t, c, other.ID, m.ID) {
		t.Fatalf("after adding a movie being deleted and another: lists it %v, lists the other %v; want false, true",
			lists(t, c, other.ID, m2.ID), lists(t, c, other.ID, m.ID))
	}
	if _, err := c.DeleteTheatre(ctx, catClient, th.ID); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a second deletion in the marker's window: %v; want conflict", err)
	}

	// A minute on, the dead deleter's markers block nothing.
	clk.Set(t0.Add(time.Minute + time.Second))
	if _, err := c.CreateShow(ctx, catClient, showOf(th, m2, "2030-01-01")); err != nil {
		t.Fatalf("a show after the marker lapsed: %v", err)
	}
	if _, err := c.DeleteTheatre(ctx, catClient, th.ID); !errs.Is(err, errs.Conflict) {
		t.Fatalf("deleting a theatre with a show: %v; want conflict", err)
	}
	if _, err := c.DeleteMovie(ctx, catClient, m.ID); err != nil {
		t.Fatalf("deleting a movie without shows: %v", err)
	}
	if lists(t, c, other.ID, m.ID) {
		t.Fatal("a theatre lists the deleted movie")
	}
	// A deletion done removes its marker.
	now := clk.Now()
	marks, err := stores.Deletions.Marks(ctx, []string{markerKey("movie", m.ID, now), markerKey("theatre", th.ID, now)})
	if err != nil || len(marks) != 0 {
		t.Fatalf("markers left by the deletions: %v %v", marks, err)
	}
}

// slowShows is a show store whose counts take 31 seconds of the catalogue's clock.
type slowShows struct {
	catalogue.ShowStore
	clk *catClock
}

func (s slowShows) Count(ctx context.Context, f core.ShowFilter) (int64, error) {
	s.clk.Advance(31 * time.Second)
	return s.ShowStore.Count(ctx, f)
}

// TestSlowDeletionGivesUp: a deletion whose look for shows ends more than half a minute after
// its marker gives up (503) without deleting, since creators stop heeding its marker a minute
// after it was made; its marker is removed, so a retry goes ahead.
func TestSlowDeletionGivesUp(t *testing.T) {
	t.Parallel()
	clk := &catClock{}
	t0 := windowStart()
	clk.Set(t0)
	_, stores := newTestCatalogue(t, catalogue.CatalogueOptions{})
	s := stores.Stores()
	s.Shows = slowShows{s.Shows, clk}
	c := catalogue.NewCatalogue(s, catalogue.CatalogueOptions{Now: clk.Now})
	ctx := t.Context()
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTheatre(ctx, catClient, th.ID); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("a slow deletion: %v; want unavailable", err)
	}
	if _, err := c.GetTheatre(ctx, th.ID); err != nil {
		t.Fatalf("the slow deletion deleted: %v", err)
	}
	if marks, err := stores.Deletions.Marks(ctx, []string{markerKey("theatre", th.ID, t0)}); err != nil || len(marks) != 0 {
		t.Fatalf("the slow deletion left its marker: %v %v", marks, err)
	}
	c2 := catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{Now: clk.Now})
	if _, err := c2.DeleteTheatre(ctx, catClient, th.ID); err != nil {
		t.Fatalf("the retry: %v", err)
	}
}

// TestLostShowInsertUndone: a show's insert lands but its reply is lost while its theatre is
// being deleted. The creator cannot know the insert landed, yet finds the marker, looks the
// show up and removes it: no show is left of a theatre being deleted. The same for a movie
// added to a theatre while it is being deleted.
func TestLostShowInsertUndone(t *testing.T) {
	t.Parallel()
	name := devdb.TestDatabase(t)
	direct := mongostore.NewCatalogue(devdb.TestDBNamed(t, name))
	if err := direct.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, db := faultproxy.StartTest(t, name, 4)
	c := catalogue.NewCatalogue(mongostore.NewCatalogue(db).Stores(), catalogue.CatalogueOptions{ShowCacheTTL: -1})
	ctx := t.Context()
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.CreateMovie(ctx, catClient, moviePatch("Heat"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := c.CreateMovie(ctx, catClient, moviePatch("Ran"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateTheatreMovies(ctx, catClient, th.ID, []string{m.ID}, true); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, k := range []string{markerKey("theatre", th.ID, now), markerKey("movie", m2.ID, now)} {
		if won, err := direct.Deletions.Mark(ctx, k, now); err != nil || !won {
			t.Fatalf("mark %s: %v %v", k, won, err)
		}
	}
	rule := p.Add(&faultproxy.Rule{Command: "insert", Collection: mongostore.ShowsCollection, Fault: faultproxy.DropReply, Times: 1})
	if _, err := c.CreateShow(ctx, catClient, showOf(th, m, "2030-01-01")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a show whose reply was lost, of a theatre being deleted: %v; want conflict", err)
	}
	if rule.Fired() != 1 {
		t.Fatal("the fault never fired")
	}
	if n := len(showsOfTheatre(t, c, th.ID)); n != 0 {
		t.Fatalf("%d show(s) left of a theatre being deleted", n)
	}

	other, err := c.CreateTheatre(ctx, catClient, theatrePatch("Odeon"))
	if err != nil {
		t.Fatal(err)
	}
	rule = p.Add(&faultproxy.Rule{Command: "insert", Collection: mongostore.TheatreMovieVersionsCollection, Fault: faultproxy.DropReply, Times: 1})
	if _, err := c.UpdateTheatreMovies(ctx, catClient, other.ID, []string{m2.ID}, true); err == nil {
		t.Fatal("adding a movie being deleted, its reply lost: no error")
	}
	if rule.Fired() != 1 {
		t.Fatal("the fault never fired")
	}
	if lists(t, c, other.ID, m2.ID) {
		t.Fatal("the theatre lists a movie being deleted")
	}
}

// TestFindShowRefusesLostShows: the booking engine's lookup does not find a show whose theatre
// or movie is gone (an orphan, as a creator that died between storing the show and checking
// would leave, or an older version's race), nor a young show whose theatre is being deleted;
// a show a minute old is not held up by a marker, only by its theatre or movie being gone.
func TestFindShowRefusesLostShows(t *testing.T) {
	t.Parallel()
	clk := &catClock{}
	t0 := windowStart()
	clk.Set(t0)
	c, stores := newTestCatalogue(t, catalogue.CatalogueOptions{Now: clk.Now, ShowCacheTTL: -1})
	ctx := t.Context()
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.CreateMovie(ctx, catClient, moviePatch("Heat"))
	if err != nil {
		t.Fatal(err)
	}
	sh, err := c.CreateShow(ctx, catClient, showOf(th, m, "2030-01-01"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.FindShow(ctx, th.ID, m.ID, sh.Timing); err != nil {
		t.Fatalf("a show that stands: %v", err)
	}
	// A deletion of its theatre under way: the young show is not booked meanwhile.
	if won, err := stores.Deletions.Mark(ctx, markerKey("theatre", th.ID, t0), t0); err != nil || !won {
		t.Fatalf("mark: %v %v", won, err)
	}
	if _, err := c.FindShow(ctx, th.ID, m.ID, sh.Timing); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a young show whose theatre is being deleted: %v; want conflict", err)
	}
	clk.Advance(2 * time.Minute)
	if _, err := c.FindShow(ctx, th.ID, m.ID, sh.Timing); err != nil {
		t.Fatalf("the marker lapsed, the theatre stands: %v", err)
	}
	// Orphans: a show stored for a theatre, then a movie, that are gone.
	gone := core.Show{TheatreID: "650000000000000000000042", MovieID: m.ID, Timing: "2030-01-02", NoOfSeats: 10, SeatsPerRow: 10,
		CreatedAt: t0, UpdatedAt: t0}
	if err := stores.Shows.Create(ctx, &gone); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FindShow(ctx, gone.TheatreID, gone.MovieID, gone.Timing); !errs.Is(err, errs.NotFound) {
		t.Fatalf("a show whose theatre is gone: %v; want not found", err)
	}
	gone = core.Show{TheatreID: th.ID, MovieID: "650000000000000000000043", Timing: "2030-01-03", NoOfSeats: 10, SeatsPerRow: 10,
		CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
	if err := stores.Shows.Create(ctx, &gone); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FindShow(ctx, gone.TheatreID, gone.MovieID, gone.Timing); !errs.Is(err, errs.NotFound) {
		t.Fatalf("a young show whose movie is gone: %v; want not found", err)
	}
}
