// Package cataloguetest is the conformance suite of the catalogue's stores (catalogue.MovieStore,
// TheatreStore, ShowStore and DeletionStore), in the manner of riverqueue/river's driver suite:
// one function per contract runs every method, and its concurrency contract, against stores an
// implementation's own tests make.
//
// The contract it checks (subtest names say the same):
//
//   - Ids are the store's, 24 hex characters. Every method given a malformed id (of the
//     document, or of a theatre, movie or owner it names) answers errs.Invalid and changes
//     nothing; a well-formed id of nothing is errs.NotFound.
//   - Create sets the ID; what is read back is what was stored, times to the millisecond, list
//     fields never nil. List returns a page in _id order and the number of all matches; the
//     filters are exact matches.
//   - Update applies the patch and the time, returns the document after the change, and leaves
//     every other field as it was.
//   - Delete removes the document: it is errs.NotFound from then on. Of many Deletes of one
//     document at once exactly one succeeds; every other, like any Delete of a document gone
//     already, is errs.NotFound.
//   - A theatre's movies are a set. Concurrent AddMovies and RemoveMovies of one theatre all
//     take effect, one after the other (none is lost); one that keeps losing is errs.Conflict
//     and changed nothing. RemoveMovieEverywhere takes a movie off every theatre.
//   - A show's identity (theatre, movie, timing) is unique, decided by the store's unique key:
//     of many Creates of one identity at once exactly one succeeds, every other is
//     errs.Conflict; an Update onto a taken identity is errs.Conflict. A deleted show's
//     identity is free again.
//   - A deletion marker's key is unique: Mark answers true to the one insert that made it
//     (of many at once, exactly one) and false to every other while it exists; Marks reads
//     the markers that exist with when each was made; Unmark of a marker gone already is no
//     error, and the key can be marked again.
package cataloguetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// Racers is how many goroutines the race subtests start at once on one key.
const Racers = 16

var (
	at = time.Date(2030, 6, 1, 18, 30, 0, 123456789, time.UTC)
	ms = at.Truncate(time.Millisecond)
)

// malformed are ids no store makes.
var malformed = []string{"", "nope", "0123456789abcdef0123456z", "0123456789abcdef012345678"}

// run runs f as a parallel subtest on a store of its own.
func run[S any](t *testing.T, newStore func(t *testing.T) S, name string, f func(t *testing.T, ctx context.Context, s S)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		f(t, t.Context(), newStore(t))
	})
}

// RunMovieStore runs the suite of catalogue.MovieStore. newStore returns a new, empty store of
// its own on each call (the subtests run in parallel), ready for use.
func RunMovieStore(t *testing.T, newStore func(t *testing.T) catalogue.MovieStore) {
	t.Helper()
	run(t, newStore, "Create/SetsID_ReadsBackWhatWasStored", func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		m := &core.Movie{Name: "Heat", Description: "LA", Casts: []string{"Al", "Bob"}, TrailerURL: "https://example.com/t",
			Language: []string{"English"}, ReleaseDate: "1995-12-15", Director: "Mann", ReleaseStatus: core.ReleaseReleased,
			CreatedAt: at, UpdatedAt: at.Add(time.Second)}
		if err := s.Create(ctx, m); err != nil || !core.IsID(m.ID) {
			t.Fatalf("create: %v, id %q", err, m.ID)
		}
		got, err := s.Get(ctx, m.ID)
		want := *m
		want.CreatedAt, want.UpdatedAt = ms, ms.Add(time.Second)
		if err != nil || fmt.Sprint(*got) != fmt.Sprint(want) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, want)
		}
		bare := &core.Movie{Name: "Bare"}
		if err := s.Create(ctx, bare); err != nil || bare.ID == m.ID {
			t.Fatalf("second create: %v, id %q", err, bare.ID)
		}
		if got, err := s.Get(ctx, bare.ID); err != nil || got.Casts == nil || got.Language == nil {
			t.Fatalf("a movie created without lists: %+v, %v; want empty lists, not nil", got, err)
		}
	})

	run(t, newStore, "Get/UnknownIsNotFound_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		if _, err := s.Get(ctx, newID()); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		for _, id := range malformed {
			if _, err := s.Get(ctx, id); !errs.Is(err, errs.Invalid) {
				t.Fatalf("malformed id %q: %v, want invalid", id, err)
			}
		}
	})

	run(t, newStore, "List/IDOrder_TotalOfAllMatches_NameFilter", func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		var ids []string
		for _, n := range []string{"A", "B", "A", "C", "A"} {
			m := &core.Movie{Name: n}
			if err := s.Create(ctx, m); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		page := func(f core.MovieFilter) ([]string, int64) {
			t.Helper()
			ms, total, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]string, len(ms))
			for i, m := range ms {
				out[i] = m.ID
				if f.Name != "" && m.Name != f.Name {
					t.Fatalf("filter %q listed %q", f.Name, m.Name)
				}
			}
			return out, total
		}
		if got, total := page(core.MovieFilter{}); !slices.Equal(got, ids) || total != 5 {
			t.Fatalf("all: %v (total %d), want %v (5)", got, total, ids)
		}
		if got, total := page(core.MovieFilter{Page: core.Page{Limit: 2, Skip: 1}}); !slices.Equal(got, ids[1:3]) || total != 5 {
			t.Fatalf("limit 2 skip 1: %v (total %d), want %v (5)", got, total, ids[1:3])
		}
		if got, total := page(core.MovieFilter{Name: "A", Page: core.Page{Limit: 2}}); len(got) != 2 || total != 3 || !slices.IsSorted(got) {
			t.Fatalf("name A, limit 2: %v (total %d), want 2 in _id order (3)", got, total)
		}
		if got, total := page(core.MovieFilter{Name: "a"}); len(got) != 0 || total != 0 {
			t.Fatalf("name a (exact match): %v (total %d), want none", got, total)
		}
	})

	run(t, newStore, "GetMany/ExistingOnly_IDOrder_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		var ids []string
		for i := range 3 {
			m := &core.Movie{Name: fmt.Sprint("M", i)}
			if err := s.Create(ctx, m); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, m.ID)
		}
		got, err := s.GetMany(ctx, []string{ids[2], newID(), ids[0]})
		if err != nil || len(got) != 2 || got[0].ID != min(ids[0], ids[2]) || got[1].ID != max(ids[0], ids[2]) {
			t.Fatalf("get many: %+v, %v; want %s and %s in _id order", got, err, ids[0], ids[2])
		}
		if got, err := s.GetMany(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("no ids: %+v, %v", got, err)
		}
		if _, err := s.GetMany(ctx, []string{ids[0], "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("a malformed id among them: %v, want invalid", err)
		}
	})

	run(t, newStore, "Update/AppliesPatch_KeepsTheRest_UnknownIsNotFound", func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		m := &core.Movie{Name: "Heat", Casts: []string{"Al"}, Director: "Mann", ReleaseStatus: core.ReleaseUnreleased, CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		name, langs, status := "Heat 2", []string{"English", "Hindi"}, core.ReleaseReleased
		later := at.Add(time.Hour)
		got, err := s.Update(ctx, m.ID, core.MoviePatch{Name: &name, Language: &langs, ReleaseStatus: &status}, later)
		if err != nil || got.Name != name || !slices.Equal(got.Language, langs) || got.ReleaseStatus != status ||
			!slices.Equal(got.Casts, m.Casts) || got.Director != "Mann" || !got.CreatedAt.Equal(ms) || !got.UpdatedAt.Equal(later.Truncate(time.Millisecond)) {
			t.Fatalf("update: %+v, %v", got, err)
		}
		if read, _ := s.Get(ctx, m.ID); fmt.Sprint(read) != fmt.Sprint(got) {
			t.Fatalf("read after update %+v, update returned %+v", read, got)
		}
		if _, err := s.Update(ctx, newID(), core.MoviePatch{Name: &name}, later); !errs.Is(err, errs.NotFound) {
			t.Fatalf("update of an unknown movie: %v, want not_found", err)
		}
		if _, err := s.Update(ctx, "nope", core.MoviePatch{Name: &name}, later); !errs.Is(err, errs.Invalid) {
			t.Fatalf("update of a malformed id: %v, want invalid", err)
		}
	})

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound", Racers), func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
		m := &core.Movie{Name: "Gone"}
		if err := s.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		oneDeletes(t, "movie", func() error { return s.Delete(ctx, m.ID) })
		if _, err := s.Get(ctx, m.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted movie: %v, want not_found", err)
		}
		if err := s.Delete(ctx, m.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleting a movie gone already: %v, want not_found", err)
		}
		if err := s.Delete(ctx, "nope"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("delete of a malformed id: %v, want invalid", err)
		}
	})
}

// RunTheatreStore runs the suite of catalogue.TheatreStore, as RunMovieStore.
func RunTheatreStore(t *testing.T, newStore func(t *testing.T) catalogue.TheatreStore) {
	t.Helper()
	run(t, newStore, "Create/SetsID_ReadsBackWhatWasStored_MalformedRefIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		owner, m1 := newID(), newID()
		th := &core.Theatre{Name: "Rex", Description: "Old", City: "Pune", PinCode: 411001, Address: "MG Road", Owner: owner,
			Movies: []string{m1}, CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, th); err != nil || !core.IsID(th.ID) {
			t.Fatalf("create: %v, id %q", err, th.ID)
		}
		got, err := s.Get(ctx, th.ID)
		want := *th
		want.CreatedAt, want.UpdatedAt = ms, ms
		if err != nil || fmt.Sprint(*got) != fmt.Sprint(want) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, want)
		}
		bare := &core.Theatre{Name: "Bare", Owner: owner}
		if err := s.Create(ctx, bare); err != nil || bare.Movies == nil {
			t.Fatalf("create without movies: %v, movies %v (want empty, not nil)", err, bare.Movies)
		}
		if got, err := s.Get(ctx, bare.ID); err != nil || got.Movies == nil || len(got.Movies) != 0 {
			t.Fatalf("read back without movies: %+v, %v", got, err)
		}
		for _, bad := range []*core.Theatre{{Name: "X", Owner: "nope"}, {Name: "X", Owner: owner, Movies: []string{"nope"}}} {
			if err := s.Create(ctx, bad); !errs.Is(err, errs.Invalid) {
				t.Fatalf("create %+v: %v, want invalid", bad, err)
			}
		}
		if ts, total, err := s.List(ctx, core.TheatreFilter{}); err != nil || len(ts) != 2 || total != 2 {
			t.Fatalf("after two refused creates: %d theatres (total %d), %v; want 2", len(ts), total, err)
		}
	})

	run(t, newStore, "Get/UnknownIsNotFound_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		if _, err := s.Get(ctx, newID()); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		for _, id := range malformed {
			if _, err := s.Get(ctx, id); !errs.Is(err, errs.Invalid) {
				t.Fatalf("malformed id %q: %v, want invalid", id, err)
			}
		}
	})

	run(t, newStore, "List/IDOrder_TotalOfAllMatches_Filters", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		owner, m1, m2 := newID(), newID(), newID()
		specs := []core.Theatre{
			{Name: "Rex", City: "Pune", PinCode: 411001, Movies: []string{m1}},
			{Name: "Plaza", City: "Goa", PinCode: 403001},
			{Name: "Rex", City: "Goa", PinCode: 403002},
		}
		ids := make([]string, len(specs))
		for i := range specs {
			th := specs[i]
			th.Owner = owner
			if err := s.Create(ctx, &th); err != nil {
				t.Fatal(err)
			}
			ids[i] = th.ID
		}
		if _, err := s.AddMovies(ctx, ids[2], []string{m1, m2}, at); err != nil { // added later
			t.Fatal(err)
		}
		for _, c := range []struct {
			f    core.TheatreFilter
			want []string
		}{
			{core.TheatreFilter{}, ids},
			{core.TheatreFilter{City: "Goa"}, ids[1:]},
			{core.TheatreFilter{Name: "Rex"}, []string{ids[0], ids[2]}},
			{core.TheatreFilter{PinCode: 403001}, ids[1:2]},
			{core.TheatreFilter{City: "Pune", PinCode: 403001}, nil},
			{core.TheatreFilter{MovieID: m1}, []string{ids[0], ids[2]}},
			{core.TheatreFilter{MovieID: m2}, ids[2:]},
			{core.TheatreFilter{MovieID: newID()}, nil},
			{core.TheatreFilter{Name: "Rex", MovieID: m2}, ids[2:]},
		} {
			ts, total, err := s.List(ctx, c.f)
			want := slices.Clone(c.want)
			slices.Sort(want)
			got := make([]string, len(ts))
			for i, th := range ts {
				got[i] = th.ID
			}
			if err != nil || !slices.Equal(got, want) || total != int64(len(want)) {
				t.Fatalf("list %+v: %v (total %d), %v; want %v", c.f, got, total, err, want)
			}
		}
		ts, total, err := s.List(ctx, core.TheatreFilter{Page: core.Page{Limit: 1, Skip: 1}})
		if sorted := slices.Sorted(slices.Values(ids)); err != nil || len(ts) != 1 || ts[0].ID != sorted[1] || total != 3 {
			t.Fatalf("limit 1 skip 1: %+v (total %d), %v", ts, total, err)
		}
		if ts, _, _ := s.List(ctx, core.TheatreFilter{MovieID: m2}); len(ts) != 1 || !sameSet(ts[0].Movies, []string{m1, m2}) {
			t.Fatalf("a listed theatre's movies: %+v, want its latest list", ts)
		}
		if _, _, err := s.List(ctx, core.TheatreFilter{MovieID: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("malformed movie id filter: %v, want invalid", err)
		}
	})

	run(t, newStore, "Update/AppliesPatch_KeepsOwnerAndMovies_UnknownIsNotFound", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		owner, m1 := newID(), newID()
		th := &core.Theatre{Name: "Rex", City: "Pune", PinCode: 411001, Address: "MG Road", Owner: owner, Movies: []string{m1}, CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, th); err != nil {
			t.Fatal(err)
		}
		city, pin := "Mumbai", 400001
		later := at.Add(time.Hour)
		got, err := s.Update(ctx, th.ID, core.TheatrePatch{City: &city, PinCode: &pin}, later)
		if err != nil || got.City != city || got.PinCode != pin || got.Name != "Rex" || got.Address != "MG Road" ||
			got.Owner != owner || !slices.Equal(got.Movies, []string{m1}) || !got.UpdatedAt.Equal(later.Truncate(time.Millisecond)) {
			t.Fatalf("update: %+v, %v", got, err)
		}
		if _, err := s.Update(ctx, newID(), core.TheatrePatch{City: &city}, later); !errs.Is(err, errs.NotFound) {
			t.Fatalf("update of an unknown theatre: %v, want not_found", err)
		}
		if _, err := s.Update(ctx, "nope", core.TheatrePatch{City: &city}, later); !errs.Is(err, errs.Invalid) {
			t.Fatalf("update of a malformed id: %v, want invalid", err)
		}
	})

	run(t, newStore, "AddRemoveMovies/ASet_UnknownIsNotFound_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		owner, m1, m2, m3 := newID(), newID(), newID(), newID()
		th := &core.Theatre{Name: "Rex", Owner: owner}
		if err := s.Create(ctx, th); err != nil {
			t.Fatal(err)
		}
		got, err := s.AddMovies(ctx, th.ID, []string{m1, m2}, at)
		if err != nil || !sameSet(got.Movies, []string{m1, m2}) || got.Owner != owner || got.Name != "Rex" {
			t.Fatalf("add: %+v, %v", got, err)
		}
		if got, err = s.AddMovies(ctx, th.ID, []string{m2, m3, m3}, at); err != nil || !sameSet(got.Movies, []string{m1, m2, m3}) {
			t.Fatalf("add again (a set): %+v, %v", got, err)
		}
		if got, err = s.RemoveMovies(ctx, th.ID, []string{m1, m3, newID()}, at); err != nil || !sameSet(got.Movies, []string{m2}) {
			t.Fatalf("remove: %+v, %v", got, err)
		}
		if got, err = s.RemoveMovies(ctx, th.ID, []string{m1}, at); err != nil || !sameSet(got.Movies, []string{m2}) {
			t.Fatalf("remove of a movie not there (no change): %+v, %v", got, err)
		}
		if got, err := s.Get(ctx, th.ID); err != nil || !sameSet(got.Movies, []string{m2}) {
			t.Fatalf("read back: %+v, %v", got, err)
		}
		if _, err := s.AddMovies(ctx, newID(), []string{m1}, at); !errs.Is(err, errs.NotFound) {
			t.Fatalf("add to an unknown theatre: %v, want not_found", err)
		}
		if _, err := s.RemoveMovies(ctx, newID(), []string{m1}, at); !errs.Is(err, errs.NotFound) {
			t.Fatalf("remove from an unknown theatre: %v, want not_found", err)
		}
		if _, err := s.AddMovies(ctx, "nope", []string{m1}, at); !errs.Is(err, errs.Invalid) {
			t.Fatalf("add to a malformed id: %v, want invalid", err)
		}
		if _, err := s.AddMovies(ctx, th.ID, []string{m1, "nope"}, at); !errs.Is(err, errs.Invalid) {
			t.Fatalf("add of a malformed movie id: %v, want invalid", err)
		}
		if got, _ := s.Get(ctx, th.ID); !sameSet(got.Movies, []string{m2}) {
			t.Fatalf("a refused add changed the movies: %v", got.Movies)
		}
	})

	run(t, newStore, fmt.Sprintf("AddRemoveMovies/Race%dOneTheatre_AllTakeEffect", Racers), func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		// Half the racers add a movie each, half remove one of those it started with.
		start := make([]string, Racers/2)
		for i := range start {
			start[i] = newID()
		}
		th := &core.Theatre{Name: "Rex", Owner: newID(), Movies: start}
		if err := s.Create(ctx, th); err != nil {
			t.Fatal(err)
		}
		added := make([]string, Racers/2)
		for i := range added {
			added[i] = newID()
		}
		errsOf := make([]error, Racers)
		race(Racers, func(i int) {
			if i%2 == 0 {
				_, errsOf[i] = s.AddMovies(ctx, th.ID, []string{added[i/2]}, at)
			} else {
				_, errsOf[i] = s.RemoveMovies(ctx, th.ID, []string{start[i/2]}, at)
			}
		})
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
		}
		got, err := s.Get(ctx, th.ID)
		if err != nil || !sameSet(got.Movies, added) {
			t.Fatalf("after the race: %v, %v; want exactly the %d added (every start movie removed)", got.Movies, err, len(added))
		}
	})

	run(t, newStore, "RemoveMovieEverywhere/OffEveryTheatre", func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		owner, gone, kept := newID(), newID(), newID()
		created := &core.Theatre{Name: "A", Owner: owner, Movies: []string{gone, kept}} // listed at creation
		added := &core.Theatre{Name: "B", Owner: owner}
		other := &core.Theatre{Name: "C", Owner: owner, Movies: []string{kept}}
		for _, th := range []*core.Theatre{created, added, other} {
			if err := s.Create(ctx, th); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.AddMovies(ctx, added.ID, []string{gone}, at); err != nil { // listed later
			t.Fatal(err)
		}
		if err := s.RemoveMovieEverywhere(ctx, gone, at); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			th   *core.Theatre
			want []string
		}{{created, []string{kept}}, {added, nil}, {other, []string{kept}}} {
			if got, err := s.Get(ctx, c.th.ID); err != nil || !sameSet(got.Movies, c.want) {
				t.Fatalf("theatre %s: %+v, %v; want movies %v", c.th.Name, got, err, c.want)
			}
		}
		if ts, total, err := s.List(ctx, core.TheatreFilter{MovieID: gone}); err != nil || len(ts) != 0 || total != 0 {
			t.Fatalf("theatres running the removed movie: %+v (total %d), %v", ts, total, err)
		}
		if err := s.RemoveMovieEverywhere(ctx, newID(), at); err != nil {
			t.Fatalf("a movie no theatre runs: %v", err)
		}
		if err := s.RemoveMovieEverywhere(ctx, "nope", at); !errs.Is(err, errs.Invalid) {
			t.Fatalf("a malformed movie id: %v, want invalid", err)
		}
	})

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound", Racers), func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		m := newID()
		th := &core.Theatre{Name: "Gone", Owner: newID(), Movies: []string{m}}
		if err := s.Create(ctx, th); err != nil {
			t.Fatal(err)
		}
		oneDeletes(t, "theatre", func() error { return s.Delete(ctx, th.ID) })
		if _, err := s.Get(ctx, th.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted theatre: %v, want not_found", err)
		}
		if ts, _, err := s.List(ctx, core.TheatreFilter{MovieID: m}); err != nil || len(ts) != 0 {
			t.Fatalf("deleted theatre listed by its movie: %+v, %v", ts, err)
		}
		if _, err := s.AddMovies(ctx, th.ID, []string{newID()}, at); !errs.Is(err, errs.NotFound) {
			t.Fatalf("add to a deleted theatre: %v, want not_found", err)
		}
		if err := s.Delete(ctx, th.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleting a theatre gone already: %v, want not_found", err)
		}
		if err := s.Delete(ctx, "nope"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("delete of a malformed id: %v, want invalid", err)
		}
	})
}

// RunShowStore runs the suite of catalogue.ShowStore, as RunMovieStore.
func RunShowStore(t *testing.T, newStore func(t *testing.T) catalogue.ShowStore) {
	t.Helper()
	const timing = "2030-06-01T18:30:00Z"
	run(t, newStore, "Create/SetsID_ReadsBackWhatWasStored_MalformedRefIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		sh := &core.Show{TheatreID: newID(), MovieID: newID(), Timing: timing, NoOfSeats: 120, SeatsPerRow: 12, Price: 250.5,
			Format: "IMAX", CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, sh); err != nil || !core.IsID(sh.ID) {
			t.Fatalf("create: %v, id %q", err, sh.ID)
		}
		got, err := s.Get(ctx, sh.ID)
		want := *sh
		want.CreatedAt, want.UpdatedAt = ms, ms
		if err != nil || *got != want {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, want)
		}
		for _, bad := range []*core.Show{{TheatreID: "nope", MovieID: newID(), Timing: timing}, {TheatreID: newID(), MovieID: "nope", Timing: timing}} {
			if err := s.Create(ctx, bad); !errs.Is(err, errs.Invalid) {
				t.Fatalf("create %+v: %v, want invalid", bad, err)
			}
		}
	})

	run(t, newStore, fmt.Sprintf("Create/Race%dSameIdentity_OneWinsRestConflict", Racers), func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		th, m := newID(), newID()
		errsOf := make([]error, Racers)
		shows := make([]*core.Show, Racers)
		race(Racers, func(i int) {
			shows[i] = &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 10 + i, SeatsPerRow: 10, Price: 100}
			errsOf[i] = s.Create(ctx, shows[i])
		})
		winner := oneWins(t, "create of one identity", errsOf, errs.Conflict)
		got, err := s.Find(ctx, th, m, timing)
		if err != nil || got.ID != shows[winner].ID || got.NoOfSeats != shows[winner].NoOfSeats {
			t.Fatalf("find: %+v, %v; want the winner %+v", got, err, shows[winner])
		}
		if n, err := s.Count(ctx, core.ShowFilter{TheatreID: th, MovieID: m}); err != nil || n != 1 {
			t.Fatalf("%d shows of the identity, %v; want 1", n, err)
		}
		if err := s.Create(ctx, &core.Show{TheatreID: th, MovieID: m, Timing: timing}); !errs.Is(err, errs.Conflict) {
			t.Fatalf("a later create of the identity: %v, want conflict", err)
		}
	})

	run(t, newStore, "GetFind/UnknownIsNotFound_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		th, m := newID(), newID()
		sh := &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 10, SeatsPerRow: 10}
		if err := s.Create(ctx, sh); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Find(ctx, th, m, timing); err != nil || got.ID != sh.ID {
			t.Fatalf("find: %+v, %v", got, err)
		}
		for _, miss := range [][3]string{{th, m, "2030-06-01"}, {th, newID(), timing}, {newID(), m, timing}} {
			if _, err := s.Find(ctx, miss[0], miss[1], miss[2]); !errs.Is(err, errs.NotFound) {
				t.Fatalf("find %v: %v, want not_found", miss, err)
			}
		}
		if _, err := s.Find(ctx, "nope", m, timing); !errs.Is(err, errs.Invalid) {
			t.Fatalf("find with a malformed theatre id: %v, want invalid", err)
		}
		if _, err := s.Find(ctx, th, "nope", timing); !errs.Is(err, errs.Invalid) {
			t.Fatalf("find with a malformed movie id: %v, want invalid", err)
		}
		if _, err := s.Get(ctx, newID()); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		for _, id := range malformed {
			if _, err := s.Get(ctx, id); !errs.Is(err, errs.Invalid) {
				t.Fatalf("malformed id %q: %v, want invalid", id, err)
			}
		}
	})

	run(t, newStore, "ListCount/IDOrder_TotalOfAllMatches_Filters", func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		t1, t2, m1, m2 := newID(), newID(), newID(), newID()
		byTheatre := map[string][]string{}
		byMovie := map[string][]string{}
		var all []string
		for i, p := range [][2]string{{t1, m1}, {t1, m2}, {t2, m1}, {t1, m1}} {
			sh := &core.Show{TheatreID: p[0], MovieID: p[1], Timing: fmt.Sprintf("2030-06-0%dT18:30:00Z", i+1), NoOfSeats: 1, SeatsPerRow: 1}
			if err := s.Create(ctx, sh); err != nil {
				t.Fatal(err)
			}
			byTheatre[p[0]] = append(byTheatre[p[0]], sh.ID)
			byMovie[p[1]] = append(byMovie[p[1]], sh.ID)
			all = append(all, sh.ID)
		}
		for _, c := range []struct {
			f    core.ShowFilter
			want []string
		}{
			{core.ShowFilter{}, all},
			{core.ShowFilter{TheatreID: t1}, byTheatre[t1]},
			{core.ShowFilter{MovieID: m1}, byMovie[m1]},
			{core.ShowFilter{TheatreID: t2, MovieID: m1}, byTheatre[t2]},
			{core.ShowFilter{TheatreID: t2, MovieID: m2}, nil},
			{core.ShowFilter{TheatreID: newID()}, nil},
		} {
			want := slices.Sorted(slices.Values(c.want))
			ss, total, err := s.List(ctx, c.f)
			got := make([]string, len(ss))
			for i, sh := range ss {
				got[i] = sh.ID
			}
			if err != nil || !slices.Equal(got, want) || total != int64(len(want)) {
				t.Fatalf("list %+v: %v (total %d), %v; want %v", c.f, got, total, err, want)
			}
			c.f.Page = core.Page{Limit: 1}
			if n, err := s.Count(ctx, c.f); err != nil || n != int64(len(want)) {
				t.Fatalf("count %+v (its page ignored): %d, %v; want %d", c.f, n, err, len(want))
			}
		}
		ss, total, err := s.List(ctx, core.ShowFilter{TheatreID: t1, Page: core.Page{Limit: 1, Skip: 2}})
		if want := slices.Sorted(slices.Values(byTheatre[t1])); err != nil || len(ss) != 1 || ss[0].ID != want[2] || total != 3 {
			t.Fatalf("theatre 1, limit 1 skip 2: %+v (total %d), %v", ss, total, err)
		}
		if _, _, err := s.List(ctx, core.ShowFilter{TheatreID: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("list with a malformed theatre id: %v, want invalid", err)
		}
		if _, err := s.Count(ctx, core.ShowFilter{MovieID: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("count with a malformed movie id: %v, want invalid", err)
		}
	})

	run(t, newStore, "Update/AppliesPatch_OntoTakenIdentityIsConflict_UnknownIsNotFound", func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		th, m := newID(), newID()
		a := &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 10, SeatsPerRow: 5, Price: 100, CreatedAt: at, UpdatedAt: at}
		b := &core.Show{TheatreID: th, MovieID: m, Timing: "2030-06-02T18:30:00Z", NoOfSeats: 20, SeatsPerRow: 10, Price: 50, Format: "2D"}
		for _, sh := range []*core.Show{a, b} {
			if err := s.Create(ctx, sh); err != nil {
				t.Fatal(err)
			}
		}
		price, format := 120.5, "IMAX"
		later := at.Add(time.Hour)
		got, err := s.Update(ctx, a.ID, core.ShowPatch{Price: &price, Format: &format}, later)
		if err != nil || got.Price != price || got.Format != format || got.Timing != timing || got.NoOfSeats != 10 ||
			got.SeatsPerRow != 5 || got.TheatreID != th || got.MovieID != m || !got.CreatedAt.Equal(ms) ||
			!got.UpdatedAt.Equal(later.Truncate(time.Millisecond)) {
			t.Fatalf("update: %+v, %v", got, err)
		}
		tm := timing
		if _, err := s.Update(ctx, b.ID, core.ShowPatch{Timing: &tm}, later); !errs.Is(err, errs.Conflict) {
			t.Fatalf("update onto a taken identity: %v, want conflict", err)
		}
		if got, _ := s.Get(ctx, b.ID); got.Timing != b.Timing {
			t.Fatalf("a refused update moved the show to %q", got.Timing)
		}
		if _, err := s.Update(ctx, newID(), core.ShowPatch{Price: &price}, later); !errs.Is(err, errs.NotFound) {
			t.Fatalf("update of an unknown show: %v, want not_found", err)
		}
		if _, err := s.Update(ctx, "nope", core.ShowPatch{Price: &price}, later); !errs.Is(err, errs.Invalid) {
			t.Fatalf("update of a malformed id: %v, want invalid", err)
		}
	})

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound_IdentityFreeAgain", Racers), func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		th, m := newID(), newID()
		sh := &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 1, SeatsPerRow: 1}
		if err := s.Create(ctx, sh); err != nil {
			t.Fatal(err)
		}
		oneDeletes(t, "show", func() error { return s.Delete(ctx, sh.ID) })
		if _, err := s.Get(ctx, sh.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted show: %v, want not_found", err)
		}
		if _, err := s.Find(ctx, th, m, timing); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted show found: %v, want not_found", err)
		}
		if err := s.Delete(ctx, sh.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleting a show gone already: %v, want not_found", err)
		}
		if err := s.Delete(ctx, "nope"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("delete of a malformed id: %v, want invalid", err)
		}
		if err := s.Create(ctx, &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 1, SeatsPerRow: 1}); err != nil {
			t.Fatalf("the identity of a deleted show: %v, want it free", err)
		}
	})
}

// RunDeletionStore runs the suite of catalogue.DeletionStore, as RunMovieStore.
func RunDeletionStore(t *testing.T, newStore func(t *testing.T) catalogue.DeletionStore) {
	t.Helper()
	run(t, newStore, fmt.Sprintf("Mark/Race%dOneKey_OneTrueRestFalse", Racers), func(t *testing.T, ctx context.Context, s catalogue.DeletionStore) {
		won := make([]bool, Racers)
		errsOf := make([]error, Racers)
		race(Racers, func(i int) { won[i], errsOf[i] = s.Mark(ctx, "theatre:x:1", at.Add(time.Duration(i)*time.Second)) })
		winner := -1
		for i := range won {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("mark %d: %v", i, errsOf[i])
			case won[i] && winner >= 0:
				t.Fatalf("marks %d and %d both made the marker", winner, i)
			case won[i]:
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("no mark made the marker")
		}
		got, err := s.Marks(ctx, []string{"theatre:x:1"})
		if want := at.Add(time.Duration(winner) * time.Second).Truncate(time.Millisecond); err != nil || len(got) != 1 || !got["theatre:x:1"].Equal(want) {
			t.Fatalf("marks: %v, %v; want the winner's time %v", got, err, want)
		}
		if ok, err := s.Mark(ctx, "theatre:x:1", at); err != nil || ok {
			t.Fatalf("a later mark of the key: %v, %v; want false", ok, err)
		}
	})

	run(t, newStore, "Marks/ExistingKeysOnly_FewOrMany", func(t *testing.T, ctx context.Context, s catalogue.DeletionStore) {
		var keys []string
		for i := range 24 {
			k := fmt.Sprintf("movie:%s:%d", newID(), i)
			keys = append(keys, k)
			if i%2 == 0 {
				if ok, err := s.Mark(ctx, k, at.Add(time.Duration(i)*time.Second)); err != nil || !ok {
					t.Fatalf("mark %s: %v, %v", k, ok, err)
				}
			}
		}
		for _, n := range []int{0, 1, 3, 8, 9, len(keys)} {
			got, err := s.Marks(ctx, keys[:n])
			if err != nil || len(got) != (n+1)/2 {
				t.Fatalf("marks of %d keys: %v, %v; want %d", n, got, err, (n+1)/2)
			}
			for i, k := range keys[:n] {
				when, ok := got[k]
				if ok != (i%2 == 0) || ok && !when.Equal(at.Add(time.Duration(i)*time.Second).Truncate(time.Millisecond)) {
					t.Fatalf("marks of %d keys: %s: %v %v", n, k, when, ok)
				}
			}
		}
	})

	run(t, newStore, "Unmark/GoneAlreadyIsNoError_KeyMarkableAgain", func(t *testing.T, ctx context.Context, s catalogue.DeletionStore) {
		if ok, err := s.Mark(ctx, "theatre:y:1", at); err != nil || !ok {
			t.Fatalf("mark: %v, %v", ok, err)
		}
		if err := s.Unmark(ctx, "theatre:y:1"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Marks(ctx, []string{"theatre:y:1"}); err != nil || len(got) != 0 {
			t.Fatalf("after unmark: %v, %v", got, err)
		}
		if err := s.Unmark(ctx, "theatre:y:1"); err != nil {
			t.Fatalf("unmark of a marker gone already: %v", err)
		}
		if err := s.Unmark(ctx, "never:made:0"); err != nil {
			t.Fatalf("unmark of a marker never made: %v", err)
		}
		if ok, err := s.Mark(ctx, "theatre:y:1", at); err != nil || !ok {
			t.Fatalf("mark again after unmark: %v, %v; want true", ok, err)
		}
	})
}

// oneDeletes races Racers calls of del: exactly one must succeed, every other be NotFound.
func oneDeletes(t *testing.T, what string, del func() error) {
	t.Helper()
	errsOf := make([]error, Racers)
	race(Racers, func(i int) { errsOf[i] = del() })
	oneWins(t, "delete of one "+what, errsOf, errs.NotFound)
}

// oneWins checks that exactly one of errsOf is nil and every other carries code loser, and
// returns the winner's index.
func oneWins(t *testing.T, what string, errsOf []error, loser errs.Code) int {
	t.Helper()
	winner := -1
	for i, err := range errsOf {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("%s: calls %d and %d both succeeded", what, winner, i)
		case err == nil:
			winner = i
		case !errs.Is(err, loser):
			t.Fatalf("%s: call %d: %v, want nil or %s", what, i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no call succeeded", what)
	}
	return winner
}

// race runs f(0..n-1) in n goroutines released together, and waits for them all.
func race(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// newID returns a new random id in the stores' form (24 hex characters).
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sameSet reports whether a and b hold the same ids, whatever their order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
