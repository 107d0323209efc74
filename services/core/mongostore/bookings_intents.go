package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

type intentDoc struct {
	ID        string    `bson:"_id"`
	BookingID string    `bson:"bookingId"`
	ShowID    string    `bson:"showId"`
	UserID    string    `bson:"userId"`
	Seats     []string  `bson:"seats"`
	Slots     []int     `bson:"slots"`
	ExpiresAt time.Time `bson:"expiresAt"`
	CreatedAt time.Time `bson:"createdAt"`
}

func (d *intentDoc) intent() core.Intent {
	return core.Intent{ID: d.ID, BookingID: d.BookingID, ShowID: d.ShowID, UserID: d.UserID, Seats: d.Seats,
		Slots: d.Slots, ExpiresAt: d.ExpiresAt.UTC()}
}

// DefaultIntentBucketWidth is the span of expiry times one bucket of the expiry queue holds,
// unless SetIntentBucketWidth says otherwise.
const DefaultIntentBucketWidth = 10 * time.Second

// IntentBucketWidthFor is the bucket width that suits a hold TTL: a sixtieth of it, from 1 s
// to 10 s. The expirer meets a bucket once its span has passed, so a hold's slots come back up
// to a width after it ends (its seats count as free at once), and a TTL's worth of bookings
// keeps about sixty buckets.
func IntentBucketWidthFor(ttl time.Duration) time.Duration {
	return min(max(ttl/60, time.Second), DefaultIntentBucketWidth).Truncate(time.Second)
}

// SetIntentBucketWidth sets the span of the buckets this store writes (whole seconds, at least
// one; every replica should use the same, else a paid booking's intent written by one is left
// for the expirer to meet instead of deleted by another). It returns s.
func (s *Bookings) SetIntentBucketWidth(w time.Duration) *Bookings {
	s.bucketWidth = max(w.Truncate(time.Second), time.Second)
	return s
}

// intentBucketPrefix starts the name of every bucket of the expiry queue.
const intentBucketPrefix = IntentsCollection + "_"

// IntentBucketName names the bucket holding intents that expire at t.
func (s *Bookings) IntentBucketName(t time.Time) string {
	start := t.UTC().Truncate(s.bucketWidth)
	return fmt.Sprintf("%s%d_%d", intentBucketPrefix, start.Unix(), start.Add(s.bucketWidth).Unix())
}

// parseIntentBucket reads a bucket's span from its name.
func parseIntentBucket(name string) (core.IntentBucket, bool) {
	rest, ok := strings.CutPrefix(name, intentBucketPrefix)
	if !ok {
		return core.IntentBucket{}, false
	}
	a, b, ok := strings.Cut(rest, "_")
	if !ok {
		return core.IntentBucket{}, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end <= start {
		return core.IntentBucket{}, false
	}
	return core.IntentBucket{Name: name, Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC()}, true
}

// AddIntent inserts the intent into its bucket (an intent already there is the same one:
// success).
func (s *Bookings) AddIntent(ctx context.Context, in core.Intent) error {
	d := intentDoc{ID: in.ID, BookingID: in.BookingID, ShowID: in.ShowID, UserID: in.UserID, Seats: in.Seats,
		Slots: in.Slots, ExpiresAt: in.ExpiresAt, CreatedAt: s.now().UTC()}
	if _, err := s.q(ctx).bucket(s.db, s.IntentBucketName(in.ExpiresAt)).ins.Insert(ctx, d); err != nil {
		return dbError(err, "could not record the booking")
	}
	return nil
}

// DeleteIntents deletes intents by id from the bucket of expiresAt (every intent of a booking
// expires with the booking).
func (s *Bookings) DeleteIntents(ctx context.Context, expiresAt time.Time, ids []string) error {
	anyIDs := make([]any, len(ids))
	for i, id := range ids {
		anyIDs[i] = id
	}
	if err := s.q(ctx).bucket(s.db, s.IntentBucketName(expiresAt)).del.delete(ctx, anyIDs...); err != nil {
		return dbError(err, "could not clear the expiry queue")
	}
	return nil
}

// IntentBuckets lists the buckets of the expiry queue, earliest first (the database's list of
// collection names: no document is read).
func (s *Bookings) IntentBuckets(ctx context.Context) ([]core.IntentBucket, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, dbError(err, "could not read the expiry queue")
	}
	var out []core.IntentBucket
	for _, n := range names {
		if b, ok := parseIntentBucket(n); ok {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(x, y core.IntentBucket) int { return x.Start.Compare(y.Start) })
	return out, nil
}

// BucketIntents reads every intent of a bucket.
func (s *Bookings) BucketIntents(ctx context.Context, bucket string) ([]core.Intent, error) {
	return findAll(ctx, s.db.Collection(bucket), bson.D{}, nil, "read the expiry queue", (*intentDoc).intent)
}

// DropIntentBucket drops a bucket (one that is gone already is dropped).
func (s *Bookings) DropIntentBucket(ctx context.Context, bucket string) error {
	if _, ok := parseIntentBucket(bucket); !ok {
		return errs.E(errs.Internal, "%q is not a bucket of the expiry queue", bucket)
	}
	if err := s.db.Collection(bucket).Drop(ctx); err != nil {
		return dbError(err, "could not clear the expiry queue")
	}
	s.fg.forgetBucket(bucket)
	s.bg.forgetBucket(bucket)
	return nil
}

// ForwardLegacyIntents moves up to limit intents from the queue of earlier versions into
// their buckets, and returns how many it moved: a replica of an earlier version writes its
// intents there during a rolling upgrade. When that queue is empty it costs one read of
// nothing.
func (s *Bookings) ForwardLegacyIntents(ctx context.Context, limit int) (int, error) {
	ins, err := findAll(ctx, s.intents, bson.D{}, options.Find().SetLimit(int64(limit)), "read the expiry queue", (*intentDoc).intent)
	if err != nil || len(ins) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	errsOf := make([]error, len(ins))
	for i, in := range ins {
		wg.Go(func() { errsOf[i] = s.AddIntent(ctx, in) })
	}
	wg.Wait()
	var moved []any
	for i, in := range ins {
		if errsOf[i] == nil {
			moved = append(moved, in.ID)
		}
	}
	if len(moved) > 0 {
		if err := s.q(ctx).del.legacyIntents.delete(ctx, moved...); err != nil {
			return 0, dbError(err, "could not clear the expiry queue")
		}
	}
	return len(moved), errors.Join(errsOf...)
}

// ShowIntents lists the show's intents: a scan of every bucket (and of the queue of earlier
// versions), which hold only bookings whose fate is not settled yet. Deleting a show alone
// uses it.
func (s *Bookings) ShowIntents(ctx context.Context, showID string) ([]core.Intent, error) {
	buckets, err := s.IntentBuckets(ctx)
	if err != nil {
		return nil, err
	}
	colls := []*mongo.Collection{s.intents}
	for _, b := range buckets {
		colls = append(colls, s.db.Collection(b.Name))
	}
	var out []core.Intent
	for _, c := range colls {
		got, err := findAll(ctx, c, bson.M{"showId": showID}, nil, "read the show's bookings", (*intentDoc).intent)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}
