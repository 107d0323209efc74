package mongostore

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
)

// listsMarkerID names the document that records the backfill done (not a stream entry: no
// stream starts with '!').
const listsMarkerID = "!lists-backfilled"

type listsMarkerDoc struct {
	ID   string    `bson:"_id"`
	Key  string    `bson:"k"`    // the unique index wants a value
	From time.Time `bson:"from"` // when the pass that wrote it began
	At   time.Time `bson:"at"`
}

// isBackfilled reports whether the backfill's marker exists (then the streams list every
// document).
func (l *lists) isBackfilled(ctx context.Context) (bool, error) {
	if l.backfilled.Load() {
		return true, nil
	}
	m, err := l.marker(ctx)
	if err != nil || m == nil {
		return false, err
	}
	l.backfilled.Store(true)
	return true, nil
}

func (l *lists) marker(ctx context.Context) (*listsMarkerDoc, error) {
	var m listsMarkerDoc
	err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: listsMarkerID}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the lists' state")
	}
	return &m, nil
}

// Catch-up passes of the backfill (see BackfillLists).
const (
	// ListsCatchUpFor is how long after the backfill's marker the backfill keeps making
	// catch-up passes: longer than a rolling upgrade takes.
	ListsCatchUpFor = time.Hour
	// ListsCatchUpEvery is how often the wiring runs a catch-up pass meanwhile.
	ListsCatchUpEvery = 5 * time.Minute
	// listsClockMargin covers the clocks of earlier versions' replicas, whose ids carry their
	// time.
	listsClockMargin = 5 * time.Minute
)

// ListsBackfill is what a BackfillLists run did.
type ListsBackfill struct {
	// Indexed counts the bookings and payments indexed by this run.
	Indexed int
	// CatchUpUntil: call again every ListsCatchUpEvery until then (zero: nothing left to do).
	CatchUpUntil time.Time
}

// BackfillLists indexes the bookings and payments that earlier versions wrote (those without
// "lx": written without entries) in the older part of their streams, oldest first, then writes
// the marker that makes the lists answer from the streams: until then they answer from the
// old query (a scan). It reads each collection once, as a cursor; replicas running it at once
// write each entry once (the unique key refuses the second), and either's marker does.
//
// A replica of an earlier version still serving during a rolling upgrade writes bookings and
// payments without entries after the pass has gone by: a call after the marker, until
// CatchUpUntil (ListsCatchUpFor after it), makes a catch-up pass that indexes those of them
// created since shortly before the pass began. Until it runs, the streams do not list them
// (GET /bookings/:id finds them, and paying works).
func (s *Bookings) BackfillLists(ctx context.Context) (ListsBackfill, error) {
	l := s.lists
	m, err := l.marker(ctx)
	if err != nil {
		return ListsBackfill{}, err
	}
	if m != nil {
		l.backfilled.Store(true)
		until := m.At.Add(ListsCatchUpFor)
		if !s.now().Before(until) {
			return ListsBackfill{}, nil
		}
		var since bson.ObjectID // the least id of that second
		binary.BigEndian.PutUint32(since[:4], uint32(m.From.Add(-listsClockMargin).Unix()))
		n, err := s.indexLegacy(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: since}}}}, false)
		return ListsBackfill{Indexed: n, CatchUpUntil: until}, err
	}
	from := s.now().UTC()
	n, err := s.indexLegacy(ctx, nil, true)
	if err != nil {
		return ListsBackfill{Indexed: n}, err
	}
	at := s.now().UTC()
	_, err = l.coll.InsertOne(ctx, listsMarkerDoc{ID: listsMarkerID, Key: listsMarkerID, From: from, At: at})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return ListsBackfill{Indexed: n}, dbError(err, "could not mark the lists indexed")
	}
	l.backfilled.Store(true)
	return ListsBackfill{Indexed: n, CatchUpUntil: at.Add(ListsCatchUpFor)}, nil
}

// indexLegacy indexes the bookings, then the payments, that match filter and have no "lx".
// A full pass (ordinals) expects each document at its ordinal in the streams, where another
// replica's pass (or an earlier one's) puts it.
func (s *Bookings) indexLegacy(ctx context.Context, filter bson.D, ordinals bool) (int, error) {
	total := 0
	for _, c := range []struct {
		coll      *mongo.Collection
		user      func(string) string
		all, what string
	}{
		{s.bookings, userBookingsStream, allBookingsStream, "bookings"},
		{s.payments, userPaymentsStream, allPaymentsStream, "payments"},
	} {
		n, err := s.indexCollection(ctx, c.coll, append(bson.D{{Key: "lx", Value: bson.D{{Key: "$exists", Value: false}}}}, filter...),
			c.user, c.all, c.what, ordinals)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// indexCollection appends an entry to the backfilled part of the user's and the shared stream
// for each document of coll matching filter, in the order the collection returns them (its
// natural order: oldest first).
func (s *Bookings) indexCollection(ctx context.Context, coll *mongo.Collection, filter bson.D, user func(string) string,
	all, what string, ordinals bool) (int, error) {
	cur, err := coll.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: 1}}).SetBatchSize(1000))
	if err != nil {
		return 0, dbError(err, "could not list the "+what)
	}
	defer cur.Close(ctx)
	n := 0
	var page []listItem
	ord := map[string]int64{} // the document's ordinal in each stream, in this pass
	item := func(stream, ref string, at time.Time) listItem {
		it := listItem{stream: stream, ref: ref, at: at, expect: ord[stream], hasExp: ordinals}
		ord[stream]++
		return it
	}
	flush := func() error {
		if err := s.lists.bg.append(ctx, page...); err != nil {
			return dbError(err, "could not index the "+what)
		}
		n += len(page) / 2
		page = page[:0]
		return nil
	}
	for cur.Next(ctx) {
		var d struct {
			ID        bson.ObjectID `bson:"_id"`
			UserID    string        `bson:"userId"`
			CreatedAt time.Time     `bson:"createdAt"`
		}
		if err := cur.Decode(&d); err != nil {
			return n, dbError(err, "could not list the "+what)
		}
		ref := d.ID.Hex()
		page = append(page, item(legacyPrefix+user(d.UserID), ref, d.CreatedAt), item(legacyPrefix+all, ref, d.CreatedAt))
		if len(page) >= maxBatchDocs {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return n, dbError(err, "could not list the "+what)
	}
	if len(page) > 0 {
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}
