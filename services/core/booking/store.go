package booking

import (
	"context"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

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
	InsertHolds(ctx context.Context, holds []core.Hold) (won []string, err error)
	// MissingHolds returns the seats of which the booking holds no hold (by exact id).
	MissingHolds(ctx context.Context, showID, bookingID string, seats []string) ([]string, error)
	// ShowHolds lists the holds of a show. It scans: tests and migration only.
	ShowHolds(ctx context.Context, showID string) ([]core.Hold, error)
	// ReleaseHolds deletes the booking's holds on the given seats (never another's).
	ReleaseHolds(ctx context.Context, showID, bookingID string, seats []string) error
	// MarkSold sets the Sold hint on the given holds.
	MarkSold(ctx context.Context, holds []core.Hold) error

	// ClaimSlots inserts the user's fair-use slots for the booking (unordered) and returns
	// those won. ReleaseSlots deletes the booking's slots (never another's).
	ClaimSlots(ctx context.Context, userID, bookingID string, slots []int) (won []int, err error)
	ReleaseSlots(ctx context.Context, userID, bookingID string, slots []int) error

	// AddIntent inserts an intent into the bucket of the expiry queue its ExpiresAt falls in
	// (an intent there already is success, and stays one); DeleteIntents deletes intents by id from the bucket of expiresAt. IntentBuckets lists the
	// buckets, earliest first; BucketIntents reads a whole bucket; DropIntentBucket deletes one
	// with everything in it. ForwardLegacyIntents moves up to limit intents written by earlier
	// versions (one queue, no buckets) into their buckets. ShowIntents lists a show's intents
	// (it scans the queue, which holds only bookings whose fate is not yet settled: for
	// deleting a show).
	AddIntent(ctx context.Context, in core.Intent) error
	DeleteIntents(ctx context.Context, expiresAt time.Time, ids []string) error
	IntentBuckets(ctx context.Context) ([]core.IntentBucket, error)
	BucketIntents(ctx context.Context, bucket string) ([]core.Intent, error)
	DropIntentBucket(ctx context.Context, bucket string) error
	ForwardLegacyIntents(ctx context.Context, limit int) (int, error)
	ShowIntents(ctx context.Context, showID string) ([]core.Intent, error)

	// AppendSeatLog inserts entry e; dup reports that its Seq is taken already.
	AppendSeatLog(ctx context.Context, e core.SeatLogEntry) (dup bool, err error)
	// SeatLog reads the entry seq of the show's log (nil when there is none yet).
	SeatLog(ctx context.Context, showID string, seq int64) (*core.SeatLogEntry, error)
	// SeatSnapshot reads the show's latest snapshot (nil when none); SaveSeatSnapshot
	// replaces it (any snapshot is valid: a later one only shortens the replay).
	SeatSnapshot(ctx context.Context, showID string) (*core.SeatSnapshot, error)
	SaveSeatSnapshot(ctx context.Context, s core.SeatSnapshot) error
	// DeleteSeatLog deletes the show's entries from..to (each by its exact id; missing ones are
	// no error). SeatLogCompaction reads the show's compaction record (zero but for ShowID when
	// there is none); SaveSeatLogCompaction replaces it. ClaimSeatLogSweep inserts a claim on
	// key (false: another holds it); DropSeatLogSweep deletes it. DBTime reads the database's
	// clock.
	DeleteSeatLog(ctx context.Context, showID string, from, to int64) error
	SeatLogCompaction(ctx context.Context, showID string) (core.SeatLogCompaction, error)
	SaveSeatLogCompaction(ctx context.Context, c core.SeatLogCompaction) error
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
	AllHolds(ctx context.Context) ([]core.Hold, error)
	OpenBookings(ctx context.Context, expiringAfter time.Time) ([]core.Booking, error)

	// CreateBooking stores b under its given id (a malformed id is errs.Invalid; a second
	// create of an id fails and keeps the first).
	CreateBooking(ctx context.Context, b *core.Booking) error
	// GetBooking reads a booking as stored (its Status may lag its outcome): errs.NotFound if
	// none, errs.Invalid for a malformed id.
	GetBooking(ctx context.Context, id string) (*core.Booking, error)
	// ListBookings lists bookings by a filtered, sorted find (a scan; Limit 0: all of them).
	ListBookings(ctx context.Context, f core.BookingFilter) ([]core.Booking, error)
	// PageBookings returns a page of bookings, newest first, and the cursor of the next page
	// ("" when there is none). It costs the same however many bookings are stored (once the
	// store's backfill is done); a page may stop short of Limit and still have a next cursor.
	// A cursor the store did not write is errs.Invalid.
	PageBookings(ctx context.Context, f core.BookingFilter) (page []core.Booking, next string, err error)
	// ProjectStatus copies a decided status onto the bookings.
	ProjectStatus(ctx context.Context, status core.BookingStatus, ids []string) error

	// Decide inserts o unless the booking already has an outcome; it returns the outcome in
	// force and whether o is it.
	Decide(ctx context.Context, o core.Outcome) (core.Outcome, bool, error)
	// Outcome returns the booking's outcome, nil if undecided.
	Outcome(ctx context.Context, bookingID string) (*core.Outcome, error)
	// Outcomes returns the outcomes of the given bookings, by booking id.
	Outcomes(ctx context.Context, bookingIDs []string) (map[string]core.Outcome, error)

	// CreatePayment and GetPayment are CreateBooking and GetBooking for payments.
	CreatePayment(ctx context.Context, p *core.Payment) error
	GetPayment(ctx context.Context, id string) (*core.Payment, error)
	// ListPayments lists payments by a filtered, sorted find (a scan); PagePayments returns a
	// page of them, as PageBookings.
	ListPayments(ctx context.Context, f core.PaymentFilter) ([]core.Payment, error)
	PagePayments(ctx context.Context, f core.PaymentFilter) (page []core.Payment, next string, err error)
	// ProjectPayments copies a resolved status onto payments.
	ProjectPayments(ctx context.Context, status core.PaymentStatus, reason string, ids []string) error
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
