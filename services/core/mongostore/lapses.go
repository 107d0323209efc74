package mongostore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/services/core/booking"
)

// lapsedSlotsPrefix starts the name of each collection of lapsed slots' notes: one per bucket
// of the expiry queue, named after it ("lapsed_slots_" + bucket name).
const lapsedSlotsPrefix = "lapsed_slots_"

// Lapses is a booking.LapseStore on MongoDB. A bucket's notes live in a collection of their own,
// one document per customer keyed by the user id, whose array n holds the notes as strings
// "<slot>:<booking id>:<hold end, Unix ms>": inserted when the bucket is released (an insert
// command per 1,000 customers; a customer's document written already is kept), dropped as one
// when it is cleared.
// A customer's notes are read by exact _id in each of those collections, found in the
// database's list of collection names (no document is read to find them). So a storm costs a
// command per bucket to note and one to forget, not a write per customer.
type Lapses struct {
	db *mongo.Database
}

var _ booking.LapseStore = (*Lapses)(nil)

// NewLapses returns the store on db.
func NewLapses(db *mongo.Database) *Lapses { return &Lapses{db: db} }

type lapseDoc struct {
	ID    string   `bson:"_id"`
	Notes []string `bson:"n"`
}

func lapseNote(n booking.LapsedSlot) string {
	return strconv.Itoa(n.Slot) + ":" + n.BookingID + ":" + strconv.FormatInt(n.ExpiresAt.UnixMilli(), 10)
}

func parseLapseNote(s string) (booking.LapsedSlot, bool) {
	a, rest, ok1 := strings.Cut(s, ":")
	b, c, ok2 := strings.Cut(rest, ":")
	k, err1 := strconv.Atoi(a)
	ms, err2 := strconv.ParseInt(c, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || b == "" {
		return booking.LapsedSlot{}, false
	}
	return booking.LapsedSlot{Slot: k, BookingID: b, ExpiresAt: time.UnixMilli(ms).UTC()}, true
}

// lapseBatch bounds the documents of one insert command.
const lapseBatch = 1000

// NoteLapsed inserts the bucket's notes, a document per customer, unordered (documents there
// already are kept: the same bucket's notes, written by an earlier release).
func (s *Lapses) NoteLapsed(ctx context.Context, bucket string, notes map[string][]booking.LapsedSlot) error {
	docs := make([]any, 0, len(notes))
	for user, ns := range notes {
		vals := make([]string, len(ns))
		for i, n := range ns {
			vals[i] = lapseNote(n)
		}
		docs = append(docs, lapseDoc{ID: user, Notes: vals})
	}
	c := s.db.Collection(lapsedSlotsPrefix + bucket)
	for batch := range slices.Chunk(docs, lapseBatch) {
		_, err := c.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err != nil && errors.As(err, &bwe) && bwe.WriteConcernError == nil {
			dupsOnly := true
			for _, we := range bwe.WriteErrors {
				dupsOnly = dupsOnly && we.Code == 11000
			}
			if dupsOnly {
				err = nil
			}
		}
		if err != nil {
			return dbError(err, "could not share the lapsed slots")
		}
	}
	return nil
}

// ForgetLapsed drops the bucket's collection of notes.
func (s *Lapses) ForgetLapsed(ctx context.Context, bucket string) error {
	if err := s.db.Collection(lapsedSlotsPrefix + bucket).Drop(ctx); err != nil {
		return dbError(err, "could not drop the lapsed slots")
	}
	return nil
}

// Lapsed reads the user's document in every bucket's collection of notes.
func (s *Lapses) Lapsed(ctx context.Context, userID string) ([]booking.LapsedSlot, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, dbError(err, "could not read the lapsed slots")
	}
	var colls []string
	for _, n := range names {
		if strings.HasPrefix(n, lapsedSlotsPrefix) {
			colls = append(colls, n)
		}
	}
	found := make([][]string, len(colls))
	err = eachLimited(ctx, len(colls), func(ctx context.Context, i int) error {
		var d lapseDoc
		err := s.db.Collection(colls[i]).FindOne(ctx, bson.D{{Key: "_id", Value: userID}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			return dbError(err, "could not read the lapsed slots")
		}
		found[i] = d.Notes
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []booking.LapsedSlot
	for _, ns := range found {
		for _, str := range ns {
			if n, ok := parseLapseNote(str); ok {
				out = append(out, n)
			}
		}
	}
	return out, nil
}
