package catalogue

import (
	"context"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

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
