package core

import (
	"context"
	"time"
)

// Movie is a film in the catalogue. Field names are the original's.
type Movie struct {
	ID            string    `json:"_id"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	Casts         []string  `json:"casts"`
	TrailerURL    string    `json:"trailerUrl"`
	Language      []string  `json:"language"`
	ReleaseDate   string    `json:"releaseDate"`
	Director      string    `json:"director"`
	ReleaseStatus string    `json:"releaseStatus"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// Theatre is a cinema. Owner is the id of the CLIENT (or ADMIN) who created it; Movies are
// the ids of the movies it runs.
type Theatre struct {
	ID          string    `json:"_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	City        string    `json:"city"`
	PinCode     int       `json:"pinCode"`
	Address     string    `json:"address"`
	Owner       string    `json:"owner"`
	Movies      []string  `json:"movies"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Show is one screening of a movie in a theatre. A booking names it by theatre, movie and
// the same Timing string. It has NoOfSeats seats, labelled row by row (see booking.SeatLayout).
type Show struct {
	ID          string    `json:"_id"`
	TheatreID   string    `json:"theatreId"`
	MovieID     string    `json:"movieId"`
	Timing      string    `json:"timing"`
	NoOfSeats   int       `json:"noOfSeats"`
	SeatsPerRow int       `json:"seatsPerRow"`
	Price       float64   `json:"price"`
	Format      string    `json:"format,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// ShowFinder is what the booking engine needs of the catalogue.
type ShowFinder interface {
	// GetShow finds a show by id: errs.NotFound if none, errs.Invalid for a malformed id.
	GetShow(ctx context.Context, id string) (*Show, error)
	// FindShow finds the show of a theatre and movie at timing: errs.NotFound if none.
	FindShow(ctx context.Context, theatreID, movieID, timing string) (*Show, error)
	// GetMovie and GetTheatre serve the confirmation email's names.
	GetMovie(ctx context.Context, id string) (*Movie, error)
	GetTheatre(ctx context.Context, id string) (*Theatre, error)
}

// DefaultSeatsPerRow is the row length of a show that does not give one.
const DefaultSeatsPerRow = 10

// DeletionMarkerStale is the age past which a deletion marker (of a show, a theatre or a
// movie) no longer stops bookings or show creations: a deletion decides in well under a
// second, so an older marker was left by a deleter that died (or by a deletion that
// succeeded, and then the show is gone anyway).
const DeletionMarkerStale = time.Minute

// Release statuses of a movie (the original's enum).
const (
	ReleaseReleased   = "RELEASED"
	ReleaseUnreleased = "UNRELEASED"
	ReleaseBlocked    = "BLOCKED"
)

// Page bounds of the catalogue lists.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 500
	MaxPageSkip      = 1_000_000
)

// Page is a window of a list: Limit items after the first Skip (in _id order).
type Page struct {
	Limit int
	Skip  int
}

// MovieFilter selects movies; zero fields match everything. Name is an exact match (the
// original's ?name=).
type MovieFilter struct {
	Name string
	Page
}

// TheatreFilter selects theatres; zero fields match everything. MovieID selects the
// theatres that run that movie.
type TheatreFilter struct {
	City    string
	Name    string
	PinCode int
	MovieID string
	Page
}

// ShowFilter selects shows of a theatre and/or a movie.
type ShowFilter struct {
	TheatreID string
	MovieID   string
	Page
}

// MoviePatch changes some of a movie's fields; nil fields stay as they are.
type MoviePatch struct {
	Name          *string
	Description   *string
	Casts         *[]string
	TrailerURL    *string
	Language      *[]string
	ReleaseDate   *string
	Director      *string
	ReleaseStatus *string
}

// TheatrePatch changes some of a theatre's fields; nil fields stay as they are. Owner and
// Movies are never changed through it.
type TheatrePatch struct {
	Name        *string
	Description *string
	City        *string
	PinCode     *int
	Address     *string
}

// ShowPatch changes some of a show's fields; its theatre and movie never change.
type ShowPatch struct {
	Timing      *string
	NoOfSeats   *int
	SeatsPerRow *int
	Price       *float64
	Format      *string
}
