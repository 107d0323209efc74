package mongostore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// LapsedSlotsCollection keeps the expirer's shared notes of lapsed fair-use slots.
const LapsedSlotsCollection = "lapsed_slots"

// Lapses is a core.LapseStore on MongoDB: one document per customer, keyed by the user id,
// whose array n holds the notes as strings "<slot>:<booking id>:<hold end, Unix ms>" (plain
// values: $addToSet with $each and $pullAll of plain values work on the embedded database as on
// MongoDB). Every read and write is by that exact _id. Updates of one document by two writers
// at once may lose one of them on the embedded database, which core.LapseStore says is
// harmless.
type Lapses struct {
	c *mongo.Collection
}

var _ core.LapseStore = (*Lapses)(nil)

// NewLapses returns the store on db.
func NewLapses(db *mongo.Database) *Lapses { return &Lapses{c: db.Collection(LapsedSlotsCollection)} }

type lapseDoc struct {
	ID    string   `bson:"_id"`
	Notes []string `bson:"n"`
}

func lapseNote(n core.LapsedSlot) string {
	return strconv.Itoa(n.Slot) + ":" + n.BookingID + ":" + strconv.FormatInt(n.ExpiresAt.UnixMilli(), 10)
}

func parseLapseNote(s string) (core.LapsedSlot, bool) {
	a, rest, ok1 := strings.Cut(s, ":")
	b, c, ok2 := strings.Cut(rest, ":")
	k, err1 := strconv.Atoi(a)
	ms, err2 := strconv.ParseInt(c, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || b == "" {
		return core.LapsedSlot{}, false
	}
	return core.LapsedSlot{Slot: k, BookingID: b, ExpiresAt: time.UnixMilli(ms).UTC()}, true
}

// NoteLapsed adds the notes: one update per user (upserted), a few at a time. (Not one bulk
// write: on the embedded database an update command of a hundred statements on existing
// documents was measured never to return.)
func (s *Lapses) NoteLapsed(ctx context.Context, notes map[string][]core.LapsedSlot) error {
	return s.update(ctx, notes, "$addToSet", true)
}

// ForgetLapsed removes the notes, one update per user, a few at a time.
func (s *Lapses) ForgetLapsed(ctx context.Context, notes map[string][]core.LapsedSlot) error {
	return s.update(ctx, notes, "$pullAll", false)
}

func (s *Lapses) update(ctx context.Context, notes map[string][]core.LapsedSlot, op string, upsert bool) error {
	users := make([]string, 0, len(notes))
	for u := range notes {
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil
	}
	return eachLimited(ctx, len(users), func(ctx context.Context, i int) error {
		ns := notes[users[i]]
		vals := make([]string, len(ns))
		for k, n := range ns {
			vals[k] = lapseNote(n)
		}
		var arg any = vals
		if op == "$addToSet" {
			arg = bson.D{{Key: "$each", Value: vals}}
		}
		filter := bson.D{{Key: "_id", Value: users[i]}}
		update := bson.D{{Key: op, Value: bson.D{{Key: "n", Value: arg}}}}
		_, err := s.c.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(upsert))
		if mongox.IsDuplicateKey(err) {
			// Two upserts of one new document at once: one inserts it, the other meets its
			// key; once more, the document exists and the update applies.
			_, err = s.c.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(upsert))
		}
		if err != nil {
			return dbError(err, "could not share the lapsed slots")
		}
		return nil
	})
}

// Lapsed reads the user's notes by exact _id.
func (s *Lapses) Lapsed(ctx context.Context, userID string) ([]core.LapsedSlot, error) {
	var d lapseDoc
	err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: userID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the lapsed slots")
	}
	out := make([]core.LapsedSlot, 0, len(d.Notes))
	for _, s := range d.Notes {
		if n, ok := parseLapseNote(s); ok {
			out = append(out, n)
		}
	}
	return out, nil
}
