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

// The suites of catalogue.ShowStore and DeletionStore (see the package comment).

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

	run(t, newStore, fmt.Sprintf("Create/Race%dSameIdentity_OneWinsRestConflict", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
		th, m := newID(), newID()
		errsOf := make([]error, racetest.Racers)
		shows := make([]*core.Show, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) {
			shows[i] = &core.Show{TheatreID: th, MovieID: m, Timing: timing, NoOfSeats: 10 + i, SeatsPerRow: 10, Price: 100}
			errsOf[i] = s.Create(ctx, shows[i])
		})
		winner := racetest.OneWins(t, "create of one identity", errsOf, errs.Conflict)
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

	run(t, newStore, fmt.Sprintf("Delete/Race%d_OneSucceedsRestNotFound_IdentityFreeAgain", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.ShowStore) {
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
	run(t, newStore, fmt.Sprintf("Mark/Race%dOneKey_OneTrueRestFalse", racetest.Racers), func(t *testing.T, ctx context.Context, s catalogue.DeletionStore) {
		won := make([]bool, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { won[i], errsOf[i] = s.Mark(ctx, "theatre:x:1", at.Add(time.Duration(i)*time.Second)) })
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
