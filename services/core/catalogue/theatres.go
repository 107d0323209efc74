package catalogue

import (
	"context"
	"fmt"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// CreateTheatre validates p (a full theatre), stores it with the caller as its owner, and
// queues an email to the owner.
func (c *Catalogue) CreateTheatre(ctx context.Context, caller *core.User, p core.TheatrePatch) (*core.Theatre, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := p.Validate(true); err != nil {
		return nil, err
	}
	now := c.now()
	t := &core.Theatre{Name: *p.Name, City: *p.City, PinCode: *p.PinCode, Owner: caller.ID, Movies: []string{},
		CreatedAt: now, UpdatedAt: now}
	if p.Description != nil {
		t.Description = *p.Description
	}
	if p.Address != nil {
		t.Address = *p.Address
	}
	if err := c.theatres.Create(ctx, t); err != nil {
		return nil, err
	}
	if err := c.enqueueTheatreCreated(ctx, caller, t); err != nil {
		// The email is owed with the theatre: without it, undo the theatre so the client's
		// retry creates both (the email key is per theatre, so nothing is sent twice).
		if derr := c.theatres.Delete(context.WithoutCancel(ctx), t.ID); derr != nil {
			return nil, errs.Wrap(errs.CodeOf(err), fmt.Errorf("%w; undoing the theatre: %v", err, derr),
				"the theatre was created but its email could not be queued")
		}
		return nil, err
	}
	return t, nil
}

func (c *Catalogue) enqueueTheatreCreated(ctx context.Context, owner *core.User, t *core.Theatre) error {
	ob := c.opts.Outbox
	if ob == nil || owner.Email == "" {
		return nil
	}
	e := core.Email{
		Key:        EmailKindTheatreCreated + ":" + t.ID,
		Recipients: []string{owner.Email},
		Subject:    "Your theatre " + t.Name + " is on CineFlow",
		Content: fmt.Sprintf("Hello %s,\n\nyour theatre has been created.\n\nName: %s\nCity: %s\nPin code: %d\nAddress: %s\n\nTheatre id: %s\n",
			owner.Name, t.Name, t.City, t.PinCode, t.Address, t.ID),
		Kind: EmailKindTheatreCreated,
		Ref:  t.ID,
	}
	if c.opts.TraceParent != nil {
		e.TraceParent = c.opts.TraceParent(ctx)
	}
	var err error
	for attempt := range 3 {
		if err = ob.Enqueue(ctx, e); err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return err
}

// managed loads the theatre id and checks that the caller may change it.
func (c *Catalogue) managed(ctx context.Context, caller *core.User, field, id string) (*core.Theatre, error) {
	if err := canEdit(caller); err != nil {
		return nil, err
	}
	if err := core.CheckID(field, id); err != nil {
		return nil, err
	}
	t, err := c.theatres.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return t, mayManage(caller, t)
}

// ReplaceTheatre replaces the theatre's fields (PUT); owner and movies stay.
func (c *Catalogue) ReplaceTheatre(ctx context.Context, caller *core.User, id string, p core.TheatrePatch) (*core.Theatre, error) {
	return c.changeTheatre(ctx, caller, id, p, true)
}

// UpdateTheatre changes the given fields of the theatre (PATCH).
func (c *Catalogue) UpdateTheatre(ctx context.Context, caller *core.User, id string, p core.TheatrePatch) (*core.Theatre, error) {
	return c.changeTheatre(ctx, caller, id, p, false)
}

func (c *Catalogue) changeTheatre(ctx context.Context, caller *core.User, id string, p core.TheatrePatch, full bool) (*core.Theatre, error) {
	if _, err := c.managed(ctx, caller, "id", id); err != nil {
		return nil, err
	}
	if err := p.Validate(full); err != nil {
		return nil, err
	}
	if full {
		empty := ""
		if p.Description == nil {
			p.Description = &empty
		}
		if p.Address == nil {
			p.Address = &empty
		}
	}
	return c.theatres.Update(ctx, id, p, c.now())
}

// DeleteTheatre deletes a theatre that has no shows. It is decided against concurrent show
// creations by its deletion marker (catalogue_deletion.go).
func (c *Catalogue) DeleteTheatre(ctx context.Context, caller *core.User, id string) (*core.Theatre, error) {
	t, err := c.managed(ctx, caller, "id", id)
	if err != nil {
		return nil, err
	}
	err = c.deleting(ctx, markTheatre, id, func(ctx context.Context) error {
		n, err := c.shows.Count(ctx, core.ShowFilter{TheatreID: id})
		if err == nil && n > 0 {
			err = errs.E(errs.Conflict, "the theatre has %d show(s): delete them first", n).Because(core.ReasonInUse)
		}
		return err
	}, func(ctx context.Context) error { return c.theatres.Delete(ctx, id) })
	if err != nil {
		return nil, err
	}
	return t, nil
}

// GetTheatre finds a theatre by id.
func (c *Catalogue) GetTheatre(ctx context.Context, id string) (*core.Theatre, error) {
	if err := core.CheckID("id", id); err != nil {
		return nil, err
	}
	return c.theatres.Get(ctx, id)
}

// ListTheatres returns a page of the theatres that match f, and how many match in all.
func (c *Catalogue) ListTheatres(ctx context.Context, f core.TheatreFilter) ([]*core.Theatre, int64, error) {
	fe := core.FieldErrs{}
	if f.MovieID != "" && !core.IsID(f.MovieID) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if f.PinCode < 0 || f.PinCode > core.MaxPinCode {
		fe["pinCode"] = "must be a positive number of up to 6 digits"
	}
	if err := checkPage(&f.Page); err != nil {
		for k, v := range err.(*errs.Error).Fields {
			fe[k] = v
		}
	}
	if err := fe.Err(); err != nil {
		return nil, 0, err
	}
	return c.theatres.List(ctx, f)
}

// UpdateTheatreMovies adds the movies (insert true; each must exist) to the theatre or
// removes them from it (insert false), and returns the theatre. A movie added while it is
// being deleted is taken off again (errs.Conflict, or errs.NotFound once it is gone): the
// movies are added first, then checked (see catalogue_deletion.go); the others stay added.
func (c *Catalogue) UpdateTheatreMovies(ctx context.Context, caller *core.User, id string, movieIDs []string, insert bool) (*core.Theatre, error) {
	t, err := c.managed(ctx, caller, "id", id)
	if err != nil {
		return nil, err
	}
	switch {
	case len(movieIDs) == 0:
		return nil, errs.Fields(map[string]string{"movieIds": "must hold at least one movie id"})
	case len(movieIDs) > core.MaxMovieIDsPerCall:
		return nil, errs.Fields(map[string]string{"movieIds": fmt.Sprintf("must hold at most %d ids", core.MaxMovieIDsPerCall)})
	}
	seen := make(map[string]bool, len(movieIDs))
	ids := make([]string, 0, len(movieIDs))
	for i, m := range movieIDs {
		if !core.IsID(m) {
			return nil, errs.Fields(map[string]string{"movieIds": fmt.Sprintf("item %d must be a 24-character hex id", i+1)})
		}
		if !seen[m] {
			seen[m] = true
			ids = append(ids, m)
		}
	}
	if !insert {
		return c.theatres.RemoveMovies(ctx, id, ids, c.now())
	}
	found, err := c.movies.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(found) != len(ids) {
		have := make(map[string]bool, len(found))
		for _, m := range found {
			have[m.ID] = true
		}
		for _, m := range ids {
			if !have[m] {
				return nil, errs.E(errs.NotFound, "movie %s not found", m)
			}
		}
	}
	out, err := c.theatres.AddMovies(ctx, id, ids, c.now())
	if lerr := c.moviesLost(ctx, t, ids); err == nil {
		err = lerr // a failed change may have landed all the same: checked either way
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TheatreMovies returns the movies the theatre runs.
func (c *Catalogue) TheatreMovies(ctx context.Context, id string) ([]*core.Movie, error) {
	t, err := c.GetTheatre(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(t.Movies) == 0 {
		return []*core.Movie{}, nil
	}
	return c.movies.GetMany(ctx, t.Movies)
}

// TheatreRunsMovie reports whether the theatre runs the movie.
func (c *Catalogue) TheatreRunsMovie(ctx context.Context, theatreID, movieID string) (bool, error) {
	fe := core.FieldErrs{}
	if !core.IsID(theatreID) {
		fe["theatreId"] = "must be a 24-character hex id"
	}
	if !core.IsID(movieID) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if err := fe.Err(); err != nil {
		return false, err
	}
	t, err := c.theatres.Get(ctx, theatreID)
	if err != nil {
		return false, err
	}
	for _, m := range t.Movies {
		if m == movieID {
			return true, nil
		}
	}
	return false, nil
}

// TheatreCreatedGuard is the outbox guard of the theatre-created emails: send while the
// theatre exists, drop the email of a theatre that is gone (e.g. its creation was undone).
// Register it on the relay: relay.Guard(EmailKindTheatreCreated, c.TheatreCreatedGuard).
func (c *Catalogue) TheatreCreatedGuard(ctx context.Context, kind, ref string) (core.GuardVerdict, error) {
	_, err := c.GetTheatre(ctx, ref)
	switch {
	case err == nil:
		return core.GuardSend, nil
	case errs.Is(err, errs.NotFound), errs.Is(err, errs.Invalid):
		return core.GuardDrop, nil
	}
	return core.GuardWait, err
}
