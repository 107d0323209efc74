package core

import (
	"context"
	"strconv"
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
	// Slots are the fair-use slots the booking occupies while unpaid (see Slot); Rounds is
	// the number of intents it wrote. Both are the server's own bookkeeping.
	Slots  []int `json:"-"`
	Rounds int   `json:"-"`
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

// Intent is written before a booking claims anything (seats or fair-use slots) in a round:
// it names what the booking may come to hold, so that whatever it claimed is released when
// its hold ends, even if the process that claimed it dies before writing the booking. The
// intents are the expiry queue: the expirer meets each one once its hold has ended.
type Intent struct {
	ID        string // booking id and round: BookingID + ":" + round
	BookingID string
	ShowID    string
	UserID    string
	Seats     []string // seats the round tries to hold
	Slots     []int    // fair-use slots the round tries to claim
	ExpiresAt time.Time
}

// IntentBucket is a bucket of the expiry queue: the intents whose ExpiresAt is in
// [Start, End). Once End has passed, every intent in it is due.
type IntentBucket struct {
	Name       string
	Start, End time.Time
}

// IntentID names the intent of a booking's round.
func IntentID(bookingID string, round int) string { return bookingID + ":" + strconv.Itoa(round) }

// SeatOpKind says what a seat log operation records.
type SeatOpKind string

// The seat log operations.
const (
	SeatOpHeld  SeatOpKind = "h" // the booking won these seats' keys, until ExpiresAt
	SeatOpFreed SeatOpKind = "f" // the booking's holds on these seats were released
	SeatOpSold  SeatOpKind = "s" // the booking is paid: these seats are sold for good
)

// SeatOp is one fact of a show's seat log.
type SeatOp struct {
	Kind      SeatOpKind
	BookingID string
	Seats     []string
	ExpiresAt time.Time
}

// SeatLogEntry is one entry of a show's seat log: its sequence number (1, 2, ...) is a unique
// key, so two writers can never write the same entry.
type SeatLogEntry struct {
	ShowID string
	Seq    int64
	Ops    []SeatOp
}

// SnapSeat is one occupied seat of a seat snapshot.
type SnapSeat struct {
	Seat      string
	BookingID string
	ExpiresAt time.Time
	Sold      bool
}

// SeatSnapshot is the state of a show's seats after its seat log's first Seq entries: the
// sold seats (a sale is for good, so only the seat is kept: a full 5,000-seat show stays a few
// kilobytes) and the seats held.
type SeatSnapshot struct {
	ShowID string
	Seq    int64
	Sold   []string
	Seats  []SnapSeat // held, unsold
}

// SeatLogCompaction is how far a show's seat log is compacted: its entries up to Done are
// deleted, and those up to Mark, which all existed at MarkedAt (by the database's clock), may be
// deleted once the retention has passed since (see Bookings.CompactSeatLogs).
type SeatLogCompaction struct {
	ShowID   string
	Done     int64
	Mark     int64
	MarkedAt time.Time
}

// BookingFilter selects bookings; empty UserID means everyone's. A page is Limit bookings
// after the first Skip, from the cursor Before: "" for the first page, else the next cursor of
// the page before (opaque; the store writes it).
type BookingFilter struct {
	UserID      string
	Limit, Skip int
	Before      string
}

// PaymentFilter selects payments, as BookingFilter.
type PaymentFilter struct {
	UserID      string
	Limit, Skip int
	Before      string
}

// ListPage asks for a page of a list: Limit items after the first Skip, from the cursor Before
// (the Next of an earlier page; "" for the first).
type ListPage struct {
	Limit, Skip int
	Before      string
}

type backgroundKey struct{}

// AsBackground marks ctx as the engine's background work (the expirer): a store keeps its
// writes apart from those of requests, so that a request never waits behind a batch of them.
func AsBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground reports whether ctx was marked by AsBackground.
func IsBackground(ctx context.Context) bool {
	v, _ := ctx.Value(backgroundKey{}).(bool)
	return v
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
