package cataloguetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// The suite of catalogue.TheatreStore (see the package comment).

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

	run(t, newStore, fmt.Sprintf("AddRemoveMovies/Race%dOneTheatre_AllTakeEffect", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
		// Half the racers add a movie each, half remove one of those it started with.
		start := make([]string, racetest.Racers/2)
		for i := range start {
			start[i] = newID()
		}
		th := &core.Theatre{Name: "Rex", Owner: newID(), Movies: start}
		if err := s.Create(ctx, th); err != nil {
			t.Fatal(err)
		}
		added := make([]string, racetest.Racers/2)
		for i := range added {
			added[i] = newID()
		}
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) {
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

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.TheatreStore) {
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
