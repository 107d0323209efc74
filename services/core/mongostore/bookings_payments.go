package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

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
