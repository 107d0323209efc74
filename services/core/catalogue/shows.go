package catalogue

import (
	"context"
	"fmt"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// CreateShow validates s, checks that the caller manages its theatre and that its movie
// exists, adds the movie to the theatre (errs.Conflict if other changes of its movies keep
// winning), and stores the show. A show of the same theatre, movie and timing is
// errs.Conflict. A show stored while its theatre or movie is being deleted is removed again:
// errs.Conflict, or errs.NotFound once it is gone (see catalogue_deletion.go).
func (c *Catalogue) CreateShow(ctx context.Context, caller *core.User, s core.NewShow) (*core.Show, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	t, err := c.theatres.Get(ctx, s.TheatreID)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "theatre %s not found", s.TheatreID)
	}
	if err != nil {
		return nil, err
	}
	if err := mayManage(caller, t); err != nil {
		return nil, err
	}
	if _, err := c.movies.Get(ctx, s.MovieID); errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "movie %s not found", s.MovieID)
	} else if err != nil {
		return nil, err
	}
	now := c.now()
	sh := &core.Show{TheatreID: s.TheatreID, MovieID: s.MovieID, Timing: *s.Timing, NoOfSeats: *s.NoOfSeats,
		SeatsPerRow: *s.SeatsPerRow, Price: *s.Price, CreatedAt: now, UpdatedAt: now}
	if s.Format != nil {
		sh.Format = *s.Format
	}
	// The movie joins the theatre's list before the show is stored: if this fails, there is no
	// show without its movie listed (a retry makes both); if the show then fails, the link
	// stays, which is harmless (PATCH /theatres/:id/movies can take it off).
	linked := !hasID(t.Movies, s.MovieID)
	if linked {
		if _, err := c.theatres.AddMovies(ctx, t.ID, []string{s.MovieID}, now); err != nil {
			return nil, err
		}
	}
	err = c.shows.Create(ctx, sh)
	if errs.Is(err, errs.Conflict) { // another show has this identity: nothing of this one was stored
		return nil, err
	}
	// The show is stored (or its insert failed, yet may have landed): did it lose to a deletion?
	if lerr := c.showLost(ctx, sh, err == nil, linked); lerr != nil {
		return nil, lerr
	}
	if err != nil {
		return nil, err
	}
	return sh, nil
}

func hasID(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// managedShow loads the show id and checks that the caller manages its theatre.
func (c *Catalogue) managedShow(ctx context.Context, caller *core.User, id string) (*core.Show, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	sh, err := c.shows.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := c.theatres.Get(ctx, sh.TheatreID)
	if errs.Is(err, errs.NotFound) {
		// an orphan show (its theatre is gone): only an admin may touch it
		if caller.Is(core.RoleAdmin) {
			return sh, nil
		}
		return nil, errs.E(errs.Forbidden, "only an admin can change a show whose theatre is gone")
	}
	if err != nil {
		return nil, err
	}
	return sh, mayManage(caller, t)
}

// UpdateShow changes the given fields of a show. Its seats may grow but not shrink, and its
// row length cannot change: bookings hold seats by label.
func (c *Catalogue) UpdateShow(ctx context.Context, caller *core.User, id string, p core.ShowPatch) (*core.Show, error) {
	sh, err := c.managedShow(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	fe := core.FieldErrs{}
	if p.NoOfSeats != nil && *p.NoOfSeats < sh.NoOfSeats {
		fe["noOfSeats"] = fmt.Sprintf("can only grow (now %d): booked seats must not disappear", sh.NoOfSeats)
	}
	if p.SeatsPerRow != nil && *p.SeatsPerRow != sh.SeatsPerRow {
		fe["seatsPerRow"] = "cannot change: seats are labelled by it"
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	out, err := c.shows.Update(ctx, id, p, c.now())
	c.forgetShow(sh)
	if out != nil {
		c.forgetShow(out)
	}
	return out, err
}

// DeleteShow deletes a show.
func (c *Catalogue) DeleteShow(ctx context.Context, caller *core.User, id string) (*core.Show, error) {
	sh, err := c.managedShow(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := c.removeShow(ctx, sh); err != nil {
		return nil, err
	}
	return sh, nil
}

// GetShow finds a show by id.
func (c *Catalogue) GetShow(ctx context.Context, id string) (*core.Show, error) {
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	return c.shows.Get(ctx, id)
}

// ListShows returns a page of the shows that match f, and how many match in all.
func (c *Catalogue) ListShows(ctx context.Context, f core.ShowFilter) ([]*core.Show, int64, error) {
	fe := core.FieldErrs{}
	if f.TheatreID != "" && !core.IsID(f.TheatreID) {
		fe["theatreId"] = "must be a 24-character hex id"
	}
	if f.MovieID != "" && !core.IsID(f.MovieID) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if err := checkPage(&f.Page); err != nil {
		for k, v := range err.(*errs.Error).Fields {
			fe[k] = v
		}
	}
	if err := fe.Err(); err != nil {
		return nil, 0, err
	}
	return c.shows.List(ctx, f)
}

// FindShow finds the show of a theatre and movie at timing (the booking engine's lookup). A
// show whose theatre or movie is gone is not found, nor is a young one whose theatre or movie
// is being deleted (errs.Conflict): see showStands. A show found is kept in memory for
// ShowCacheTTL; a change in this process forgets it at once.
func (c *Catalogue) FindShow(ctx context.Context, theatreID, movieID, timing string) (*core.Show, error) {
	fe := core.FieldErrs{}
	if !core.IsID(theatreID) {
		fe["theatreId"] = "must be a 24-character hex id"
	}
	if !core.IsID(movieID) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if timing == "" {
		fe["timing"] = "is required"
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	k := showKey{theatreID, movieID, timing}
	if c.showTTL > 0 {
		now := c.opts.Now()
		c.mu.Lock()
		e, ok := c.showCache[k]
		c.mu.Unlock()
		if ok && now.Before(e.expires) {
			s := e.show
			return &s, nil
		}
	}
	gen := c.showGen.Load()
	sh, err := c.shows.Find(ctx, theatreID, movieID, timing)
	if err == nil {
		if err = c.showStands(ctx, sh); err != nil {
			sh = nil
		}
	}
	if err != nil || c.showTTL <= 0 {
		return sh, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.showGen.Load() != gen {
		return sh, nil // a show changed meanwhile: do not keep what may be stale
	}
	if len(c.showCache) >= c.opts.ShowCacheEntries {
		now := c.opts.Now()
		for key, e := range c.showCache {
			if !now.Before(e.expires) {
				delete(c.showCache, key)
			}
		}
		if len(c.showCache) >= c.opts.ShowCacheEntries {
			clear(c.showCache)
		}
	}
	c.showCache[k] = cachedShow{show: *sh, expires: c.opts.Now().Add(c.showTTL)}
	return sh, nil
}

func (c *Catalogue) forgetShow(s *core.Show) {
	c.mu.Lock()
	c.showGen.Add(1)
	delete(c.showCache, showKey{s.TheatreID, s.MovieID, s.Timing})
	c.mu.Unlock()
}
