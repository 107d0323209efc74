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
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

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

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.MovieStore) {
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

// oneDeletes races racetest.Racers calls of del: exactly one must succeed, every other be NotFound.
func oneDeletes(t *testing.T, what string, del func() error) {
	t.Helper()
	errsOf := make([]error, racetest.Racers)
	racetest.Race(racetest.Racers, func(i int) { errsOf[i] = del() })
	racetest.OneWins(t, "delete of one "+what, errsOf, errs.NotFound)
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
