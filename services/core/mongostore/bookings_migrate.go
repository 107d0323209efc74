package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

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
