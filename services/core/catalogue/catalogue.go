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
	// Outbox receives the theatre-created emails. It may be nil (emails are then skipped).
	// The wiring gives the outbox relay, built before the catalogue and started after it.
	Outbox core.Outbox
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
	return c
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
