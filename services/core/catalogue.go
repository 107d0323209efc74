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
// the same Timing string. It has NoOfSeats seats, labelled row by row (see SeatLabels).
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

// Email is a message owed to someone: written to the outbox durably, then relayed to the
// notification service. Key is unique per email and becomes the relay's Idempotency-Key.
type Email struct {
	Key        string
	Recipients []string
	Subject    string
	Content    string
	// Kind and Ref say which decision the email belongs to (e.g. "booking-paid" and the booking
	// id); the relay asks a guard whether that decision stands before it sends.
	Kind string
	Ref  string
	// TraceParent is the W3C traceparent of the request that owed the email, so the trace
	// continues into the notification service.
	TraceParent string
}

// Outbox accepts emails to relay. Enqueue is durable when it returns nil; enqueueing the
// same Key twice keeps one email.
type Outbox interface {
	Enqueue(ctx context.Context, e Email) error
}
