package mongostore

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// OutboxCollection holds the emails owed until the notification service has them.
const OutboxCollection = "outbox"

// maxLastError bounds the stored reason of the last failed attempt, in bytes.
const maxLastError = 1000

// Outbox is a core.OutboxStore on MongoDB: one document per email, _id = Email.Key, so
// enqueueing a key twice keeps one (the duplicate-key error is success). The relay deletes
// a document once the notification service has the email, keeping the collection small: on
// the dev database every update or delete scans the collection, and only a filter of exactly
// {_id: v} uses an index, which is the only filter Reschedule and Delete use.
type Outbox struct {
	coll *mongo.Collection
	ins  *inserter // concurrent enqueues share one insertMany
	del  *deleter  // concurrent deletes share one deleteMany
	now  func() time.Time
}

var _ core.OutboxStore = (*Outbox)(nil)

// NewOutbox returns the outbox store on db. Call EnsureIndexes once at start.
func NewOutbox(db *mongo.Database) *Outbox {
	coll := db.Collection(OutboxCollection)
	return &Outbox{coll: coll, ins: newInserter(coll), del: newDeleter(coll), now: time.Now}
}

// EnsureIndexes creates the indexes MongoDB uses to find due emails and the oldest one
// (each its own command: FerretDB drops the connection when one command asks for several
// indexes that exist already).
func (s *Outbox) EnsureIndexes(ctx context.Context) error {
	for _, m := range []mongo.IndexModel{
		{Keys: bson.D{{Key: "nextAttemptAt", Value: 1}}, Options: options.Index().SetName("next_attempt")},
		{Keys: bson.D{{Key: "createdAt", Value: 1}}, Options: options.Index().SetName("created")},
	} {
		if err := mongox.EnsureIndexes(ctx, s.coll, m); err != nil {
			return err
		}
	}
	return nil
}

type outboxDoc struct {
	Key           string    `bson:"_id"`
	Recipients    []string  `bson:"recipients"`
	Subject       string    `bson:"subject"`
	Content       string    `bson:"content"`
	Kind          string    `bson:"kind"`
	Ref           string    `bson:"ref"`
	TraceParent   string    `bson:"traceParent,omitempty"`
	CreatedAt     time.Time `bson:"createdAt"`
	Attempts      int       `bson:"attempts"`
	NextAttemptAt time.Time `bson:"nextAttemptAt"`
	LastError     string    `bson:"lastError,omitempty"`
}

func (d *outboxDoc) entry() core.OutboxEntry {
	return core.OutboxEntry{
		Email: core.Email{Key: d.Key, Recipients: d.Recipients, Subject: d.Subject, Content: d.Content,
			Kind: d.Kind, Ref: d.Ref, TraceParent: d.TraceParent},
		CreatedAt: d.CreatedAt.UTC(), Attempts: d.Attempts, NextAttemptAt: d.NextAttemptAt.UTC(), LastError: d.LastError,
	}
}

// Enqueue inserts e, due now. It is durable when it returns nil; a key already in the
// outbox is success (the first email is kept).
func (s *Outbox) Enqueue(ctx context.Context, e core.Email) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	// A duplicate key is the same email enqueued again: one is kept, which is success.
	_, err := s.ins.insert(ctx, &outboxDoc{Key: e.Key, Recipients: e.Recipients, Subject: e.Subject,
		Content: e.Content, Kind: e.Kind, Ref: e.Ref, TraceParent: e.TraceParent,
		CreatedAt: now, NextAttemptAt: now})
	if err != nil {
		return dbError(err, "store the email in the outbox")
	}
	return nil
}

// Pending lists up to limit emails due at now, the longest due first. It reads the front of
// the outbox (an empty filter and a limit: the oldest emails, which the embedded database
// answers from its first rows alone) and keeps those due; only when that front is crowded with
// emails waiting for a retry does it look further with a filtered query (which scans on the
// embedded database: the notification service is down, or many emails keep failing). So a
// relay that keeps up costs the same however many emails pass through.
func (s *Outbox) Pending(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	frontSize := limit + 32 // room for a few emails waiting for a retry
	front, err := findAll(ctx, s.coll, bson.D{}, options.Find().SetLimit(int64(frontSize)), "list due emails", (*outboxDoc).entry)
	if err != nil {
		return nil, err
	}
	due := front[:0]
	for _, e := range front {
		if !e.NextAttemptAt.After(now) {
			due = append(due, e)
		}
	}
	slices.SortStableFunc(due, func(a, b core.OutboxEntry) int { return a.NextAttemptAt.Compare(b.NextAttemptAt) })
	if len(due) >= limit || len(front) < frontSize {
		return due[:min(limit, len(due))], nil
	}
	return findAll(ctx, s.coll, bson.M{"nextAttemptAt": bson.M{"$lte": now.UTC()}},
		options.Find().SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}}).SetLimit(int64(limit)), "list due emails",
		(*outboxDoc).entry)
}

// Reschedule records a failed or postponed attempt. A key no longer there (another relay
// delivered the email) is not an error, and nothing is created.
func (s *Outbox) Reschedule(ctx context.Context, key string, attempts int, next time.Time, lastError string) error {
	if len(lastError) > maxLastError {
		lastError = lastError[:maxLastError]
	}
	_, err := s.coll.UpdateOne(ctx, bson.M{"_id": key}, bson.M{"$set": bson.M{
		"attempts": attempts, "nextAttemptAt": next.UTC().Truncate(time.Millisecond), "lastError": lastError}})
	if err != nil {
		return dbError(err, "reschedule an email")
	}
	return nil
}

// Delete removes the email keyed key; one already gone is not an error.
func (s *Outbox) Delete(ctx context.Context, key string) error {
	if err := s.del.delete(ctx, key); err != nil {
		return dbError(err, "delete an email from the outbox")
	}
	return nil
}

// Backlog counts the emails in the outbox and finds when the oldest was enqueued.
func (s *Outbox) Backlog(ctx context.Context) (core.OutboxBacklog, error) {
	var b core.OutboxBacklog
	n, err := s.coll.CountDocuments(ctx, bson.M{})
	if err != nil {
		return b, dbError(err, "count the outbox")
	}
	b.Pending = n
	if n == 0 {
		return b, nil
	}
	var d outboxDoc
	err = s.coll.FindOne(ctx, bson.M{}, options.FindOne().SetSort(bson.D{{Key: "createdAt", Value: 1}}).
		SetProjection(bson.M{"createdAt": 1})).Decode(&d)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments): // emptied meanwhile
	case err != nil:
		return b, dbError(err, "find the oldest email in the outbox")
	default:
		b.Oldest = d.CreatedAt.UTC()
	}
	return b, nil
}
