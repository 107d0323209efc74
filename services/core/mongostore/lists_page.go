package mongostore

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// cursor is where a page starts: below position pos of the stream (legacy: of its backfilled
// part), skip items further on; top means from the head.
type cursor struct {
	top    bool
	legacy bool
	pos    int64
	skip   int64
}

// maxCursorNumber bounds the numbers a cursor may carry.
const maxCursorNumber = 1 << 50

// parseCursor reads a page cursor as pageStream writes them: "" (the first page), "<n>"
// (below position n), "o<n>" (below position n of the backfilled part), "s<n>" (n items from
// the first, for pages of a list not yet backfilled).
func parseCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{top: true}, nil
	}
	c := cursor{}
	num := s
	switch s[0] {
	case 'o':
		c.legacy, num = true, s[1:]
	case 's':
		c.top, num = true, s[1:]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > maxCursorNumber || strconv.FormatInt(n, 10) != num {
		return cursor{}, errs.Fields(map[string]string{"before": "is not a cursor of this list: follow the Link rel=\"next\" of the previous page"})
	}
	if c.top {
		c.skip = n
	} else {
		c.pos = n
	}
	return c, nil
}

func (c cursor) String() string {
	if c.legacy {
		return "o" + strconv.FormatInt(c.pos, 10)
	}
	return strconv.FormatInt(c.pos, 10)
}

// pageStream reads up to limit documents of stream, newest first, from the cursor and skip:
// each position's entry, then its document with load (nil for one that does not exist, or
// that the stream must not show), a chunk of positions at once. It reads at most
// 2*(limit+1)+16 positions: a page of many entries without documents stops early, with a next
// cursor.
func pageStream[D any](ctx context.Context, l *lists, stream string, c cursor, skip int, limit int,
	load func(ctx context.Context, ref string) (*D, error)) ([]*D, string, error) {
	c.skip += int64(skip)
	pos, legacy := c.pos, c.legacy
	part := func(legacy bool) string {
		if legacy {
			return legacyPrefix + stream
		}
		return stream
	}
	probe := func(legacy bool) int { // the backfilled part is written once, by the same protocol
		if legacy {
			return 0
		}
		return headProbe
	}
	h, err := l.head(ctx, part(legacy), probe(legacy))
	if err != nil {
		return nil, "", err
	}
	if c.top {
		pos = h
	} else if pos > h { // a cursor past the head seen: real if its position's entry exists
		if ok, err := l.exists(ctx, part(legacy), pos-1); err != nil {
			return nil, "", err
		} else if !ok {
			pos = h
		}
	}
	pos -= c.skip
	if pos < 0 && !legacy {
		left := -pos
		legacy = true
		if h, err = l.head(ctx, part(true), 0); err != nil {
			return nil, "", err
		}
		pos = h - left
	}
	if pos < 0 {
		return nil, "", nil
	}
	want := limit + 1
	budget := int64(2*want + 16)
	var (
		docs []*D
		at   []cursor // each document's position
		done bool
	)
	for len(docs) < want && budget > 0 {
		if pos == 0 {
			if legacy {
				done = true
				break
			}
			legacy = true
			if pos, err = l.head(ctx, part(true), 0); err != nil {
				return nil, "", err
			}
			continue
		}
		n := min(int64(want-len(docs)), budget, pos, pageChunk)
		got := make([]*D, n)
		st := part(legacy)
		err := eachLimited(ctx, int(n), func(ctx context.Context, i int) error {
			id := entryID(st, pos-1-int64(i))
			ref, ok := l.entryCache.get(id)
			if !ok {
				var e listEntryDoc
				err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&e)
				if errors.Is(err, mongo.ErrNoDocuments) {
					return nil // a gap (a writer may fill it: not kept)
				}
				if err != nil {
					return err
				}
				ref = e.Ref
				l.entryCache.put(id, ref)
			}
			var err error
			got[i], err = load(ctx, ref)
			return err
		})
		if err != nil {
			return nil, "", err
		}
		for i, d := range got {
			if d != nil {
				docs = append(docs, d)
				at = append(at, cursor{legacy: legacy, pos: pos - 1 - int64(i)})
			}
		}
		pos -= n
		budget -= n
	}
	switch {
	case len(docs) > limit:
		return docs[:limit], at[limit-1].String(), nil
	case done || legacy && pos == 0:
		return docs, "", nil
	default:
		return docs, cursor{legacy: legacy, pos: pos}.String(), nil
	}
}

// loadCached reads a listed document of coll by exact _id (nil when there is none), from the
// process's cache when it is there. The copy returned is the caller's (the cache keeps its
// own; the documents' slices are only ever read).
func loadCached[D any](ctx context.Context, l *lists, coll *mongo.Collection, kind, ref string) (*D, error) {
	if v, ok := l.docCache.get(kind + ref); ok {
		d := *v.(*D)
		return &d, nil
	}
	oid, err := bson.ObjectIDFromHex(ref)
	if err != nil {
		return nil, nil // not a document of ours
	}
	var d D
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil // an entry whose document was never written (not kept: it may be late)
	}
	if err != nil {
		return nil, err
	}
	kept := d
	l.docCache.put(kind+ref, &kept)
	return &d, nil
}

// defaultPageLimit is the page size of a filter without Limit.
const defaultPageLimit = 50

// PageBookings returns a page of bookings newest first (f.Limit of them, default 50, after
// f.Skip, from the cursor f.Before) and the cursor of the next page ("" when there is none):
// a customer's (f.UserID) or everyone's. It reads the lists' streams once the backfill is
// done, the old query before (ListBookings: a scan). A page costs the same however many
// bookings there are; f.Skip skips positions (entries whose booking was never written count,
// which are rare), at no cost.
func (s *Bookings) PageBookings(ctx context.Context, f core.BookingFilter) ([]core.Booking, string, error) {
	limit, c, old, err := s.pageStart(ctx, f.Limit, f.Before)
	if err != nil {
		return nil, "", err
	}
	if old {
		skip := int(c.skip) + f.Skip
		list, err := s.ListBookings(ctx, core.BookingFilter{UserID: f.UserID, Limit: limit + 1, Skip: skip})
		return oldPage(list, limit, skip, err)
	}
	stream := allBookingsStream
	if f.UserID != "" {
		stream = userBookingsStream(f.UserID)
	}
	docs, next, err := pageStream(ctx, s.lists, stream, c, f.Skip, limit, func(ctx context.Context, ref string) (*bookingDoc, error) {
		d, err := loadCached[bookingDoc](ctx, s.lists, s.bookings, "b:", ref)
		if d != nil && f.UserID != "" && d.UserID != f.UserID {
			d = nil // cannot happen: the customer's stream names only the customer's
		}
		return d, err
	})
	if err != nil {
		return nil, "", dbError(err, "could not list the bookings")
	}
	out := make([]core.Booking, len(docs))
	for i, d := range docs {
		out[i] = d.booking()
		out[i].Seats, out[i].Slots = slices.Clone(out[i].Seats), slices.Clone(out[i].Slots) // the cache's are its own
	}
	return out, next, nil
}

// PagePayments returns a page of payments newest first, as PageBookings.
func (s *Bookings) PagePayments(ctx context.Context, f core.PaymentFilter) ([]core.Payment, string, error) {
	limit, c, old, err := s.pageStart(ctx, f.Limit, f.Before)
	if err != nil {
		return nil, "", err
	}
	if old {
		skip := int(c.skip) + f.Skip
		list, err := s.ListPayments(ctx, core.PaymentFilter{UserID: f.UserID, Limit: limit + 1, Skip: skip})
		return oldPage(list, limit, skip, err)
	}
	stream := allPaymentsStream
	if f.UserID != "" {
		stream = userPaymentsStream(f.UserID)
	}
	docs, next, err := pageStream(ctx, s.lists, stream, c, f.Skip, limit, func(ctx context.Context, ref string) (*paymentDoc, error) {
		d, err := loadCached[paymentDoc](ctx, s.lists, s.payments, "p:", ref)
		if d != nil && f.UserID != "" && d.UserID != f.UserID {
			d = nil
		}
		return d, err
	})
	if err != nil {
		return nil, "", dbError(err, "could not list the payments")
	}
	out := make([]core.Payment, len(docs))
	for i, d := range docs {
		out[i] = d.payment()
	}
	return out, next, nil
}

// pageStart reads a page's limit and cursor, and whether the page comes from the old query
// (the backfill not done, and no cursor of a stream given).
func (s *Bookings) pageStart(ctx context.Context, limit int, before string) (int, cursor, bool, error) {
	if limit <= 0 {
		limit = defaultPageLimit
	}
	c, err := parseCursor(before)
	if err != nil {
		return 0, c, false, err
	}
	if !c.top {
		return limit, c, false, nil
	}
	done, err := s.lists.isBackfilled(ctx)
	return limit, c, !done, err
}

// oldPage cuts a page of the old query, read with one item more than limit: the next page's
// cursor skips the items of this one.
func oldPage[T any](list []T, limit, skip int, err error) ([]T, string, error) {
	if err != nil {
		return nil, "", err
	}
	if len(list) > limit {
		return list[:limit], "s" + strconv.Itoa(skip+limit), nil
	}
	return list, "", nil
}
