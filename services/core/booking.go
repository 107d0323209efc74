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

// BookingStore keeps holds, bookings, outcomes and payments. Every decision two requests
// can race on is an insert into a unique key. Every method on the booking path costs the
// same however much is stored: it reads and writes documents by their exact ids (the one
// access the embedded database serves from an index), or reads the front of a queue.
type BookingStore interface {
	// NewID returns a new document id (24 hex characters).
	NewID() string
	// InsertHolds inserts the holds (unordered) and returns the seats it won; a seat whose
	// key is taken is simply not in won. On error nothing can be assumed: the store tries to
	// delete what may have landed, and the booking's intent covers what remains.
	InsertHolds(ctx context.Context, holds []Hold) (won []string, err error)
	// MissingHolds returns the seats of which the booking holds no hold (by exact id).
	MissingHolds(ctx context.Context, showID, bookingID string, seats []string) ([]string, error)
	// ShowHolds lists the holds of a show. It scans: tests and migration only.
	ShowHolds(ctx context.Context, showID string) ([]Hold, error)
	// ReleaseHolds deletes the booking's holds on the given seats (never another's).
	ReleaseHolds(ctx context.Context, showID, bookingID string, seats []string) error
	// MarkSold sets the Sold hint on the given holds.
	MarkSold(ctx context.Context, holds []Hold) error

	// ClaimSlots inserts the user's fair-use slots for the booking (unordered) and returns
	// those won. ReleaseSlots deletes the booking's slots (never another's).
	ClaimSlots(ctx context.Context, userID, bookingID string, slots []int) (won []int, err error)
	ReleaseSlots(ctx context.Context, userID, bookingID string, slots []int) error

	// AddIntent inserts an intent into the bucket of the expiry queue its ExpiresAt falls in;
	// DeleteIntents deletes intents by id from the bucket of expiresAt. IntentBuckets lists the
	// buckets, earliest first; BucketIntents reads a whole bucket; DropIntentBucket deletes one
	// with everything in it. ForwardLegacyIntents moves up to limit intents written by earlier
	// versions (one queue, no buckets) into their buckets. ShowIntents lists a show's intents
	// (it scans the queue, which holds only bookings whose fate is not yet settled: for
	// deleting a show).
	AddIntent(ctx context.Context, in Intent) error
	DeleteIntents(ctx context.Context, expiresAt time.Time, ids []string) error
	IntentBuckets(ctx context.Context) ([]IntentBucket, error)
	BucketIntents(ctx context.Context, bucket string) ([]Intent, error)
	DropIntentBucket(ctx context.Context, bucket string) error
	ForwardLegacyIntents(ctx context.Context, limit int) (int, error)
	ShowIntents(ctx context.Context, showID string) ([]Intent, error)

	// AppendSeatLog inserts entry e; dup reports that its Seq is taken already.
	AppendSeatLog(ctx context.Context, e SeatLogEntry) (dup bool, err error)
	// SeatLog reads the entry seq of the show's log (nil when there is none yet).
	SeatLog(ctx context.Context, showID string, seq int64) (*SeatLogEntry, error)
	// SeatSnapshot reads the show's latest snapshot (nil when none); SaveSeatSnapshot
	// replaces it (any snapshot is valid: a later one only shortens the replay).
	SeatSnapshot(ctx context.Context, showID string) (*SeatSnapshot, error)
	SaveSeatSnapshot(ctx context.Context, s SeatSnapshot) error
	// DeleteSeatLog deletes the show's entries from..to (each by its exact id; missing ones are
	// no error). SeatLogCompaction reads the show's compaction record (zero but for ShowID when
	// there is none); SaveSeatLogCompaction replaces it. ClaimSeatLogSweep inserts a claim on
	// key (false: another holds it); DropSeatLogSweep deletes it. DBTime reads the database's
	// clock.
	DeleteSeatLog(ctx context.Context, showID string, from, to int64) error
	SeatLogCompaction(ctx context.Context, showID string) (SeatLogCompaction, error)
	SaveSeatLogCompaction(ctx context.Context, c SeatLogCompaction) error
	ClaimSeatLogSweep(ctx context.Context, key string) (bool, error)
	DropSeatLogSweep(ctx context.Context, key string) error
	DBTime(ctx context.Context) (time.Time, error)

	// MarkShowDeleting inserts the show's deletion marker (false: one exists already);
	// ShowDeleting reads it (when it was inserted, whether there is one); UnmarkShowDeleting
	// deletes it (a refused deletion).
	MarkShowDeleting(ctx context.Context, showID string) (bool, error)
	ShowDeleting(ctx context.Context, showID string) (time.Time, bool, error)
	UnmarkShowDeleting(ctx context.Context, showID string) error

	// Migrated reports whether the store has been prepared for seat logs and intents
	// (SetMigrated records it). AllHolds and OpenBookings scan: the migration alone uses them.
	Migrated(ctx context.Context) (bool, error)
	SetMigrated(ctx context.Context) error
	AllHolds(ctx context.Context) ([]Hold, error)
	OpenBookings(ctx context.Context, expiringAfter time.Time) ([]Booking, error)

	CreateBooking(ctx context.Context, b *Booking) error
	// GetBooking reads a booking as stored (its Status may lag its outcome).
	GetBooking(ctx context.Context, id string) (*Booking, error)
	// ListBookings lists bookings by a filtered, sorted find (a scan; Limit 0: all of them).
	ListBookings(ctx context.Context, f BookingFilter) ([]Booking, error)
	// PageBookings returns a page of bookings, newest first, and the cursor of the next page
	// ("" when there is none). It costs the same however many bookings are stored (once the
	// store's backfill is done); a page may stop short of Limit and still have a next cursor.
	PageBookings(ctx context.Context, f BookingFilter) (page []Booking, next string, err error)
	// ProjectStatus copies a decided status onto the bookings.
	ProjectStatus(ctx context.Context, status BookingStatus, ids []string) error

	// Decide inserts o unless the booking already has an outcome; it returns the outcome in
	// force and whether o is it.
	Decide(ctx context.Context, o Outcome) (Outcome, bool, error)
	// Outcome returns the booking's outcome, nil if undecided.
	Outcome(ctx context.Context, bookingID string) (*Outcome, error)
	// Outcomes returns the outcomes of the given bookings, by booking id.
	Outcomes(ctx context.Context, bookingIDs []string) (map[string]Outcome, error)

	CreatePayment(ctx context.Context, p *Payment) error
	GetPayment(ctx context.Context, id string) (*Payment, error)
	// ListPayments lists payments by a filtered, sorted find (a scan); PagePayments returns a
	// page of them, as PageBookings.
	ListPayments(ctx context.Context, f PaymentFilter) ([]Payment, error)
	PagePayments(ctx context.Context, f PaymentFilter) (page []Payment, next string, err error)
	// ProjectPayments copies a resolved status onto payments.
	ProjectPayments(ctx context.Context, status PaymentStatus, reason string, ids []string) error
}

// BookingEvents observes the engine (metrics). Every method must be cheap and safe for
// concurrent use.
type BookingEvents interface {
	// Booking counts an outcome: created, conflict, paid, payment_failed, cancelled, expired.
	Booking(outcome string)
	// SeatConflicts counts seats lost to another booking while holding.
	SeatConflicts(n int)
	// SeatLogDropped counts seat log operations that could not be written (the views of other
	// processes then learn those seats from the unique keys instead).
	SeatLogDropped(n int)
}

type noEvents struct{}

func (noEvents) Booking(string)     {}
func (noEvents) SeatConflicts(int)  {}
func (noEvents) SeatLogDropped(int) {}

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
