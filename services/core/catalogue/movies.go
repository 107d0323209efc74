package catalogue

import (
	"context"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// CreateMovie validates p (a full movie) and stores it.
func (c *Catalogue) CreateMovie(ctx context.Context, caller *core.User, p core.MoviePatch) (*core.Movie, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := p.Validate(true); err != nil {
		return nil, err
	}
	now := c.now()
	m := &core.Movie{Name: *p.Name, Description: *p.Description, Casts: *p.Casts, TrailerURL: *p.TrailerURL,
		Language: *p.Language, ReleaseDate: *p.ReleaseDate, Director: *p.Director, ReleaseStatus: *p.ReleaseStatus,
		CreatedAt: now, UpdatedAt: now}
	if err := c.movies.Create(ctx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// ReplaceMovie replaces every field of the movie (PUT): p must be a full movie.
func (c *Catalogue) ReplaceMovie(ctx context.Context, caller *core.User, id string, p core.MoviePatch) (*core.Movie, error) {
	return c.changeMovie(ctx, caller, id, p, true)
}

// UpdateMovie changes the given fields of the movie (PATCH).
func (c *Catalogue) UpdateMovie(ctx context.Context, caller *core.User, id string, p core.MoviePatch) (*core.Movie, error) {
	return c.changeMovie(ctx, caller, id, p, false)
}

func (c *Catalogue) changeMovie(ctx context.Context, caller *core.User, id string, p core.MoviePatch, full bool) (*core.Movie, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	if err := p.Validate(full); err != nil {
		return nil, err
	}
	return c.movies.Update(ctx, id, p, c.now())
}

// DeleteMovie deletes a movie that no show plays, and takes it off every theatre. It is
// decided against concurrent show creations by its deletion marker (catalogue_deletion.go).
func (c *Catalogue) DeleteMovie(ctx context.Context, caller *core.User, id string) (*core.Movie, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	m, err := c.movies.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	err = c.deleting(ctx, markMovie, id, func(ctx context.Context) error {
		n, err := c.shows.Count(ctx, core.ShowFilter{MovieID: id})
		if err == nil && n > 0 {
			err = errs.E(errs.Conflict, "the movie has %d show(s): delete them first", n).Because(core.ReasonInUse)
		}
		return err
	}, func(ctx context.Context) error {
		if err := c.movies.Delete(ctx, id); err != nil {
			return err
		}
		return c.theatres.RemoveMovieEverywhere(ctx, id, c.now())
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// GetMovie finds a movie by id.
func (c *Catalogue) GetMovie(ctx context.Context, id string) (*core.Movie, error) {
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	return c.movies.Get(ctx, id)
}

// ListMovies returns a page of the movies that match f, and how many match in all.
func (c *Catalogue) ListMovies(ctx context.Context, f core.MovieFilter) ([]*core.Movie, int64, error) {
	if err := checkPage(&f.Page); err != nil {
		return nil, 0, err
	}
	return c.movies.List(ctx, f)
}
