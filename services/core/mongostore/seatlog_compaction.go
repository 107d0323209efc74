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

// The compaction of the seat log: booking.Bookings.CompactSeatLogs decides what may go and when;
// the store deletes entries by their exact ids and keeps, per show, one record of how far the
// log is compacted (read and replaced by exact _id), beside the claims on the sweeps under way.

// DeleteSeatLog deletes the show's entries from..to by their exact ids, in one command of one
// statement each (the caller paces the calls: on the embedded database each statement is a
// transaction of its own).
func (s *Bookings) DeleteSeatLog(ctx context.Context, showID string, from, to int64) error {
	if to < from {
		return nil
	}
	ids := make([]any, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		ids = append(ids, seatLogID(showID, seq))
	}
	if _, err := deleteByIDs(ctx, s.seatLog, ids); err != nil {
		return dbError(err, "could not compact the seat log")
	}
	return nil
}

type compactionDoc struct {
	ID       string    `bson:"_id"`
	Done     int64     `bson:"done"`
	Mark     int64     `bson:"mark"`
	MarkedAt time.Time `bson:"markedAt"`
}

// SeatLogCompaction reads the show's compaction record.
func (s *Bookings) SeatLogCompaction(ctx context.Context, showID string) (core.SeatLogCompaction, error) {
	var d compactionDoc
	err := s.compacts.FindOne(ctx, bson.D{{Key: "_id", Value: showID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return core.SeatLogCompaction{ShowID: showID}, nil
	}
	if err != nil {
		return core.SeatLogCompaction{}, dbError(err, "could not read the seat log's compaction")
	}
	return core.SeatLogCompaction{ShowID: showID, Done: d.Done, Mark: d.Mark, MarkedAt: d.MarkedAt.UTC()}, nil
}

// SaveSeatLogCompaction replaces the show's compaction record (of two writers racing to
// create it, the loser's duplicate key is no error: either record is true).
func (s *Bookings) SaveSeatLogCompaction(ctx context.Context, c core.SeatLogCompaction) error {
	d := compactionDoc{ID: c.ShowID, Done: c.Done, Mark: c.Mark, MarkedAt: c.MarkedAt}
	_, err := s.compacts.ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.ShowID}}, d, options.Replace().SetUpsert(true))
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not record the seat log's compaction")
	}
	return nil
}

// ClaimSeatLogSweep inserts the claim key: the first insert wins.
func (s *Bookings) ClaimSeatLogSweep(ctx context.Context, key string) (bool, error) {
	_, err := s.compacts.InsertOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "at", Value: s.now().UTC()}})
	if mongox.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not claim the seat log's compaction")
	}
	return true, nil
}

// DropSeatLogSweep deletes the claim key.
func (s *Bookings) DropSeatLogSweep(ctx context.Context, key string) error {
	if _, err := s.compacts.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return dbError(err, "could not release the seat log's compaction")
	}
	return nil
}

// DBTime reads the database's clock: the localTime of a hello command (no document is read).
func (s *Bookings) DBTime(ctx context.Context) (time.Time, error) {
	var r struct {
		LocalTime time.Time `bson:"localTime"`
	}
	if err := s.db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&r); err != nil {
		return time.Time{}, dbError(err, "could not read the database's clock")
	}
	if r.LocalTime.IsZero() {
		return time.Time{}, errs.E(errs.Internal, "the database does not tell its time")
	}
	return r.LocalTime.UTC(), nil
}
