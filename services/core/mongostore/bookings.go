package mongostore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// Collections of the booking engine.
const (
	HoldsCollection     = "seat_holds"
	SlotsCollection     = "user_slots"
	IntentsCollection   = "booking_intents"
	SeatLogCollection   = "seat_log"
	SeatSnapsCollection = "seat_snapshots"
	DeletionsCollection = "show_deletions"
	BookingsCollection  = "bookings"
	OutcomesCollection  = "booking_outcomes"
	PaymentsCollection  = "payments"
)

// SeatLogCompactionsCollection holds a compaction record per show (_id: the show id) and the
// claims on the sweeps under way (_id: show id, mark and lease window).
const SeatLogCompactionsCollection = "seat_log_compactions"

// Bookings is a booking.BookingStore on MongoDB.
//
// A seat hold is a document whose unique "seatKey" is (show, seat): the index, not a read,
// keeps two bookings off one seat. Its _id adds the booking, so a release deletes only that
// booking's hold, never a later one on the same seat. A fair-use slot is the same with
// (user, slot). A booking's outcome is a document whose _id is the booking id: the first insert
// decides. Seat log entries are keyed (show, sequence number). Booking and payment documents
// carry a projection of the outcome for readers of the raw collections.
//
// Everything on the booking path reads, updates and deletes by exact _id (one statement per
// document), or reads the front of the intents queue with an empty filter: the embedded
// database serves nothing else without scanning its whole collection, so the cost of a
// request stays the same however many bookings are stored.
//
// Inserts of concurrent requests are coalesced per collection (see mongox.Inserter): each hold,
// outcome and booking is still decided by its own key.
type Bookings struct {
	db        *mongo.Database
	holds     *mongo.Collection
	slots     *mongo.Collection
	intents   *mongo.Collection
	seatLog   *mongo.Collection
	snaps     *mongo.Collection
	compacts  *mongo.Collection // seat log compaction records and sweep claims
	deletions *mongo.Collection
	bookings  *mongo.Collection
	outcomes  *mongo.Collection
	payments  *mongo.Collection
	fg, bg    *coalescers // requests' writes, and the background work's (see core.AsBackground)
	lists     *lists      // the index entries of the booking and payment lists (see lists.go)
	now       func() time.Time

	bucketWidth time.Duration // of the expiry queue's buckets
}

// coalescers are the insert and delete queues of the engine's collections. Requests and
// background work (the expirer) have a set each, so that a request's write never queues behind
// a background batch of hundreds: the two go out side by side.
type coalescers struct {
	ins struct{ holds, slots, seatLog, bookings, outcomes, payments *mongox.Inserter }
	del struct{ holds, slots, legacyIntents *deleter }

	bucketsMu sync.Mutex
	buckets   map[string]*bucketQueues // the expiry queue's buckets, by collection name
}

type bucketQueues struct {
	ins *mongox.Inserter
	del *deleter
}

// maxBucketQueues bounds the bucket queues kept; a full map starts over (the queues of a bucket
// are only a place to coalesce: a new one is as good).
const maxBucketQueues = 1000

// bucket returns the queues of the named bucket of the expiry queue.
func (q *coalescers) bucket(db *mongo.Database, name string) *bucketQueues {
	q.bucketsMu.Lock()
	defer q.bucketsMu.Unlock()
	b := q.buckets[name]
	if b == nil {
		if len(q.buckets) >= maxBucketQueues {
			clear(q.buckets)
		}
		c := db.Collection(name)
		b = &bucketQueues{ins: mongox.NewInserter(c), del: newDeleter(c)}
		q.buckets[name] = b
	}
	return b
}

func (q *coalescers) forgetBucket(name string) {
	q.bucketsMu.Lock()
	delete(q.buckets, name)
	q.bucketsMu.Unlock()
}

func (s *Bookings) newCoalescers() *coalescers {
	q := &coalescers{buckets: map[string]*bucketQueues{}}
	q.ins.holds, q.ins.slots = mongox.NewInserter(s.holds), mongox.NewInserter(s.slots)
	q.ins.seatLog, q.ins.bookings = mongox.NewInserter(s.seatLog), mongox.NewInserter(s.bookings)
	q.ins.outcomes, q.ins.payments = mongox.NewInserter(s.outcomes), mongox.NewInserter(s.payments)
	q.del.holds, q.del.slots, q.del.legacyIntents = newDeleter(s.holds), newDeleter(s.slots), newDeleter(s.intents)
	return q
}

// q returns the queues for a write made under ctx.
func (s *Bookings) q(ctx context.Context) *coalescers {
	if core.IsBackground(ctx) {
		return s.bg
	}
	return s.fg
}

var _ booking.BookingStore = (*Bookings)(nil)

// NewBookings returns the booking store on db. Call EnsureIndexes once at start.
func NewBookings(db *mongo.Database) *Bookings {
	s := &Bookings{db: db, holds: db.Collection(HoldsCollection), slots: db.Collection(SlotsCollection),
		intents: db.Collection(IntentsCollection), seatLog: db.Collection(SeatLogCollection),
		snaps: db.Collection(SeatSnapsCollection), deletions: db.Collection(DeletionsCollection),
		bookings: db.Collection(BookingsCollection), outcomes: db.Collection(OutcomesCollection),
		payments: db.Collection(PaymentsCollection), now: time.Now, bucketWidth: DefaultIntentBucketWidth}
	s.compacts = db.Collection(SeatLogCompactionsCollection)
	s.fg, s.bg = s.newCoalescers(), s.newCoalescers()
	s.lists = newLists(db)
	return s
}

// EnsureIndexes creates the unique seat and slot keys and the lookup indexes (one per call:
// the dev database fails creating several at once).
func (s *Bookings) EnsureIndexes(ctx context.Context) error {
	steps := []struct {
		c *mongo.Collection
		m mongo.IndexModel
	}{
		{s.holds, mongo.IndexModel{Keys: bson.D{{Key: "seatKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("seat_unique")}},
		{s.holds, mongo.IndexModel{Keys: bson.D{{Key: "showId", Value: 1}}, Options: options.Index().SetName("show")}},
		{s.slots, mongo.IndexModel{Keys: bson.D{{Key: "slotKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("slot_unique")}},
		{s.intents, mongo.IndexModel{Keys: bson.D{{Key: "showId", Value: 1}}, Options: options.Index().SetName("show")}},
		{s.bookings, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: -1}}, Options: options.Index().SetName("user_created")}},
		{s.payments, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: -1}}, Options: options.Index().SetName("user_created")}},
	}
	for _, st := range steps {
		if err := mongox.EnsureIndexes(ctx, st.c, st.m); err != nil {
			return err
		}
	}
	return s.lists.ensureIndexes(ctx)
}

// NewID returns a new ObjectId in hex.
func (s *Bookings) NewID() string { return bson.NewObjectID().Hex() }

// The expiry queue is kept in buckets: a collection per bucket width of expiry times,
// named after its span. A bucket is read whole once its span has passed (every intent in it is
// then due), and dropped as one when everything it names is settled: a storm of expiries costs
// a read and a drop per bucket, where deleting each intent would cost a write each (and, on
// the embedded database, a transaction each). IntentsCollection is the single queue of earlier
// versions: ForwardLegacyIntents moves what they write there into the buckets.

type bookingDoc struct {
	ID        bson.ObjectID `bson:"_id"`
	UserID    string        `bson:"userId"`
	TheatreID string        `bson:"theatreId"`
	MovieID   string        `bson:"movieId"`
	ShowID    string        `bson:"showId"`
	Timing    string        `bson:"timing"`
	NoOfSeats int           `bson:"noOfSeats"`
	Seats     []string      `bson:"seats"`
	TotalCost float64       `bson:"totalCost"`
	Status    string        `bson:"status"`
	ExpiresAt time.Time     `bson:"expiresAt"`
	PaymentID string        `bson:"paymentId,omitempty"`
	CreatedAt time.Time     `bson:"createdAt"`
	UpdatedAt time.Time     `bson:"updatedAt"`
	Slots     []int         `bson:"slots,omitempty"`
	Rounds    int           `bson:"rounds,omitempty"`
	// Listed: the booking's list entries were written before it (see lists.go). Earlier
	// versions wrote none: the backfill indexes the bookings without it.
	Listed bool `bson:"lx,omitempty"`
}

func (d *bookingDoc) booking() core.Booking {
	seats := d.Seats
	if seats == nil {
		seats = []string{}
	}
	return core.Booking{ID: d.ID.Hex(), UserID: d.UserID, TheatreID: d.TheatreID, MovieID: d.MovieID, ShowID: d.ShowID,
		Timing: d.Timing, NoOfSeats: d.NoOfSeats, Seats: seats, TotalCost: d.TotalCost, Status: core.BookingStatus(d.Status),
		ExpiresAt: d.ExpiresAt.UTC(), PaymentID: d.PaymentID, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
		Slots: d.Slots, Rounds: d.Rounds}
}

// CreateBooking inserts b with its given id, after its entries in its customer's list and in
// the list of every booking: a booking never exists unlisted. When the entries fail, the
// booking is not inserted (entries already in name nothing, and readers skip them).
func (s *Bookings) CreateBooking(ctx context.Context, b *core.Booking) error {
	oid, err := parseID(b.ID)
	if err != nil {
		return err
	}
	if err := s.appendEntries(ctx, userBookingsStream(b.UserID), allBookingsStream, b.ID, b.CreatedAt, "booking"); err != nil {
		return err
	}
	d := bookingDoc{ID: oid, UserID: b.UserID, TheatreID: b.TheatreID, MovieID: b.MovieID, ShowID: b.ShowID,
		Timing: b.Timing, NoOfSeats: b.NoOfSeats, Seats: b.Seats, TotalCost: b.TotalCost, Status: string(b.Status),
		ExpiresAt: b.ExpiresAt, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, Slots: b.Slots, Rounds: b.Rounds, Listed: true}
	dup, err := s.q(ctx).ins.bookings.Insert(ctx, d)
	if err == nil && dup[0] {
		err = errors.New("duplicate booking id")
	}
	if err != nil {
		return dbError(err, "could not create the booking")
	}
	return nil
}

// GetBooking reads a booking by id.
func (s *Bookings) GetBooking(ctx context.Context, id string) (*core.Booking, error) {
	oid, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var d bookingDoc
	err = s.bookings.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "booking not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the booking")
	}
	b := d.booking()
	return &b, nil
}

func pageOptions(limit, skip int) *options.FindOptionsBuilder {
	o := options.Find().SetSort(bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		o.SetLimit(int64(limit))
	}
	if skip > 0 {
		o.SetSkip(int64(skip))
	}
	return o
}

// ListBookings lists bookings newest first by a filtered, sorted find with skip: a scan of
// every booking on the embedded database. Limit 0 lists them all. PageBookings answers from it
// until the backfill is done; tests take it as the truth.
func (s *Bookings) ListBookings(ctx context.Context, f core.BookingFilter) ([]core.Booking, error) {
	filter := bson.M{}
	if f.UserID != "" {
		filter["userId"] = f.UserID
	}
	return findAll(ctx, s.bookings, filter, pageOptions(f.Limit, f.Skip), "list the bookings", (*bookingDoc).booking)
}

// ProjectStatus sets a decided status on the bookings (by exact _id: a fate never changes,
// so no guard is needed).
func (s *Bookings) ProjectStatus(ctx context.Context, status core.BookingStatus, ids []string) error {
	oids, err := parseIDs(ids)
	if err != nil {
		return err
	}
	if err := setByIDs(ctx, s.bookings, oids, bson.M{"status": string(status), "updatedAt": s.now().UTC().Truncate(time.Millisecond)}); err != nil {
		return dbError(err, "could not update the bookings")
	}
	return nil
}

func parseIDs(ids []string) ([]any, error) {
	oids := make([]any, len(ids))
	for i, id := range ids {
		oid, err := parseID(id)
		if err != nil {
			return nil, err
		}
		oids[i] = oid
	}
	return oids, nil
}

// readConcurrency bounds the reads by exact _id one call makes at once.
const readConcurrency = 8

// eachLimited calls f for 0..n-1, at most readConcurrency at once; it returns the first error.
func eachLimited(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	if n == 1 {
		return f(ctx, 0)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, readConcurrency)
	)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// existByIDs reports, for each id, whether a document with that _id exists (a read by exact
// _id each).
func existByIDs(ctx context.Context, c *mongo.Collection, ids []any) ([]bool, error) {
	found := make([]bool, len(ids))
	err := eachLimited(ctx, len(ids), func(ctx context.Context, i int) error {
		err := c.FindOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		found[i] = err == nil
		return err
	})
	return found, err
}
