package mongostore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

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
