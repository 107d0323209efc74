package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

type holdDoc struct {
	ID        string    `bson:"_id"`
	SeatKey   string    `bson:"seatKey"`
	ShowID    string    `bson:"showId"`
	Seat      string    `bson:"seat"`
	BookingID string    `bson:"bookingId"`
	ExpiresAt time.Time `bson:"expiresAt"`
	Sold      bool      `bson:"sold"`
	CreatedAt time.Time `bson:"createdAt"`
}

func holdID(showID, seat, bookingID string) string { return showID + ":" + seat + ":" + bookingID }

// InsertHolds inserts the holds unordered; seats whose key is taken are not won.
func (s *Bookings) InsertHolds(ctx context.Context, holds []core.Hold) ([]string, error) {
	if len(holds) == 0 {
		return nil, nil
	}
	now := s.now().UTC()
	docs := make([]any, len(holds))
	ids := make([]any, len(holds))
	for i, h := range holds {
		ids[i] = holdID(h.ShowID, h.Seat, h.BookingID)
		docs[i] = holdDoc{ID: ids[i].(string), SeatKey: h.ShowID + ":" + h.Seat, ShowID: h.ShowID,
			Seat: h.Seat, BookingID: h.BookingID, ExpiresAt: h.ExpiresAt, Sold: h.Sold, CreatedAt: now}
	}
	lost, err := s.q(ctx).ins.holds.Insert(ctx, docs...)
	if err != nil {
		// Which holds landed is unknown: report none won and release them all (their ids name
		// this booking, so nobody else's hold can be deleted). If the delete fails too, the
		// booking's intent still names them: the expirer releases them.
		_ = s.q(ctx).del.holds.delete(context.WithoutCancel(ctx), ids...)
		return nil, dbError(err, "could not hold the seats")
	}
	won := make([]string, 0, len(holds))
	for i, h := range holds {
		if !lost[i] {
			won = append(won, h.Seat)
		}
	}
	return won, nil
}

// MissingHolds reads the booking's holds on seats by their exact ids and returns the seats
// without one.
func (s *Bookings) MissingHolds(ctx context.Context, showID, bookingID string, seats []string) ([]string, error) {
	ids := make([]any, len(seats))
	for i, seat := range seats {
		ids[i] = holdID(showID, seat, bookingID)
	}
	found, err := existByIDs(ctx, s.holds, ids)
	if err != nil {
		return nil, dbError(err, "could not read the seats")
	}
	var missing []string
	for i, seat := range seats {
		if !found[i] {
			missing = append(missing, seat)
		}
	}
	return missing, nil
}

// ShowHolds lists the show's holds. It scans on the embedded database: tests only.
func (s *Bookings) ShowHolds(ctx context.Context, showID string) ([]core.Hold, error) {
	return findAll(ctx, s.holds, bson.M{"showId": showID}, nil, "read the seats", func(d *holdDoc) core.Hold {
		return core.Hold{ShowID: d.ShowID, Seat: d.Seat, BookingID: d.BookingID, ExpiresAt: d.ExpiresAt, Sold: d.Sold}
	})
}

func holdIDs(showID, bookingID string, seats []string) []any {
	ids := make([]any, len(seats))
	for i, seat := range seats {
		ids[i] = holdID(showID, seat, bookingID)
	}
	return ids
}

// ReleaseHolds deletes the booking's holds on seats.
func (s *Bookings) ReleaseHolds(ctx context.Context, showID, bookingID string, seats []string) error {
	if err := s.q(ctx).del.holds.delete(ctx, holdIDs(showID, bookingID, seats)...); err != nil {
		return dbError(err, "could not release the seats")
	}
	return nil
}

// MarkSold sets the sold hint on the holds.
func (s *Bookings) MarkSold(ctx context.Context, holds []core.Hold) error {
	ids := make([]any, len(holds))
	for i, h := range holds {
		ids[i] = holdID(h.ShowID, h.Seat, h.BookingID)
	}
	if err := setByIDs(ctx, s.holds, ids, bson.M{"sold": true}); err != nil {
		return dbError(err, "could not mark the seats sold")
	}
	return nil
}

type slotDoc struct {
	ID        string    `bson:"_id"`
	SlotKey   string    `bson:"slotKey"`
	UserID    string    `bson:"userId"`
	Slot      int       `bson:"slot"`
	BookingID string    `bson:"bookingId"`
	CreatedAt time.Time `bson:"createdAt"`
}

func slotID(userID string, slot int, bookingID string) string {
	return userID + ":" + strconv.Itoa(slot) + ":" + bookingID
}

func slotIDs(userID, bookingID string, slots []int) []any {
	ids := make([]any, len(slots))
	for i, k := range slots {
		ids[i] = slotID(userID, k, bookingID)
	}
	return ids
}

// ClaimSlots inserts the booking's fair-use slots unordered; slots taken are not won.
func (s *Bookings) ClaimSlots(ctx context.Context, userID, bookingID string, slots []int) ([]int, error) {
	if len(slots) == 0 {
		return nil, nil
	}
	now := s.now().UTC()
	docs := make([]any, len(slots))
	for i, k := range slots {
		docs[i] = slotDoc{ID: slotID(userID, k, bookingID), SlotKey: userID + ":" + strconv.Itoa(k), UserID: userID,
			Slot: k, BookingID: bookingID, CreatedAt: now}
	}
	lost, err := s.q(ctx).ins.slots.Insert(ctx, docs...)
	if err != nil {
		_ = s.q(ctx).del.slots.delete(context.WithoutCancel(ctx), slotIDs(userID, bookingID, slots)...)
		return nil, dbError(err, "could not count the open seats")
	}
	won := make([]int, 0, len(slots))
	for i, k := range slots {
		if !lost[i] {
			won = append(won, k)
		}
	}
	return won, nil
}

// ReleaseSlots deletes the booking's slots.
func (s *Bookings) ReleaseSlots(ctx context.Context, userID, bookingID string, slots []int) error {
	if err := s.q(ctx).del.slots.delete(ctx, slotIDs(userID, bookingID, slots)...); err != nil {
		return dbError(err, "could not release the open seats")
	}
	return nil
}

type intentDoc struct {
	ID        string    `bson:"_id"`
	BookingID string    `bson:"bookingId"`
	ShowID    string    `bson:"showId"`
	UserID    string    `bson:"userId"`
	Seats     []string  `bson:"seats"`
	Slots     []int     `bson:"slots"`
	ExpiresAt time.Time `bson:"expiresAt"`
	CreatedAt time.Time `bson:"createdAt"`
}

func (d *intentDoc) intent() core.Intent {
	return core.Intent{ID: d.ID, BookingID: d.BookingID, ShowID: d.ShowID, UserID: d.UserID, Seats: d.Seats,
		Slots: d.Slots, ExpiresAt: d.ExpiresAt.UTC()}
}

// The expiry queue is kept in buckets: a collection per bucket width of expiry times,
// named after its span. A bucket is read whole once its span has passed (every intent in it is
// then due), and dropped as one when everything it names is settled: a storm of expiries costs
// a read and a drop per bucket, where deleting each intent would cost a write each (and, on
// the embedded database, a transaction each). IntentsCollection is the single queue of earlier
// versions: ForwardLegacyIntents moves what they write there into the buckets.

// DefaultIntentBucketWidth is the span of expiry times one bucket of the expiry queue holds,
// unless SetIntentBucketWidth says otherwise.
const DefaultIntentBucketWidth = 10 * time.Second

// IntentBucketWidthFor is the bucket width that suits a hold TTL: a sixtieth of it, from 1 s
// to 10 s. The expirer meets a bucket once its span has passed, so a hold's slots come back up
// to a width after it ends (its seats count as free at once), and a TTL's worth of bookings
// keeps about sixty buckets.
func IntentBucketWidthFor(ttl time.Duration) time.Duration {
	return min(max(ttl/60, time.Second), DefaultIntentBucketWidth).Truncate(time.Second)
}

// SetIntentBucketWidth sets the span of the buckets this store writes (whole seconds, at least
// one; every replica should use the same, else a paid booking's intent written by one is left
// for the expirer to meet instead of deleted by another). It returns s.
func (s *Bookings) SetIntentBucketWidth(w time.Duration) *Bookings {
	s.bucketWidth = max(w.Truncate(time.Second), time.Second)
	return s
}

// intentBucketPrefix starts the name of every bucket of the expiry queue.
const intentBucketPrefix = IntentsCollection + "_"

// IntentBucketName names the bucket holding intents that expire at t.
func (s *Bookings) IntentBucketName(t time.Time) string {
	start := t.UTC().Truncate(s.bucketWidth)
	return fmt.Sprintf("%s%d_%d", intentBucketPrefix, start.Unix(), start.Add(s.bucketWidth).Unix())
}

// parseIntentBucket reads a bucket's span from its name.
func parseIntentBucket(name string) (core.IntentBucket, bool) {
	rest, ok := strings.CutPrefix(name, intentBucketPrefix)
	if !ok {
		return core.IntentBucket{}, false
	}
	a, b, ok := strings.Cut(rest, "_")
	if !ok {
		return core.IntentBucket{}, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end <= start {
		return core.IntentBucket{}, false
	}
	return core.IntentBucket{Name: name, Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC()}, true
}

// AddIntent inserts the intent into its bucket (an intent already there is the same one:
// success).
func (s *Bookings) AddIntent(ctx context.Context, in core.Intent) error {
	d := intentDoc{ID: in.ID, BookingID: in.BookingID, ShowID: in.ShowID, UserID: in.UserID, Seats: in.Seats,
		Slots: in.Slots, ExpiresAt: in.ExpiresAt, CreatedAt: s.now().UTC()}
	if _, err := s.q(ctx).bucket(s.db, s.IntentBucketName(in.ExpiresAt)).ins.Insert(ctx, d); err != nil {
		return dbError(err, "could not record the booking")
	}
	return nil
}

// DeleteIntents deletes intents by id from the bucket of expiresAt (every intent of a booking
// expires with the booking).
func (s *Bookings) DeleteIntents(ctx context.Context, expiresAt time.Time, ids []string) error {
	anyIDs := make([]any, len(ids))
	for i, id := range ids {
		anyIDs[i] = id
	}
	if err := s.q(ctx).bucket(s.db, s.IntentBucketName(expiresAt)).del.delete(ctx, anyIDs...); err != nil {
		return dbError(err, "could not clear the expiry queue")
	}
	return nil
}

// IntentBuckets lists the buckets of the expiry queue, earliest first (the database's list of
// collection names: no document is read).
func (s *Bookings) IntentBuckets(ctx context.Context) ([]core.IntentBucket, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, dbError(err, "could not read the expiry queue")
	}
	var out []core.IntentBucket
	for _, n := range names {
		if b, ok := parseIntentBucket(n); ok {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(x, y core.IntentBucket) int { return x.Start.Compare(y.Start) })
	return out, nil
}

// BucketIntents reads every intent of a bucket.
func (s *Bookings) BucketIntents(ctx context.Context, bucket string) ([]core.Intent, error) {
	return findAll(ctx, s.db.Collection(bucket), bson.D{}, nil, "read the expiry queue", (*intentDoc).intent)
}

// DropIntentBucket drops a bucket (one that is gone already is dropped).
func (s *Bookings) DropIntentBucket(ctx context.Context, bucket string) error {
	if _, ok := parseIntentBucket(bucket); !ok {
		return errs.E(errs.Internal, "%q is not a bucket of the expiry queue", bucket)
	}
	if err := s.db.Collection(bucket).Drop(ctx); err != nil {
		return dbError(err, "could not clear the expiry queue")
	}
	s.fg.forgetBucket(bucket)
	s.bg.forgetBucket(bucket)
	return nil
}

// ForwardLegacyIntents moves up to limit intents from the queue of earlier versions into
// their buckets, and returns how many it moved: a replica of an earlier version writes its
// intents there during a rolling upgrade. When that queue is empty it costs one read of
// nothing.
func (s *Bookings) ForwardLegacyIntents(ctx context.Context, limit int) (int, error) {
	ins, err := findAll(ctx, s.intents, bson.D{}, options.Find().SetLimit(int64(limit)), "read the expiry queue", (*intentDoc).intent)
	if err != nil || len(ins) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	errsOf := make([]error, len(ins))
	for i, in := range ins {
		wg.Go(func() { errsOf[i] = s.AddIntent(ctx, in) })
	}
	wg.Wait()
	var moved []any
	for i, in := range ins {
		if errsOf[i] == nil {
			moved = append(moved, in.ID)
		}
	}
	if len(moved) > 0 {
		if err := s.q(ctx).del.legacyIntents.delete(ctx, moved...); err != nil {
			return 0, dbError(err, "could not clear the expiry queue")
		}
	}
	return len(moved), errors.Join(errsOf...)
}

// ShowIntents lists the show's intents: a scan of every bucket (and of the queue of earlier
// versions), which hold only bookings whose fate is not settled yet. Deleting a show alone
// uses it.
func (s *Bookings) ShowIntents(ctx context.Context, showID string) ([]core.Intent, error) {
	buckets, err := s.IntentBuckets(ctx)
	if err != nil {
		return nil, err
	}
	colls := []*mongo.Collection{s.intents}
	for _, b := range buckets {
		colls = append(colls, s.db.Collection(b.Name))
	}
	var out []core.Intent
	for _, c := range colls {
		got, err := findAll(ctx, c, bson.M{"showId": showID}, nil, "read the show's bookings", (*intentDoc).intent)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

type seatOpDoc struct {
	Kind      string    `bson:"k"`
	BookingID string    `bson:"b"`
	Seats     []string  `bson:"s"`
	ExpiresAt time.Time `bson:"e,omitempty"`
}

type seatLogDoc struct {
	ID     string      `bson:"_id"`
	ShowID string      `bson:"showId"`
	Seq    int64       `bson:"seq"`
	Ops    []seatOpDoc `bson:"ops"`
	At     time.Time   `bson:"at"`
}

func seatLogID(showID string, seq int64) string { return fmt.Sprintf("%s:%012d", showID, seq) }

// AppendSeatLog inserts the entry; a taken sequence number is dup.
func (s *Bookings) AppendSeatLog(ctx context.Context, e core.SeatLogEntry) (bool, error) {
	d := seatLogDoc{ID: seatLogID(e.ShowID, e.Seq), ShowID: e.ShowID, Seq: e.Seq, At: s.now().UTC(), Ops: make([]seatOpDoc, len(e.Ops))}
	for i, op := range e.Ops {
		d.Ops[i] = seatOpDoc{Kind: string(op.Kind), BookingID: op.BookingID, Seats: op.Seats, ExpiresAt: op.ExpiresAt}
	}
	dup, err := s.q(ctx).ins.seatLog.Insert(ctx, d)
	if err != nil {
		return false, dbError(err, "could not record the seats")
	}
	return dup[0], nil
}

// SeatLog reads one entry of the show's seat log.
func (s *Bookings) SeatLog(ctx context.Context, showID string, seq int64) (*core.SeatLogEntry, error) {
	var d seatLogDoc
	err := s.seatLog.FindOne(ctx, bson.D{{Key: "_id", Value: seatLogID(showID, seq)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the seats")
	}
	e := &core.SeatLogEntry{ShowID: d.ShowID, Seq: d.Seq, Ops: make([]core.SeatOp, len(d.Ops))}
	for i, op := range d.Ops {
		e.Ops[i] = core.SeatOp{Kind: core.SeatOpKind(op.Kind), BookingID: op.BookingID, Seats: op.Seats, ExpiresAt: op.ExpiresAt.UTC()}
	}
	return e, nil
}

type snapSeatDoc struct {
	Seat      string    `bson:"s"`
	BookingID string    `bson:"b"`
	ExpiresAt time.Time `bson:"e"`
	Sold      bool      `bson:"x,omitempty"`
}

type seatSnapDoc struct {
	ID    string        `bson:"_id"`
	Seq   int64         `bson:"seq"`
	Sold  string        `bson:"sold,omitempty"` // the sold seats, comma-separated
	Seats []snapSeatDoc `bson:"seats"`
	At    time.Time     `bson:"at"`
}

// SeatSnapshot reads the show's snapshot.
func (s *Bookings) SeatSnapshot(ctx context.Context, showID string) (*core.SeatSnapshot, error) {
	var d seatSnapDoc
	err := s.snaps.FindOne(ctx, bson.D{{Key: "_id", Value: showID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the seats")
	}
	snap := &core.SeatSnapshot{ShowID: d.ID, Seq: d.Seq, Seats: make([]core.SnapSeat, len(d.Seats))}
	for i, st := range d.Seats {
		snap.Seats[i] = core.SnapSeat{Seat: st.Seat, BookingID: st.BookingID, ExpiresAt: st.ExpiresAt.UTC(), Sold: st.Sold}
	}
	if d.Sold != "" {
		snap.Sold = strings.Split(d.Sold, ",")
	}
	return snap, nil
}

// SaveSeatSnapshot replaces the show's snapshot (by exact _id; two writers racing to create it
// are both fine: either snapshot is valid).
func (s *Bookings) SaveSeatSnapshot(ctx context.Context, snap core.SeatSnapshot) error {
	d := seatSnapDoc{ID: snap.ShowID, Seq: snap.Seq, At: s.now().UTC(), Sold: strings.Join(snap.Sold, ","),
		Seats: make([]snapSeatDoc, len(snap.Seats))}
	for i, st := range snap.Seats {
		d.Seats[i] = snapSeatDoc{Seat: st.Seat, BookingID: st.BookingID, ExpiresAt: st.ExpiresAt, Sold: st.Sold}
	}
	_, err := s.snaps.ReplaceOne(ctx, bson.D{{Key: "_id", Value: snap.ShowID}}, d, options.Replace().SetUpsert(true))
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not save the seats")
	}
	return nil
}

type deletionDoc struct {
	ID        string    `bson:"_id"`
	CreatedAt time.Time `bson:"createdAt"`
}

// MarkShowDeleting inserts the show's deletion marker.
func (s *Bookings) MarkShowDeleting(ctx context.Context, showID string) (bool, error) {
	_, err := s.deletions.InsertOne(ctx, deletionDoc{ID: showID, CreatedAt: s.now().UTC()})
	if mongox.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not mark the show deleted")
	}
	return true, nil
}

// ShowDeleting reads the show's deletion marker.
func (s *Bookings) ShowDeleting(ctx context.Context, showID string) (time.Time, bool, error) {
	var d deletionDoc
	err := s.deletions.FindOne(ctx, bson.D{{Key: "_id", Value: showID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, dbError(err, "could not read the show")
	}
	return d.CreatedAt.UTC(), true, nil
}

// UnmarkShowDeleting deletes the show's deletion marker.
func (s *Bookings) UnmarkShowDeleting(ctx context.Context, showID string) error {
	if _, err := s.deletions.DeleteOne(ctx, bson.D{{Key: "_id", Value: showID}}); err != nil {
		return dbError(err, "could not unmark the show")
	}
	return nil
}

// migrationID names the document that records a migrated store (in the snapshots
// collection, where no show id can take it).
const migrationID = "_seat_logs_v1"

// Migrated reports whether MigrateSeatLogs has run on this store.
func (s *Bookings) Migrated(ctx context.Context) (bool, error) {
	err := s.snaps.FindOne(ctx, bson.D{{Key: "_id", Value: migrationID}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not read the store's version")
	}
	return true, nil
}

// SetMigrated records that the store is migrated.
func (s *Bookings) SetMigrated(ctx context.Context) error {
	_, err := s.snaps.InsertOne(ctx, bson.D{{Key: "_id", Value: migrationID}, {Key: "at", Value: s.now().UTC()}})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not record the store's version")
	}
	return nil
}

// AllHolds lists every hold (a scan: the migration only).
func (s *Bookings) AllHolds(ctx context.Context) ([]core.Hold, error) {
	return findAll(ctx, s.holds, bson.D{}, nil, "read the seats", func(d *holdDoc) core.Hold {
		return core.Hold{ShowID: d.ShowID, Seat: d.Seat, BookingID: d.BookingID, ExpiresAt: d.ExpiresAt, Sold: d.Sold}
	})
}

// OpenBookings lists the bookings whose hold ends after the given time (a scan: the
// migration only).
func (s *Bookings) OpenBookings(ctx context.Context, expiringAfter time.Time) ([]core.Booking, error) {
	return findAll(ctx, s.bookings, bson.M{"expiresAt": bson.M{"$gt": expiringAfter}}, nil, "list open bookings", (*bookingDoc).booking)
}

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

type outcomeDoc struct {
	BookingID string    `bson:"_id"`
	Status    string    `bson:"status"`
	PaymentID string    `bson:"paymentId,omitempty"`
	DecidedAt time.Time `bson:"decidedAt"`
}

func (d *outcomeDoc) outcome() core.Outcome {
	return core.Outcome{BookingID: d.BookingID, Status: core.BookingStatus(d.Status), PaymentID: d.PaymentID, DecidedAt: d.DecidedAt.UTC()}
}

// Decide inserts the outcome unless one exists; it returns the one in force.
func (s *Bookings) Decide(ctx context.Context, o core.Outcome) (core.Outcome, bool, error) {
	d := outcomeDoc{BookingID: o.BookingID, Status: string(o.Status), PaymentID: o.PaymentID, DecidedAt: o.DecidedAt}
	dup, err := s.q(ctx).ins.outcomes.Insert(ctx, d)
	if err != nil {
		return core.Outcome{}, false, dbError(err, "could not decide the booking")
	}
	if !dup[0] {
		return o, true, nil
	}
	cur, err := s.Outcome(ctx, o.BookingID)
	if err != nil {
		return core.Outcome{}, false, err
	}
	if cur == nil {
		return core.Outcome{}, false, errs.E(errs.Internal, "booking outcome vanished")
	}
	return *cur, false, nil
}

// Outcome returns the booking's outcome (nil when undecided).
func (s *Bookings) Outcome(ctx context.Context, bookingID string) (*core.Outcome, error) {
	var d outcomeDoc
	err := s.outcomes.FindOne(ctx, bson.D{{Key: "_id", Value: bookingID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the booking's outcome")
	}
	o := d.outcome()
	return &o, nil
}

// Outcomes returns the outcomes of the given bookings: a read by exact _id each (a few at
// once), which the embedded database serves from its index, where {_id: {$in: ...}} scans.
func (s *Bookings) Outcomes(ctx context.Context, ids []string) (map[string]core.Outcome, error) {
	out := make(map[string]core.Outcome, len(ids))
	var mu sync.Mutex
	err := eachLimited(ctx, len(ids), func(ctx context.Context, i int) error {
		o, err := s.Outcome(ctx, ids[i])
		if o != nil {
			mu.Lock()
			out[o.BookingID] = *o
			mu.Unlock()
		}
		return err
	})
	return out, err
}

type paymentDoc struct {
	ID        bson.ObjectID `bson:"_id"`
	BookingID string        `bson:"bookingId"`
	UserID    string        `bson:"userId"`
	Amount    float64       `bson:"amount"`
	Status    string        `bson:"status"`
	Reason    string        `bson:"reason,omitempty"`
	CreatedAt time.Time     `bson:"createdAt"`
	UpdatedAt time.Time     `bson:"updatedAt"`
	Listed    bool          `bson:"lx,omitempty"` // as bookingDoc's
}

func (d *paymentDoc) payment() core.Payment {
	return core.Payment{ID: d.ID.Hex(), BookingID: d.BookingID, UserID: d.UserID, Amount: d.Amount,
		Status: core.PaymentStatus(d.Status), Reason: d.Reason, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

// CreatePayment inserts p with its given id, after its entries in its customer's list of
// payments and in the list of every payment (as CreateBooking).
func (s *Bookings) CreatePayment(ctx context.Context, p *core.Payment) error {
	oid, err := parseID(p.ID)
	if err != nil {
		return err
	}
	if err := s.appendEntries(ctx, userPaymentsStream(p.UserID), allPaymentsStream, p.ID, p.CreatedAt, "payment"); err != nil {
		return err
	}
	d := paymentDoc{ID: oid, BookingID: p.BookingID, UserID: p.UserID, Amount: p.Amount, Status: string(p.Status),
		Reason: p.Reason, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Listed: true}
	dup, err := s.q(ctx).ins.payments.Insert(ctx, d)
	if err == nil && dup[0] {
		err = errors.New("duplicate payment id")
	}
	if err != nil {
		return dbError(err, "could not record the payment")
	}
	return nil
}

// GetPayment reads a payment by id.
func (s *Bookings) GetPayment(ctx context.Context, id string) (*core.Payment, error) {
	oid, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var d paymentDoc
	err = s.payments.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "payment not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the payment")
	}
	p := d.payment()
	return &p, nil
}

// ListPayments lists payments newest first by a filtered, sorted find with skip (a scan, as
// ListBookings).
func (s *Bookings) ListPayments(ctx context.Context, f core.PaymentFilter) ([]core.Payment, error) {
	filter := bson.M{}
	if f.UserID != "" {
		filter["userId"] = f.UserID
	}
	return findAll(ctx, s.payments, filter, pageOptions(f.Limit, f.Skip), "list the payments", (*paymentDoc).payment)
}

// ProjectPayments sets a resolved status (and reason) on the payments, by exact _id: a
// payment's resolution follows from its booking's outcome, which never changes.
func (s *Bookings) ProjectPayments(ctx context.Context, status core.PaymentStatus, reason string, ids []string) error {
	oids, err := parseIDs(ids)
	if err != nil {
		return err
	}
	set := bson.M{"status": string(status), "updatedAt": s.now().UTC().Truncate(time.Millisecond)}
	if reason != "" {
		set["reason"] = reason
	}
	if err := setByIDs(ctx, s.payments, oids, set); err != nil {
		return dbError(err, "could not update the payments")
	}
	return nil
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
