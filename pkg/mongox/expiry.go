package mongox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// defaultExpiryPage is how many of the oldest documents one read of Clean takes, unless told.
const defaultExpiryPage = 100

// Expiry removes the documents of some collections a retention after the date in one of their
// fields: by a TTL index where the server has them (MongoDB, EnsureTTL), else by Clean, run
// periodically (FerretDB refuses TTL indexes: expireAfterSeconds). Never rely on either for
// correctness: a TTL index removes documents up to a minute late, and Clean only when run.
type Expiry struct {
	Colls     []*mongo.Collection
	Field     string        // the date field, e.g. "createdAt"
	Index     string        // the name of the TTL index on Field
	Retention time.Duration // how long a document is kept after its Field
	// Page bounds the documents one read of Clean takes: 0 takes as many as the limit of the
	// call leaves (one read for a bounded clean-up), or 100 without a limit.
	Page int
	// Wrap, when set, turns Clean's failures into the caller's errors: reading tells a read
	// of the oldest documents from the removal of one. Unset: the driver's errors as they are.
	Wrap func(err error, reading bool) error
}

// EnsureTTL creates the TTL index on Field of every collection. It returns nil where the
// server removes the documents itself; an error where it does not, and Clean must:
// TTLRefused tells a server that refused the index (FerretDB) from one that was not reached.
func (e *Expiry) EnsureTTL(ctx context.Context) error {
	for _, c := range e.Colls {
		if err := EnsureIndexes(ctx, c, mongo.IndexModel{Keys: bson.D{{Key: e.Field, Value: 1}},
			Options: options.Index().SetName(e.Index).SetExpireAfterSeconds(int32(e.Retention / time.Second))}); err != nil {
			return err
		}
	}
	return nil
}

// TTLRefused reports whether an error of EnsureTTL is the server's answer (it has no TTL
// indexes), not a failure to reach it.
func TTLRefused(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se)
}

// Clean removes the documents whose Field is more than the retention before now, oldest
// first, at most limit per collection (limit <= 0: no bound), and returns how many it
// removed. Its cost does not grow with the documents kept: it reads the first ones with an
// empty filter and a limit, which FerretDB serves by reading only those rows (in insertion
// order), removes each old one by exact _id, and stops at the first younger one (documents
// are inserted about in the order of their Field; one inserted out of order waits for the
// younger ones before it).
func (e *Expiry) Clean(ctx context.Context, now time.Time, limit int) (int, error) {
	cutoff := now.Add(-e.Retention)
	removed := 0
	for _, c := range e.Colls {
		n, err := e.cleanOldest(ctx, c, cutoff, limit)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func (e *Expiry) cleanOldest(ctx context.Context, c *mongo.Collection, cutoff time.Time, limit int) (int, error) {
	removed := 0
	for limit <= 0 || removed < limit {
		page := e.Page
		switch {
		case page <= 0 && limit > 0:
			page = limit - removed
		case page <= 0:
			page = defaultExpiryPage
		case limit > 0:
			page = min(page, limit-removed)
		}
		rows, err := e.oldest(ctx, c, page)
		if err != nil {
			return removed, e.wrap(err, true)
		}
		for _, r := range rows {
			if !r.at.Before(cutoff) {
				return removed, nil
			}
			if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: r.id}}); err != nil {
				return removed, e.wrap(err, false)
			}
			removed++
		}
		if len(rows) < page {
			return removed, nil
		}
	}
	return removed, nil
}

type expiryRow struct {
	id bson.RawValue
	at time.Time // zero when the document has no Field
}

// oldest reads the first n documents of c (an empty filter with a limit) and their dates.
func (e *Expiry) oldest(ctx context.Context, c *mongo.Collection, n int) ([]expiryRow, error) {
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetLimit(int64(n)))
	if err != nil {
		return nil, err
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	rows := make([]expiryRow, len(docs))
	for i, d := range docs {
		rows[i].id = d.Lookup("_id")
		at, err := d.LookupErr(e.Field)
		if err != nil {
			continue // no date: as old as can be
		}
		if err := at.Unmarshal(&rows[i].at); err != nil {
			return nil, fmt.Errorf("%s of %s %s: %w", e.Field, c.Name(), rows[i].id, err)
		}
	}
	return rows, nil
}

func (e *Expiry) wrap(err error, reading bool) error {
	if e.Wrap == nil {
		return err
	}
	return e.Wrap(err, reading)
}
