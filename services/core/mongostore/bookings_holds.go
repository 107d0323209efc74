package mongostore

import (
	"context"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
)

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
