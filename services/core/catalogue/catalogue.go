package catalogue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// EmailKindTheatreCreated is the Kind of the email owed to a theatre's owner at its creation.
const EmailKindTheatreCreated = "theatre-created"

// DefaultShowCacheTTL is how long FindShow keeps a show it found (see CatalogueOptions).
const DefaultShowCacheTTL = time.Second

// CatalogueStores are the stores of the catalogue.
type CatalogueStores struct {
	Movies    MovieStore
	Theatres  TheatreStore
	Shows     ShowStore
	Deletions DeletionStore // required: see catalogue_deletion.go
}

// CatalogueOptions configure the Catalogue.
type CatalogueOptions struct {
	// Outbox receives the theatre-created emails. It may be nil (emails are then skipped),
	// and may be given later with SetOutbox. OutboxFunc, when set, is asked at each send
	// instead (for wiring where the outbox is built after the catalogue).
	Outbox     core.Outbox
	OutboxFunc func() core.Outbox
	// TraceParent returns the W3C traceparent of the request in ctx, kept with each email
	// (nil: none). The HTTP layer knows how: the wiring passes httpx.TraceParent.
	TraceParent func(ctx context.Context) string
	// ShowCacheTTL bounds how long FindShow (the booking engine's lookup by theatre, movie and
	// timing) serves a show from memory: a change made by another replica is seen after at
	// most this long. Default DefaultShowCacheTTL; negative disables the cache.
	ShowCacheTTL time.Duration
	// ShowCacheEntries bounds that cache (default 10000).
	ShowCacheEntries int
	Now              func() time.Time
}

// Catalogue is the catalogue service: movies, theatres and shows, who may change them, and
// the reads the booking engine needs (it implements ShowFinder).
//
// Rules, where the original left them open:
//   - Movies are created, replaced, updated and deleted by any approved CLIENT or ADMIN (the
//     original's behaviour). Theatres are changed by their owner (an approved CLIENT) or an
//     approved ADMIN; the owner is the creator and never changes.
//   - A show is created or changed by the owner of its theatre (or an admin); its movie must
//     exist, and creating it adds the movie to the theatre's movies (the link is added, not
//     required). Its theatre and movie never change; its seats may grow but not shrink and
//     its row length is fixed, so no sold seat ever disappears or is relabelled.
//   - Deleting a movie or a theatre that still has shows is refused (409: delete the shows
//     first, they carry bookings); deleting a movie takes it off every theatre's list. A
//     deletion racing the creation of a show (or the listing of the movie by a theatre) is
//     decided by inserts: see catalogue_deletion.go. No show outlives its theatre or movie.
type Catalogue struct {
	movies    MovieStore
	theatres  TheatreStore
	shows     ShowStore
	deletions DeletionStore
	opts      CatalogueOptions
	outbox    atomic.Pointer[outboxRef]
	showTTL   time.Duration

	mu        sync.Mutex
	showCache map[showKey]cachedShow
	showGen   atomic.Uint64 // bumped by every show change in this process

	reserveDeletion atomic.Pointer[func(ctx context.Context, showID string) (func(context.Context), error)]
}

// SetShowDeletion tells the catalogue how to reserve a show's deletion with the booking engine
// (its ReserveShowDeletion): a show with seats held or sold cannot be deleted, and no booking
// can win seats of a show while it is being deleted.
func (c *Catalogue) SetShowDeletion(f func(ctx context.Context, showID string) (abort func(context.Context), err error)) {
	c.reserveDeletion.Store(&f)
}

type outboxRef struct{ o core.Outbox }

type showKey struct{ theatre, movie, timing string }

type cachedShow struct {
	show    core.Show
	expires time.Time
}

var _ core.ShowFinder = (*Catalogue)(nil)

// NewCatalogue returns the catalogue on its stores.
func NewCatalogue(s CatalogueStores, opts CatalogueOptions) *Catalogue {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ShowCacheTTL == 0 {
		opts.ShowCacheTTL = DefaultShowCacheTTL
	}
	if opts.ShowCacheEntries <= 0 {
		opts.ShowCacheEntries = 10000
	}
	if s.Deletions == nil {
		panic("catalogue.NewCatalogue: CatalogueStores.Deletions is required")
	}
	c := &Catalogue{movies: s.Movies, theatres: s.Theatres, shows: s.Shows, deletions: s.Deletions, opts: opts,
		showTTL: opts.ShowCacheTTL, showCache: map[showKey]cachedShow{}}
	if opts.Outbox != nil {
		c.SetOutbox(opts.Outbox)
	}
	return c
}

// SetOutbox gives the catalogue the outbox of its emails (nil: emails are skipped).
func (c *Catalogue) SetOutbox(o core.Outbox) { c.outbox.Store(&outboxRef{o}) }

func (c *Catalogue) outboxNow() core.Outbox {
	if r := c.outbox.Load(); r != nil && r.o != nil {
		return r.o
	}
	if c.opts.OutboxFunc != nil {
		return c.opts.OutboxFunc()
	}
	return nil
}

func (c *Catalogue) now() time.Time { return c.opts.Now().UTC().Truncate(time.Millisecond) }

// canEdit: an approved CLIENT or ADMIN.
func canEdit(caller *core.User) error {
	if caller == nil {
		return errs.E(errs.Unauthorized, "sign in first")
	}
	if !caller.Is(core.RoleClient) && !caller.Is(core.RoleAdmin) {
		return errs.E(errs.Forbidden, "only an approved client or admin can change the catalogue")
	}
	return nil
}

// mayManage: the theatre's owner (an approved CLIENT) or an approved ADMIN.
func mayManage(caller *core.User, t *core.Theatre) error {
	if err := canEdit(caller); err != nil {
		return err
	}
	if caller.Is(core.RoleAdmin) || t.Owner == caller.ID {
		return nil
	}
	return errs.E(errs.Forbidden, "only the theatre's owner or an admin can change it")
}

// checkPage fills in the default limit and bounds the page.
func checkPage(p *core.Page) error {
	f := core.FieldErrs{}
	if p.Limit == 0 {
		p.Limit = core.DefaultPageLimit
	}
	if p.Limit < 1 || p.Limit > core.MaxPageLimit {
		f["limit"] = fmt.Sprintf("must be a whole number from 1 to %d", core.MaxPageLimit)
	}
	if p.Skip < 0 || p.Skip > core.MaxPageSkip {
		f["skip"] = fmt.Sprintf("must be a whole number from 0 to %d", core.MaxPageSkip)
	}
	return f.Err()
}

// ---- movies ----

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
			err = errs.E(errs.Conflict, "the movie has %d show(s): delete them first", n)
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

// ---- theatres ----

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
	ob := c.outboxNow()
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
			err = errs.E(errs.Conflict, "the theatre has %d show(s): delete them first", n)
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

// ---- shows ----

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

// MovieStore keeps movies. Ids are 24-character hex strings: a malformed one answers
// errs.Invalid, an unknown one errs.NotFound.
type MovieStore interface {
	// Create stores m and sets its ID.
	Create(ctx context.Context, m *core.Movie) error
	Get(ctx context.Context, id string) (*core.Movie, error)
	// List returns the movies of f's page in _id order, and how many match f in all.
	List(ctx context.Context, f core.MovieFilter) ([]*core.Movie, int64, error)
	// GetMany returns the movies among ids that exist, in _id order.
	GetMany(ctx context.Context, ids []string) ([]*core.Movie, error)
	// Update applies p (and updatedAt) and returns the movie after the change.
	Update(ctx context.Context, id string, p core.MoviePatch, at time.Time) (*core.Movie, error)
	Delete(ctx context.Context, id string) error
}

// TheatreStore keeps theatres. Ids (of theatres, owners and movies) are as MovieStore's: a
// malformed one answers errs.Invalid, an unknown theatre errs.NotFound.
type TheatreStore interface {
	Create(ctx context.Context, t *core.Theatre) error
	Get(ctx context.Context, id string) (*core.Theatre, error)
	List(ctx context.Context, f core.TheatreFilter) ([]*core.Theatre, int64, error)
	Update(ctx context.Context, id string, p core.TheatrePatch, at time.Time) (*core.Theatre, error)
	Delete(ctx context.Context, id string) error
	// AddMovies and RemoveMovies add movie ids to (as a set) or remove them from the
	// theatre's movies, and return the theatre after the change. Concurrent changes of one
	// theatre's movies all take effect, one after the other; one that keeps losing to others
	// is errs.Conflict (nothing changed).
	AddMovies(ctx context.Context, id string, movieIDs []string, at time.Time) (*core.Theatre, error)
	RemoveMovies(ctx context.Context, id string, movieIDs []string, at time.Time) (*core.Theatre, error)
	// RemoveMovieEverywhere takes a (deleted) movie off every theatre.
	RemoveMovieEverywhere(ctx context.Context, movieID string, at time.Time) error
}

// DeletionStore keeps the markers of theatres and movies being deleted (see
// Catalogue.DeleteTheatre). A marker's key is unique: the store's unique key decides which of
// two inserts of one key wins, never a read.
type DeletionStore interface {
	// Mark inserts the marker key, made at at; false if the key exists already.
	Mark(ctx context.Context, key string, at time.Time) (bool, error)
	// Marks returns when each of the keys that exist was made.
	Marks(ctx context.Context, keys []string) (map[string]time.Time, error)
	// Unmark deletes the marker key (one that does not exist is no error).
	Unmark(ctx context.Context, key string) error
}

// ShowStore keeps shows. (theatreId, movieId, timing) is unique: a second show of the same
// identity (created, or updated onto it) answers errs.Conflict, decided by the store's unique
// index. Ids are as MovieStore's.
type ShowStore interface {
	Create(ctx context.Context, s *core.Show) error
	Get(ctx context.Context, id string) (*core.Show, error)
	// Find finds the show of a theatre and movie at timing: errs.NotFound if none.
	Find(ctx context.Context, theatreID, movieID, timing string) (*core.Show, error)
	List(ctx context.Context, f core.ShowFilter) ([]*core.Show, int64, error)
	Update(ctx context.Context, id string, p core.ShowPatch, at time.Time) (*core.Show, error)
	Delete(ctx context.Context, id string) error
	// Count counts the shows matching f (its page is ignored).
	Count(ctx context.Context, f core.ShowFilter) (int64, error)
}
