package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

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
