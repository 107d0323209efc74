package catalogue

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// Deleting a theatre or a movie races, across replicas, the creation of its shows and the
// listing of the movie by a theatre. Both sides are decided by inserts, as a show's deletion
// races its bookings (Bookings.ReserveShowDeletion):
//
//   - The deleter inserts a deletion marker for the theatre or movie, then looks for its shows,
//     deletes it only if it has none, and then removes its marker.
//   - The creator inserts the show (or the theatre's link to the movie), then reads the markers,
//     then checks that the theatre and movie still exist. If it lost, it removes what it wrote
//     and answers 409 (a deletion under way) or 404 (gone).
//
// Whichever comes first of the deleter's look and the creator's insert, one of them sees the
// other: a show inserted before the look is found, and the deletion refused; one inserted
// after it finds the marker or, once the deletion is done and its marker removed, finds the
// theatre or movie gone. Neither decision is a read followed by a write.
//
// A marker left by a deleter that died must not block for good. A marker's key names the
// theatre or movie and the window of DeletionMarkerStale it was made in: a deleter inserts the
// key of its window (a second deleter in that window answers 409), and a creator reads the keys
// of every window a live deleter's marker can be in, ignoring a marker older than
// DeletionMarkerStale. A deleter still short of deleting when half of that has passed gives up
// (503), so no marker is ignored while its deleter may still delete, whatever the clocks of
// the replicas, within maxDeletionSkew of each other.

// Kinds of deletion markers.
const (
	markTheatre = "theatre"
	markMovie   = "movie"
)

// maxDeletionSkew is how far the clocks of two replicas may differ for the markers to work: the
// deleter's half of DeletionMarkerStale is its own, the other half is the skew's.
const maxDeletionSkew = core.DeletionMarkerStale / 2

// deletionWindow numbers the window of a marker made at t.
func deletionWindow(t time.Time) int64 {
	return t.UnixMilli() / core.DeletionMarkerStale.Milliseconds()
}

func deletionKey(kind, id string, window int64) string {
	return kind + ":" + id + ":" + strconv.FormatInt(window, 10)
}

// deletionKeys are the keys a deleter of kind id, alive at now, may hold: it made its marker
// at most DeletionMarkerStale/2 ago by its clock, which is within maxDeletionSkew of ours.
func deletionKeys(kind, id string, now time.Time) []string {
	var keys []string
	for w := deletionWindow(now.Add(-core.DeletionMarkerStale)); w <= deletionWindow(now.Add(maxDeletionSkew)); w++ {
		keys = append(keys, deletionKey(kind, id, w))
	}
	return keys
}

// deleting runs the deletion of kind id under its marker: check refuses it (it has shows) or
// lets it go, then del deletes. The marker is removed whatever the outcome (if that fails, it
// stops new shows of kind id for at most DeletionMarkerStale).
func (c *Catalogue) deleting(ctx context.Context, kind, id string, check, del func(context.Context) error) error {
	at := c.now()
	key := deletionKey(kind, id, deletionWindow(at))
	won, err := c.deletions.Mark(ctx, key, at)
	if err != nil {
		_ = c.deletions.Unmark(context.WithoutCancel(ctx), key) // it may have landed
		return err
	}
	if !won {
		return errs.E(errs.Conflict, "the %s is being deleted by another request (or was, by one that failed less than %s ago)",
			kind, core.DeletionMarkerStale).Because(core.ReasonBeingDeleted)
	}
	defer func() { _ = c.deletions.Unmark(context.WithoutCancel(ctx), key) }()
	if err := check(ctx); err != nil {
		return err
	}
	if c.opts.Now().Sub(at) >= core.DeletionMarkerStale/2 {
		return errs.E(errs.Unavailable, "the check for shows took too long; try again")
	}
	return del(ctx)
}

// catRef names a theatre or a movie that a write depends on.
type catRef struct{ kind, id string }

// lostRefs reports which of refs a write made just before lost to a deletion: each one being
// deleted (errs.Conflict) or gone (errs.NotFound), with the error to answer. The markers are
// read first, then the documents: a deletion that is done may have removed its marker, and then
// what it deleted is gone. Without markers, only the documents are read.
func (c *Catalogue) lostRefs(ctx context.Context, refs []catRef, markers bool) (map[catRef]error, error) {
	lost := map[catRef]error{}
	if markers {
		if err := c.markedRefs(ctx, refs, lost); err != nil {
			return nil, err
		}
	}
	var theatres, movies []string
	for _, r := range refs {
		if _, ok := lost[r]; ok {
			continue
		}
		if r.kind == markTheatre {
			theatres = append(theatres, r.id)
		} else {
			movies = append(movies, r.id)
		}
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		firstErr   error
		foundMovie = map[string]bool{}
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	gone := func(kind, id string) {
		mu.Lock()
		lost[catRef{kind, id}] = errs.E(errs.NotFound, "%s %s not found", kind, id)
		mu.Unlock()
	}
	for _, id := range theatres {
		wg.Go(func() {
			if _, err := c.theatres.Get(ctx, id); errs.Is(err, errs.NotFound) {
				gone(markTheatre, id)
			} else if err != nil {
				fail(err)
			}
		})
	}
	if len(movies) > 0 {
		wg.Go(func() {
			if len(movies) == 1 {
				if _, err := c.movies.Get(ctx, movies[0]); err == nil {
					foundMovie[movies[0]] = true
				} else if !errs.Is(err, errs.NotFound) {
					fail(err)
				}
				return
			}
			found, err := c.movies.GetMany(ctx, movies)
			if err != nil {
				fail(err)
				return
			}
			for _, m := range found {
				foundMovie[m.ID] = true
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for _, id := range movies {
		if !foundMovie[id] {
			gone(markMovie, id)
		}
	}
	return lost, nil
}

// markedRefs adds to lost those of refs that have a marker younger than DeletionMarkerStale.
func (c *Catalogue) markedRefs(ctx context.Context, refs []catRef, lost map[catRef]error) error {
	now := c.opts.Now()
	owner := map[string]catRef{}
	var keys []string
	for _, r := range refs {
		for _, k := range deletionKeys(r.kind, r.id, now) {
			owner[k] = r
			keys = append(keys, k)
		}
	}
	marks, err := c.deletions.Marks(ctx, keys)
	if err != nil {
		return err
	}
	for k, at := range marks {
		if r := owner[k]; now.Sub(at) < core.DeletionMarkerStale {
			lost[r] = errs.E(errs.Conflict, "the %s %s is being deleted", r.kind, r.id).Because(core.ReasonBeingDeleted)
		}
	}
	return nil
}

// showStands answers nil if the show found by FindShow may be booked: its theatre and movie
// exist and, while the show is young enough for a deleter that looked for shows before it was
// stored to be still at work, neither is being deleted. Its creator removes such a show; this
// keeps bookings off it meanwhile (a booking holding seats would keep it), and off a show
// whose creator died before it could check (an orphan, answered errs.NotFound).
func (c *Catalogue) showStands(ctx context.Context, sh *core.Show) error {
	refs := []catRef{{markTheatre, sh.TheatreID}, {markMovie, sh.MovieID}}
	young := c.opts.Now().Sub(sh.CreatedAt) < core.DeletionMarkerStale+maxDeletionSkew
	lost, err := c.lostRefs(ctx, refs, young)
	if err != nil {
		return err
	}
	return firstLost(refs, lost)
}

// firstLost is the error of the first of refs that was lost.
func firstLost(refs []catRef, lost map[catRef]error) error {
	for _, r := range refs {
		if err, ok := lost[r]; ok {
			return err
		}
	}
	return nil
}

// undoShow removes a show its creator found lost to a deletion of its theatre or movie,
// through the booking engine's reservation (no booking can win seats of a show while it is
// being deleted, and one that already holds seats keeps the show: see SetShowDeletion).
func (c *Catalogue) undoShow(ctx context.Context, sh *core.Show) error {
	if err := c.removeShow(context.WithoutCancel(ctx), sh); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return nil
}

// removeShow deletes the show sh, after reserving its deletion with the booking engine.
func (c *Catalogue) removeShow(ctx context.Context, sh *core.Show) error {
	abort := func(context.Context) {}
	if f := c.reserveDeletion.Load(); f != nil {
		var err error
		if abort, err = (*f)(ctx, sh.ID); err != nil {
			return err
		}
	}
	err := c.shows.Delete(ctx, sh.ID)
	c.forgetShow(sh)
	if err != nil {
		abort(ctx)
	}
	return err
}

// showLost handles a show written (or perhaps written: created is false when its insert
// failed) by CreateShow: if its theatre or movie was lost to a deletion, the show is removed,
// and so is the theatre's link to the movie when CreateShow added it (linked) and the movie is
// lost. It answers the error to return, nil if the show stands.
func (c *Catalogue) showLost(ctx context.Context, sh *core.Show, created, linked bool) error {
	refs := []catRef{{markTheatre, sh.TheatreID}, {markMovie, sh.MovieID}}
	lost, err := c.lostRefs(ctx, refs, true)
	if err != nil {
		if created { // undecided: the show goes (the client's retry makes it again)
			if uerr := c.undoShow(ctx, sh); uerr != nil {
				return errs.Wrap(errs.CodeOf(err), err, "could not check the show's theatre and movie, nor remove the show")
			}
		}
		return err
	}
	if len(lost) == 0 {
		return nil
	}
	if !created { // its insert failed, yet may have landed
		found, err := c.shows.Find(context.WithoutCancel(ctx), sh.TheatreID, sh.MovieID, sh.Timing)
		if err != nil {
			return firstLost(refs, lost)
		}
		sh = found
	}
	ctx = context.WithoutCancel(ctx)
	if linked {
		if _, ok := lost[catRef{markMovie, sh.MovieID}]; ok {
			_, _ = c.theatres.RemoveMovies(ctx, sh.TheatreID, []string{sh.MovieID}, c.now())
		}
	}
	if err := c.undoShow(ctx, sh); err != nil {
		lerr := firstLost(refs, lost)
		return errs.Wrap(errs.CodeOf(err), err, lerr.Error()+"; the show created meanwhile could not be removed")
	}
	return firstLost(refs, lost)
}

// moviesLost handles movies just added to theatre t (the movies it listed before the change
// are t.Movies): those lost to a deletion are taken off it again, if they were not listed
// before. It answers the error to return, nil if every movie stands.
func (c *Catalogue) moviesLost(ctx context.Context, t *core.Theatre, ids []string) error {
	refs := make([]catRef, len(ids))
	for i, id := range ids {
		refs[i] = catRef{markMovie, id}
	}
	lost, err := c.lostRefs(ctx, refs, true)
	if err != nil {
		lost = map[catRef]error{} // undecided: every movie added goes (a retry adds them again)
		for _, r := range refs {
			lost[r] = err
		}
	}
	var undo []string
	for _, r := range refs {
		if _, ok := lost[r]; ok && !slices.Contains(t.Movies, r.id) {
			undo = append(undo, r.id)
		}
	}
	if len(undo) > 0 {
		if _, rerr := c.theatres.RemoveMovies(context.WithoutCancel(ctx), t.ID, undo, c.now()); rerr != nil && err == nil {
			lerr := firstLost(refs, lost)
			return errs.Wrap(errs.CodeOf(rerr), rerr, lerr.Error()+"; it could not be taken off the theatre again")
		}
	}
	if err != nil {
		return err
	}
	return firstLost(refs, lost)
}
