package core

import (
	"context"
	"time"
)

// BookingStatus is a booking's state. IN_PROCESS holds seats; the other three are fates,
// each decided exactly once by an outcome record.
type BookingStatus string

// The booking statuses (SUCCESSFULL is the original's spelling).
const (
	BookingInProcess BookingStatus = "IN_PROCESS"
	BookingPaid      BookingStatus = "SUCCESSFULL"
	BookingCancelled BookingStatus = "CANCELLED"
	BookingExpired   BookingStatus = "EXPIRED"
)

// Final reports whether s is a decided fate.
func (s BookingStatus) Final() bool {
	return s == BookingPaid || s == BookingCancelled || s == BookingExpired
}

// PaymentStatus is a payment's state.
type PaymentStatus string

// The payment statuses.
const (
	PaymentPending PaymentStatus = "PENDING"
	PaymentSuccess PaymentStatus = "SUCCESS"
	PaymentFailed  PaymentStatus = "FAILED"
)

// Booking is a customer's claim on seats of a show. TotalCost is the show's price times the
// number of seats; ExpiresAt ends the hold unless the booking is paid first.
type Booking struct {
	ID        string        `json:"_id"`
	UserID    string        `json:"userId"`
	TheatreID string        `json:"theatreId"`
	MovieID   string        `json:"movieId"`
	ShowID    string        `json:"showId"`
	Timing    string        `json:"timing"`
	NoOfSeats int           `json:"noOfSeats"`
	Seats     []string      `json:"seats"`
	TotalCost float64       `json:"totalCost"`
	Status    BookingStatus `json:"status"`
	ExpiresAt time.Time     `json:"expiresAt"`
	PaymentID string        `json:"paymentId,omitempty"`
	CreatedAt time.Time     `json:"createdAt"`
	UpdatedAt time.Time     `json:"updatedAt"`
}

// Payment is one attempt to pay a booking. At most one payment of a booking is SUCCESS.
type Payment struct {
	ID        string        `json:"_id"`
	BookingID string        `json:"bookingId"`
	UserID    string        `json:"userId"`
	Amount    float64       `json:"amount"`
	Status    PaymentStatus `json:"status"`
	Reason    string        `json:"reason,omitempty"`
	CreatedAt time.Time     `json:"createdAt"`
	UpdatedAt time.Time     `json:"updatedAt"`
}

// Hold is one seat of a show occupied by a booking. The store keeps at most one hold per
// (show, seat): a unique key, so two bookings can never hold the same seat. A hold lives
// until its booking is cancelled or expires; a paid booking's holds are the sold seats.
type Hold struct {
	ShowID    string
	Seat      string
	BookingID string
	ExpiresAt time.Time
	Sold      bool // a hint set after payment; the outcome record is the truth
}

// Outcome is the fate of a booking, written once: the first insert for a booking wins.
type Outcome struct {
	BookingID string
	Status    BookingStatus // SUCCESSFULL, CANCELLED or EXPIRED
	PaymentID string        // the payment that won, for SUCCESSFULL
	DecidedAt time.Time
}

// BookingFilter selects bookings; empty UserID means everyone's.
type BookingFilter struct {
	UserID      string
	Limit, Skip int
}

// PaymentFilter selects payments; empty UserID means everyone's.
type PaymentFilter struct {
	UserID      string
	Limit, Skip int
}

// BookingStore keeps holds, bookings, outcomes and payments. Every decision two requests
// can race on is an insert into a unique key.
type BookingStore interface {
	// NewID returns a new document id (24 hex characters).
	NewID() string
	// InsertHolds inserts the holds (unordered) and returns the seats it won; a seat whose
	// key is taken is simply not in won.
	InsertHolds(ctx context.Context, holds []Hold) (won []string, err error)
	// ShowHolds lists the holds of a show.
	ShowHolds(ctx context.Context, showID string) ([]Hold, error)
	// ReleaseHolds deletes the booking's holds on the given seats (never another's).
	ReleaseHolds(ctx context.Context, showID, bookingID string, seats []string) error
	// MarkSold sets the Sold hint on the given holds (one write for many).
	MarkSold(ctx context.Context, holds []Hold) error

	CreateBooking(ctx context.Context, b *Booking) error
	// GetBooking reads a booking as stored (its Status may lag its outcome).
	GetBooking(ctx context.Context, id string) (*Booking, error)
	ListBookings(ctx context.Context, f BookingFilter) ([]Booking, error)
	// ProjectStatus copies a decided status onto bookings still stored IN_PROCESS (one write
	// for many).
	ProjectStatus(ctx context.Context, status BookingStatus, ids []string) error
	// ExpiringBetween lists up to limit bookings whose hold ends in [from, to), by that time.
	ExpiringBetween(ctx context.Context, from, to time.Time, limit int) ([]Booking, error)

	// Decide inserts o unless the booking already has an outcome; it returns the outcome in
	// force and whether o is it.
	Decide(ctx context.Context, o Outcome) (Outcome, bool, error)
	// Outcome returns the booking's outcome, nil if undecided.
	Outcome(ctx context.Context, bookingID string) (*Outcome, error)
	// Outcomes returns the outcomes of the given bookings, by booking id.
	Outcomes(ctx context.Context, bookingIDs []string) (map[string]Outcome, error)

	CreatePayment(ctx context.Context, p *Payment) error
	GetPayment(ctx context.Context, id string) (*Payment, error)
	ListPayments(ctx context.Context, f PaymentFilter) ([]Payment, error)
	// ProjectPayments copies a resolved status onto payments still stored PENDING (one write
	// for many).
	ProjectPayments(ctx context.Context, status PaymentStatus, reason string, ids []string) error
}

// BookingEvents observes the engine (metrics). Every method must be cheap and safe for
// concurrent use.
type BookingEvents interface {
	// Booking counts an outcome: created, conflict, paid, payment_failed, cancelled, expired.
	Booking(outcome string)
	// SeatConflicts counts seats lost to another booking while holding.
	SeatConflicts(n int)
}

type noEvents struct{}

func (noEvents) Booking(string)    {}
func (noEvents) SeatConflicts(int) {}

// BookingRequest is a customer's booking: a show named by theatre, movie and timing, and
// either a number of seats (the best free ones are picked) or the seats by label.
type BookingRequest struct {
	TheatreID string
	MovieID   string
	Timing    string
	NoOfSeats int
	Seats     []string
}

// PaymentRequest pays a booking.
type PaymentRequest struct {
	BookingID string
	Amount    float64
}

// SeatState is one seat on a seat map.
type SeatState string

// The seat states of a seat map.
const (
	SeatFree SeatState = "FREE"
	SeatHeld SeatState = "HELD"
	SeatSold SeatState = "SOLD"
)

// SeatMap is a show's seats by state.
type SeatMap struct {
	ShowID      string      `json:"showId"`
	NoOfSeats   int         `json:"noOfSeats"`
	SeatsPerRow int         `json:"seatsPerRow"`
	Free        []string    `json:"free"`
	Held        []string    `json:"held"`
	Sold        []string    `json:"sold"`
	Seats       []SeatEntry `json:"seats"`
	At          time.Time   `json:"at"`
}

// SeatEntry is one seat of a SeatMap.
type SeatEntry struct {
	Seat  string    `json:"seat"`
	State SeatState `json:"state"`
}
