package mongostore

import (
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

func newTestCatalogue(t *testing.T) *Catalogue {
	t.Helper()
	s := NewCatalogue(devdb.TestDB(t))
	for range 2 { // idempotent
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var catAt = time.Date(2030, 6, 1, 18, 30, 0, 123456789, time.UTC)

func TestCatalogueMovieStore(t *testing.T) {
	t.Parallel()
	s := newTestCatalogue(t).Movies
	ctx := t.Context()
	m := &core.Movie{Name: "Heat", Casts: []string{"Al"}, ReleaseDate: "2024-01-15", ReleaseStatus: "RELEASED", CreatedAt: catAt, UpdatedAt: catAt}
	if err := s.Create(ctx, m); err != nil || !core.IsID(m.ID) {
		t.Fatalf("create: %v %q", err, m.ID)
	}
	got, err := s.Get(ctx, m.ID)
	if err != nil || got.Name != "Heat" || got.Language == nil || !got.CreatedAt.Equal(catAt.Truncate(time.Millisecond)) {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, bson.NewObjectID().Hex()); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := s.Get(ctx, "nope"); !errs.Is(err, errs.Invalid) {
		t.Fatalf("malformed id: %v", err)
	}
	name, langs := "Heat 2", []string{"English", "Hindi"}
	later := catAt.Add(time.Hour)
	got, err = s.Update(ctx, m.ID, core.MoviePatch{Name: &name, Language: &langs}, later)
	if err != nil || got.Name != name || len(got.Language) != 2 || got.Casts[0] != "Al" || !got.UpdatedAt.Equal(later.Truncate(time.Millisecond)) {
		t.Fatalf("update: %+v %v", got, err)
	}
	if _, err := s.Update(ctx, bson.NewObjectID().Hex(), core.MoviePatch{Name: &name}, later); !errs.Is(err, errs.NotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	for _, n := range []string{"A", "B", "A"} {
		if err := s.Create(ctx, &core.Movie{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	all, total, err := s.List(ctx, core.MovieFilter{Page: core.Page{Limit: 2}})
	if err != nil || len(all) != 2 || total != 4 || all[0].ID != m.ID {
		t.Fatalf("list: %d %d %v", len(all), total, err)
	}
	as, total, err := s.List(ctx, core.MovieFilter{Name: "A", Page: core.Page{Limit: 10}})
	if err != nil || len(as) != 2 || total != 2 {
		t.Fatalf("by name: %d %d %v", len(as), total, err)
	}
	rest, total, err := s.List(ctx, core.MovieFilter{Page: core.Page{Limit: 10, Skip: 3}})
	if err != nil || len(rest) != 1 || total != 4 {
		t.Fatalf("skip: %d %d %v", len(rest), total, err)
	}
	many, err := s.GetMany(ctx, []string{as[1].ID, m.ID, bson.NewObjectID().Hex()})
	if err != nil || len(many) != 2 || many[0].ID != m.ID {
		t.Fatalf("get many: %+v %v", many, err)
	}
	if err := s.Delete(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, m.ID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestCatalogueTheatreStore(t *testing.T) {
	t.Parallel()
	s := newTestCatalogue(t).Theatres
	ctx := t.Context()
	owner := bson.NewObjectID().Hex()
	th := &core.Theatre{Name: "Rex", City: "Pune", PinCode: 411001, Owner: owner, CreatedAt: catAt, UpdatedAt: catAt}
	if err := s.Create(ctx, th); err != nil || th.Movies == nil {
		t.Fatalf("create: %v %+v", err, th)
	}
	if err := s.Create(ctx, &core.Theatre{Name: "Plaza", City: "Goa", PinCode: 403001, Owner: owner}); err != nil {
		t.Fatal(err)
	}
	m1, m2, m3 := bson.NewObjectID().Hex(), bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	got, err := s.AddMovies(ctx, th.ID, []string{m1, m2}, catAt)
	if err != nil || len(got.Movies) != 2 || got.Owner != owner {
		t.Fatalf("add: %+v %v", got, err)
	}
	got, err = s.AddMovies(ctx, th.ID, []string{m2, m3}, catAt) // a set
	if err != nil || len(got.Movies) != 3 {
		t.Fatalf("add again: %+v %v", got, err)
	}
	got, err = s.RemoveMovies(ctx, th.ID, []string{m1, m3}, catAt)
	if err != nil || len(got.Movies) != 1 || got.Movies[0] != m2 {
		t.Fatalf("remove ($pullAll): %+v %v", got, err)
	}
	if _, err := s.AddMovies(ctx, bson.NewObjectID().Hex(), []string{m1}, catAt); !errs.Is(err, errs.NotFound) {
		t.Fatalf("add to unknown: %v", err)
	}
	for f, want := range map[core.TheatreFilter]int{
		{}: 2, {City: "Pune"}: 1, {Name: "Plaza"}: 1, {PinCode: 403001}: 1, {MovieID: m2}: 1, {MovieID: m1}: 0,
		{City: "Pune", PinCode: 403001}: 0,
	} {
		f.Limit = 10
		ts, total, err := s.List(ctx, f)
		if err != nil || len(ts) != want || total != int64(want) {
			t.Errorf("list %+v: %d %d %v", f, len(ts), total, err)
		}
	}
	city := "Mumbai"
	got, err = s.Update(ctx, th.ID, core.TheatrePatch{City: &city}, catAt)
	if err != nil || got.City != "Mumbai" || got.Name != "Rex" || len(got.Movies) != 1 {
		t.Fatalf("update: %+v %v", got, err)
	}
	if err := s.RemoveMovieEverywhere(ctx, m2, catAt); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, th.ID); len(got.Movies) != 0 {
		t.Fatalf("movie not removed everywhere: %+v", got)
	}
	if err := s.Delete(ctx, th.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, th.ID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("deleted: %v", err)
	}
}

func TestCatalogueShowStoreIdentityUnique(t *testing.T) {
	t.Parallel()
	s := newTestCatalogue(t).Shows
	ctx := t.Context()
	th, m := bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	const timing = "2030-06-01T18:30:00Z"
	// many creators of one identity at once: exactly one wins, the rest get Conflict
	const n = 20
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = s.Create(ctx, &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 10, SeatsPerRow: 10, Price: 100})
		})
	}
	wg.Wait()
	created := 0
	for _, err := range results {
		switch {
		case err == nil:
			created++
		case !errs.Is(err, errs.Conflict):
			t.Fatalf("create: %v", err)
		}
	}
	if created != 1 {
		t.Fatalf("%d shows of one identity created", created)
	}
	sh, err := s.Find(ctx, th, m, timing)
	if err != nil || sh.NoOfSeats != 10 || sh.TheatreID != th {
		t.Fatalf("find: %+v %v", sh, err)
	}
	if _, err := s.Find(ctx, th, m, "2030-06-01"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("find other timing: %v", err)
	}
	other := &core.Show{TheatreID: th, MovieID: m, Timing: "2030-06-02", NoOfSeats: 5, SeatsPerRow: 10, Price: 1, Format: "IMAX"}
	if err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	// moving a show onto another's timing is a conflict too
	tm := timing
	if _, err := s.Update(ctx, other.ID, core.ShowPatch{Timing: &tm}, catAt); !errs.Is(err, errs.Conflict) {
		t.Fatalf("update onto a taken identity: %v", err)
	}
	price := 120.5
	got, err := s.Update(ctx, sh.ID, core.ShowPatch{Price: &price}, catAt)
	if err != nil || got.Price != 120.5 || got.Timing != timing {
		t.Fatalf("update: %+v %v", got, err)
	}
	if n, err := s.Count(ctx, core.ShowFilter{TheatreID: th}); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	if n, err := s.Count(ctx, core.ShowFilter{MovieID: bson.NewObjectID().Hex()}); err != nil || n != 0 {
		t.Fatalf("count other: %d %v", n, err)
	}
	ss, total, err := s.List(ctx, core.ShowFilter{MovieID: m, Page: core.Page{Limit: 1}})
	if err != nil || len(ss) != 1 || total != 2 {
		t.Fatalf("list: %d %d %v", len(ss), total, err)
	}
	if err := s.Delete(ctx, sh.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 1, SeatsPerRow: 1}); err != nil {
		t.Fatalf("identity free after delete: %v", err)
	}
}

// TestCatalogueDeletionStore: a marker key is won by one insert of many at once; Marks reads
// the markers that exist, by exact ids (few keys) or in one query (many); Unmark removes one,
// and removing one that does not exist is no error.
func TestCatalogueDeletionStore(t *testing.T) {
	t.Parallel()
	s := newTestCatalogue(t).Deletions
	ctx := t.Context()
	const racers = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range racers {
		wg.Go(func() {
			ok, err := s.Mark(ctx, "theatre:x:1", catAt)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d of %d inserts of one marker won; want 1", won, racers)
	}
	var keys []string
	for i := range 12 {
		k := "movie:y:" + string(rune('a'+i))
		keys = append(keys, k)
		if i%2 == 0 {
			if ok, err := s.Mark(ctx, k, catAt.Add(time.Duration(i)*time.Second)); err != nil || !ok {
				t.Fatalf("mark %s: %v %v", k, ok, err)
			}
		}
	}
	for _, n := range []int{3, maxMarkReads, len(keys)} { // by exact ids, and in one query
		got, err := s.Marks(ctx, append(keys[:n:n], "theatre:x:1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != (n+1)/2+1 || !got["theatre:x:1"].Equal(catAt.Truncate(time.Millisecond)) {
			t.Fatalf("marks of %d keys: %v", n+1, got)
		}
		for i, k := range keys[:n] {
			if _, ok := got[k]; ok != (i%2 == 0) {
				t.Fatalf("marks of %d keys: %s present %v", n+1, k, ok)
			}
		}
	}
	if err := s.Unmark(ctx, "theatre:x:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmark(ctx, "theatre:x:1"); err != nil {
		t.Fatalf("unmark of a marker that is gone: %v", err)
	}
	if got, err := s.Marks(ctx, []string{"theatre:x:1"}); err != nil || len(got) != 0 {
		t.Fatalf("after unmark: %v %v", got, err)
	}
	if ok, err := s.Mark(ctx, "theatre:x:1", catAt); err != nil || !ok {
		t.Fatalf("mark again after unmark: %v %v", ok, err)
	}
}
