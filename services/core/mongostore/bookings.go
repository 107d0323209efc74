package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// Collections of the booking engine.
const (
	HoldsCollection    = "seat_holds"
	BookingsCollection = "bookings"
	OutcomesCollection = "booking_outcomes"
	PaymentsCollection = "payments"
)

// Bookings is a core.BookingStore on MongoDB.
//
// A seat hold is a document whose unique "seatKey" is (show, seat): the index, not a read,
// keeps two bookings off one seat. Its _id adds the booking, so a release deletes only that
// booking's hold, never a later one on the same seat. A booking's outcome is a document whose
// _id is the booking id: the first insert decides. Booking and payment documents carry a
// projection of the outcome for readers of the raw collections.
//
// Inserts of concurrent requests are coalesced per collection (see inserter): each hold,
// outcome and booking is still decided by its own key.
type Bookings struct {
	db       *mongo.Database
	holds    *mongo.Collection
	bookings *mongo.Collection
	outcomes *mongo.Collection
	payments *mongo.Collection
	ins      struct{ holds, bookings, outcomes, payments *inserter }
	now      func() time.Time
}

var _ core.BookingStore = (*Bookings)(nil)

// NewBookings returns the booking store on db. Call EnsureIndexes once at start.
func NewBookings(db *mongo.Database) *Bookings {
	s := &Bookings{db: db, holds: db.Collection(HoldsCollection), bookings: db.Collection(BookingsCollection),
		outcomes: db.Collection(OutcomesCollection), payments: db.Collection(PaymentsCollection), now: time.Now}
	s.ins.holds, s.ins.bookings = newInserter(s.holds), newInserter(s.bookings)
	s.ins.outcomes, s.ins.payments = newInserter(s.outcomes), newInserter(s.payments)
	return s
}

// EnsureIndexes creates the unique seat key and the lookup indexes (one per call: the dev
// database fails creating several at once).
func (s *Bookings) EnsureIndexes(ctx context.Context) error {
	steps := []struct {
		c *mongo.Collection
		m mongo.IndexModel
	}{
		{s.holds, mongo.IndexModel{Keys: bson.D{{Key: "seatKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("seat_unique")}},
		{s.holds, mongo.IndexModel{Keys: bson.D{{Key: "showId", Value: 1}}, Options: options.Index().SetName("show")}},
		{s.bookings, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: -1}}, Options: options.Index().SetName("user_created")}},
		{s.bookings, mongo.IndexModel{Keys: bson.D{{Key: "expiresAt", Value: 1}}, Options: options.Index().SetName("expires")}},
		{s.payments, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: -1}}, Options: options.Index().SetName("user_created")}},
	}
	for _, st := range steps {
		if err := mongox.EnsureIndexes(ctx, st.c, st.m); err != nil {
			return err
		}
	}
	return nil
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
	for i, h := range holds {
		docs[i] = holdDoc{ID: holdID(h.ShowID, h.Seat, h.BookingID), SeatKey: h.ShowID + ":" + h.Seat, ShowID: h.ShowID,
			Seat: h.Seat, BookingID: h.BookingID, ExpiresAt: h.ExpiresAt, Sold: h.Sold, CreatedAt: now}
	}
	lost, err := s.ins.holds.insert(ctx, docs...)
	if err != nil {
		// Which holds landed is unknown: report none won and release them all, so nothing
		// stays held by a booking that will not exist.
		ids := make([]string, len(holds))
		for i, h := range holds {
			ids[i] = holdID(h.ShowID, h.Seat, h.BookingID)
		}
		_, _ = s.holds.DeleteMany(context.WithoutCancel(ctx), bson.M{"_id": bson.M{"$in": ids}})
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

// ShowHolds lists the show's holds.
func (s *Bookings) ShowHolds(ctx context.Context, showID string) ([]core.Hold, error) {
	return findAll(ctx, s.holds, bson.M{"showId": showID}, nil, "read the seats", func(d *holdDoc) core.Hold {
		return core.Hold{ShowID: d.ShowID, Seat: d.Seat, BookingID: d.BookingID, ExpiresAt: d.ExpiresAt, Sold: d.Sold}
	})
}

func holdIDs(showID, bookingID string, seats []string) []string {
	ids := make([]string, len(seats))
	for i, seat := range seats {
		ids[i] = holdID(showID, seat, bookingID)
	}
	return ids
}

// ReleaseHolds deletes the booking's holds on seats.
func (s *Bookings) ReleaseHolds(ctx context.Context, showID, bookingID string, seats []string) error {
	if _, err := s.holds.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": holdIDs(showID, bookingID, seats)}}); err != nil {
		return dbError(err, "could not release the seats")
	}
	return nil
}

// MarkSold sets the sold hint on the holds.
func (s *Bookings) MarkSold(ctx context.Context, holds []core.Hold) error {
	ids := make([]string, len(holds))
	for i, h := range holds {
		ids[i] = holdID(h.ShowID, h.Seat, h.BookingID)
	}
	_, err := s.holds.UpdateMany(ctx, bson.M{"_id": bson.M{"$in": ids}, "sold": false}, bson.M{"$set": bson.M{"sold": true}})
	if err != nil {
		return dbError(err, "could not mark the seats sold")
	}
	return nil
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
}

func (d *bookingDoc) booking() core.Booking {
	seats := d.Seats
	if seats == nil {
		seats = []string{}
	}
	return core.Booking{ID: d.ID.Hex(), UserID: d.UserID, TheatreID: d.TheatreID, MovieID: d.MovieID, ShowID: d.ShowID,
		Timing: d.Timing, NoOfSeats: d.NoOfSeats, Seats: seats, TotalCost: d.TotalCost, Status: core.BookingStatus(d.Status),
		ExpiresAt: d.ExpiresAt.UTC(), PaymentID: d.PaymentID, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

// CreateBooking inserts b with its given id.
func (s *Bookings) CreateBooking(ctx context.Context, b *core.Booking) error {
	oid, err := parseID(b.ID)
	if err != nil {
		return err
	}
	d := bookingDoc{ID: oid, UserID: b.UserID, TheatreID: b.TheatreID, MovieID: b.MovieID, ShowID: b.ShowID,
		Timing: b.Timing, NoOfSeats: b.NoOfSeats, Seats: b.Seats, TotalCost: b.TotalCost, Status: string(b.Status),
		ExpiresAt: b.ExpiresAt, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt}
	if dup, err := s.ins.bookings.insert(ctx, d); err != nil || dup[0] {
		return dbError(errors.Join(err, errors.New("duplicate booking id")), "could not create the booking")
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
	err = s.bookings.FindOne(ctx, bson.M{"_id": oid}).Decode(&d)
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

// ListBookings lists bookings newest first.
func (s *Bookings) ListBookings(ctx context.Context, f core.BookingFilter) ([]core.Booking, error) {
	filter := bson.M{}
	if f.UserID != "" {
		filter["userId"] = f.UserID
	}
	return findAll(ctx, s.bookings, filter, pageOptions(f.Limit, f.Skip), "list the bookings", (*bookingDoc).booking)
}

// ProjectStatus sets status on the bookings still stored IN_PROCESS.
func (s *Bookings) ProjectStatus(ctx context.Context, status core.BookingStatus, ids []string) error {
	oids, err := parseIDs(ids)
	if err != nil {
		return err
	}
	_, err = s.bookings.UpdateMany(ctx, bson.M{"_id": bson.M{"$in": oids}, "status": string(core.BookingInProcess)},
		bson.M{"$set": bson.M{"status": string(status), "updatedAt": s.now().UTC().Truncate(time.Millisecond)}})
	if err != nil {
		return dbError(err, "could not update the bookings")
	}
	return nil
}

func parseIDs(ids []string) ([]bson.ObjectID, error) {
	oids := make([]bson.ObjectID, len(ids))
	for i, id := range ids {
		oid, err := parseID(id)
		if err != nil {
			return nil, err
		}
		oids[i] = oid
	}
	return oids, nil
}

// ExpiringBetween lists bookings whose hold ends in [from, to), soonest first.
func (s *Bookings) ExpiringBetween(ctx context.Context, from, to time.Time, limit int) ([]core.Booking, error) {
	o := options.Find().SetSort(bson.D{{Key: "expiresAt", Value: 1}})
	if limit > 0 {
		o.SetLimit(int64(limit))
	}
	return findAll(ctx, s.bookings, bson.M{"expiresAt": bson.M{"$gte": from, "$lt": to}}, o, "list expiring bookings",
		(*bookingDoc).booking)
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
	dup, err := s.ins.outcomes.insert(ctx, d)
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
	err := s.outcomes.FindOne(ctx, bson.M{"_id": bookingID}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the booking's outcome")
	}
	o := d.outcome()
	return &o, nil
}

// Outcomes returns the outcomes of the given bookings.
func (s *Bookings) Outcomes(ctx context.Context, ids []string) (map[string]core.Outcome, error) {
	out := make(map[string]core.Outcome, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) == 1 { // an {_id: v} filter is the only one the dev database serves from an index
		o, err := s.Outcome(ctx, ids[0])
		if o != nil {
			out[o.BookingID] = *o
		}
		return out, err
	}
	list, err := findAll(ctx, s.outcomes, bson.M{"_id": bson.M{"$in": ids}}, nil, "read outcomes", (*outcomeDoc).outcome)
	for _, o := range list {
		out[o.BookingID] = o
	}
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
}

func (d *paymentDoc) payment() core.Payment {
	return core.Payment{ID: d.ID.Hex(), BookingID: d.BookingID, UserID: d.UserID, Amount: d.Amount,
		Status: core.PaymentStatus(d.Status), Reason: d.Reason, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

// CreatePayment inserts p with its given id.
func (s *Bookings) CreatePayment(ctx context.Context, p *core.Payment) error {
	oid, err := parseID(p.ID)
	if err != nil {
		return err
	}
	d := paymentDoc{ID: oid, BookingID: p.BookingID, UserID: p.UserID, Amount: p.Amount, Status: string(p.Status),
		Reason: p.Reason, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if dup, err := s.ins.payments.insert(ctx, d); err != nil || dup[0] {
		return dbError(errors.Join(err, errors.New("duplicate payment id")), "could not record the payment")
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
	err = s.payments.FindOne(ctx, bson.M{"_id": oid}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "payment not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the payment")
	}
	p := d.payment()
	return &p, nil
}

// ListPayments lists payments newest first.
func (s *Bookings) ListPayments(ctx context.Context, f core.PaymentFilter) ([]core.Payment, error) {
	filter := bson.M{}
	if f.UserID != "" {
		filter["userId"] = f.UserID
	}
	return findAll(ctx, s.payments, filter, pageOptions(f.Limit, f.Skip), "list the payments", (*paymentDoc).payment)
}

// ProjectPayments sets status (and reason) on the payments still stored PENDING.
func (s *Bookings) ProjectPayments(ctx context.Context, status core.PaymentStatus, reason string, ids []string) error {
	oids, err := parseIDs(ids)
	if err != nil {
		return err
	}
	set := bson.M{"status": string(status), "updatedAt": s.now().UTC().Truncate(time.Millisecond)}
	if reason != "" {
		set["reason"] = reason
	}
	_, err = s.payments.UpdateMany(ctx, bson.M{"_id": bson.M{"$in": oids}, "status": string(core.PaymentPending)}, bson.M{"$set": set})
	if err != nil {
		return dbError(err, "could not update the payments")
	}
	return nil
}
