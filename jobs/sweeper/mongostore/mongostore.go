// Package mongostore is the sweeper's view of the notification database: the tickets the
// notification service stores, and the delivery records only the sweeper writes.
//
// Writes on the delivery path are inserts (into unique keys) plus replacements of batch
// records, which stay few; ticket documents are only updated by Project, after delivery.
package mongostore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

// Store implements sweeper.Store.
type Store struct {
	tickets, batches, assignments, outcomes, claims *mongo.Collection
	stats                                           *nstore.Store
}

var _ sweeper.Store = (*Store)(nil)

// New returns the store on the notification database.
func New(db *mongo.Database) *Store {
	return &Store{
		tickets:     db.Collection(nstore.TicketsCollection),
		batches:     db.Collection(nstore.BatchesCollection),
		assignments: db.Collection(nstore.AssignmentsCollection),
		outcomes:    db.Collection(nstore.OutcomesCollection),
		claims:      db.Collection(nstore.ClaimsCollection),
		stats:       nstore.New(db),
	}
}

// EnsureIndexes creates the indexes of every collection the sweeper uses (the notification
// store owns them; this is the same idempotent call, so the sweeper can run first).
func (s *Store) EnsureIndexes(ctx context.Context) error { return s.stats.EnsureIndexes(ctx) }

// Backlog counts the tickets not yet delivered or failed.
func (s *Store) Backlog(ctx context.Context) (int64, error) {
	st, err := s.stats.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.ByStatus[notification.StatusPending], nil
}

// DueBatches returns open batches due at now, oldest due first.
func (s *Store) DueBatches(ctx context.Context, now time.Time, limit int) ([]notification.Batch, error) {
	cur, err := s.batches.Find(ctx, bson.M{"done": false})
	if err != nil {
		return nil, err
	}
	var all []notification.Batch
	if err := cur.All(ctx, &all); err != nil {
		return nil, err
	}
	due := all[:0]
	for _, b := range all {
		if !b.NextAttemptAt.After(now) {
			due = append(due, b)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].NextAttemptAt.Before(due[j].NextAttemptAt) })
	if len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

type claim struct {
	Key     string    `bson:"_id"`
	Batch   string    `bson:"batch"`
	Attempt int       `bson:"attempt"`
	Lease   int       `bson:"lease"`
	Holder  string    `bson:"holder"`
	Until   time.Time `bson:"until"`
	At      time.Time `bson:"at"`
}

// Claim takes lease n+1 of the batch's next attempt once lease n has expired; lease 0 if
// nobody claimed that attempt yet. Each lease is an insert into a unique key, so exactly one
// sweep wins it.
func (s *Store) Claim(ctx context.Context, b *notification.Batch, holder string, now, until time.Time) (string, bool, error) {
	attempt := b.Attempts + 1
	lease := 0
	for range 4 {
		c := claim{Key: fmt.Sprintf("%s:%d:%d", b.ID, attempt, lease), Batch: b.ID, Attempt: attempt, Lease: lease,
			Holder: holder, Until: until, At: now}
		_, err := s.claims.InsertOne(ctx, c)
		if err == nil {
			return c.Key, true, nil
		}
		if !mongox.IsDuplicateKey(err) {
			return "", false, err
		}
		var last claim
		err = s.claims.FindOne(ctx, bson.M{"batch": b.ID, "attempt": attempt},
			options.FindOne().SetSort(bson.D{{Key: "lease", Value: -1}})).Decode(&last)
		if err != nil {
			return "", false, err
		}
		if last.Until.After(now) {
			return "", false, nil // held
		}
		lease = last.Lease + 1
	}
	return "", false, nil
}

// ReleaseClaim ends a claim now (only its holder calls it).
func (s *Store) ReleaseClaim(ctx context.Context, key string, now time.Time) error {
	_, err := s.claims.UpdateOne(ctx, bson.M{"_id": key}, bson.M{"$set": bson.M{"until": now}})
	return err
}

// Candidates returns PENDING tickets after the given id, in id order.
func (s *Store) Candidates(ctx context.Context, after bson.ObjectID, limit int) ([]notification.Ticket, error) {
	filter := bson.M{"status": notification.StatusPending}
	if !after.IsZero() {
		filter["_id"] = bson.M{"$gt": after}
	}
	cur, err := s.tickets.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	out := make([]notification.Ticket, 0, limit)
	if err := cur.All(ctx, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateBatch stores the batch, then inserts one assignment per ticket (unordered, so one
// duplicate does not stop the others); a duplicate means another batch owns that ticket.
func (s *Store) CreateBatch(ctx context.Context, b *notification.Batch, tickets []notification.Ticket) ([]notification.Ticket, error) {
	if _, err := s.batches.InsertOne(ctx, b); err != nil {
		return nil, err
	}
	if len(tickets) == 0 {
		return nil, nil
	}
	docs := make([]any, len(tickets))
	for i, t := range tickets {
		docs[i] = notification.Assignment{Key: notification.AssignmentKey(t.ID, t.Generation), Ticket: t.ID,
			Generation: t.Generation, Batch: b.ID, CreatedAt: b.CreatedAt}
	}
	lost, err := duplicates(s.assignments.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)))
	if err != nil {
		return nil, err
	}
	won := make([]notification.Ticket, 0, len(tickets))
	for i, t := range tickets {
		if !lost[i] {
			won = append(won, t)
		}
	}
	return won, nil
}

// duplicates returns the indexes of an unordered insertMany that hit a unique key; any other
// failure is returned as an error.
func duplicates(_ *mongo.InsertManyResult, err error) (map[int]bool, error) {
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, err
	}
	dup := make(map[int]bool, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return nil, err
		}
		dup[we.Index] = true
	}
	return dup, nil
}

// Members returns the tickets assigned to the batch, in id order.
func (s *Store) Members(ctx context.Context, batchID string) ([]notification.Ticket, error) {
	cur, err := s.assignments.Find(ctx, bson.M{"batch": batchID})
	if err != nil {
		return nil, err
	}
	var as []notification.Assignment
	if err := cur.All(ctx, &as); err != nil {
		return nil, err
	}
	out := make([]notification.Ticket, 0, len(as))
	for _, a := range as {
		var t notification.Ticket
		if err := s.tickets.FindOne(ctx, bson.M{"_id": a.Ticket}).Decode(&t); err != nil {
			if errors.Is(err, mongo.ErrNoDocuments) {
				continue
			}
			return nil, err
		}
		t.Generation = a.Generation // the generation this batch delivers
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	return out, nil
}

// Decide inserts outcomes; duplicates (already decided) are reported, not errors.
func (s *Store) Decide(ctx context.Context, outcomes []notification.Outcome) (map[string]bool, error) {
	docs := make([]any, len(outcomes))
	for i := range outcomes {
		docs[i] = outcomes[i]
	}
	dup, err := duplicates(s.outcomes.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)))
	if err != nil {
		return nil, err
	}
	already := make(map[string]bool, len(dup))
	for i := range dup {
		already[outcomes[i].Key] = true
	}
	return already, nil
}

// SaveBatch replaces the batch record (only its holder writes it).
func (s *Store) SaveBatch(ctx context.Context, b *notification.Batch) error {
	_, err := s.batches.ReplaceOne(ctx, bson.M{"_id": b.ID}, b)
	return err
}

// DiscardBatch deletes a batch that no assignment names.
func (s *Store) DiscardBatch(ctx context.Context, id string) error {
	_, err := s.batches.DeleteOne(ctx, bson.M{"_id": id})
	return err
}

// Lookup reads a ticket generation's batch (through its assignment) and outcome.
func (s *Store) Lookup(ctx context.Context, ticket bson.ObjectID, generation int) (*notification.Batch, *notification.Outcome, error) {
	key := notification.AssignmentKey(ticket, generation)
	var o notification.Outcome
	err := s.outcomes.FindOne(ctx, bson.M{"_id": key}).Decode(&o)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var a notification.Assignment
	if err := s.assignments.FindOne(ctx, bson.M{"_id": key}).Decode(&a); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, &o, nil
		}
		return nil, nil, err
	}
	var b notification.Batch
	if err := s.batches.FindOne(ctx, bson.M{"_id": a.Batch}).Decode(&b); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, &o, nil
		}
		return nil, nil, err
	}
	return &b, &o, nil
}

// Project writes the resolved delivery state onto the ticket document, if it is still
// PENDING in that generation.
func (s *Store) Project(ctx context.Context, t *notification.Ticket) error {
	set := bson.M{"status": t.Status, "attempts": t.Attempts, "errors": t.Errors, "lastError": t.LastError,
		"nextAttemptAt": t.NextAttemptAt, "batch": t.Batch, "updatedAt": t.UpdatedAt}
	if t.SentAt != nil {
		set["sentAt"] = t.SentAt
	}
	if t.ProviderMessageID != "" {
		set["providerMessageId"] = t.ProviderMessageID
	}
	_, err := s.tickets.UpdateOne(ctx, bson.M{"_id": t.ID, "generation": t.Generation, "status": notification.StatusPending},
		bson.M{"$set": set})
	return err
}
