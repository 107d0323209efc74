// Package mongostore keeps tickets in MongoDB (or the FerretDB dev database).
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// Collection names. The sweeper works on the same tickets collection.
const (
	TicketsCollection  = "tickets"
	RequeuesCollection = "ticket_requeues"
)

// Store is a notification.TicketStore on MongoDB.
type Store struct {
	db       *mongo.Database
	tickets  *mongo.Collection
	requeues *mongo.Collection
	now      func() time.Time
}

var _ notification.TicketStore = (*Store)(nil)

// New returns a store on db. Call EnsureIndexes once at start.
func New(db *mongo.Database) *Store {
	return &Store{db: db, tickets: db.Collection(TicketsCollection), requeues: db.Collection(RequeuesCollection),
		now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
}

// EnsureIndexes creates the ticket indexes: the unique Idempotency-Key (sparse: most tickets
// have none) and the ones behind listing by status and the sweeper's page query.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	return mongox.EnsureIndexes(ctx, s.tickets,
		mongo.IndexModel{Keys: bson.D{{Key: "idempotencyKey", Value: 1}},
			Options: options.Index().SetName("idempotency_key").SetUnique(true).SetSparse(true)},
		mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "batch", Value: 1}, {Key: "_id", Value: 1}},
			Options: options.Index().SetName("status_batch_id")},
	)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}

func unavailable(err error, what string) error {
	if errors.Is(err, context.Canceled) {
		return errs.Wrap(errs.Unavailable, err, "request cancelled")
	}
	return errs.Wrap(errs.Unavailable, err, "database unavailable: could not "+what)
}

// Create inserts t (one round trip). A repeated Idempotency-Key returns the first ticket.
func (s *Store) Create(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error) {
	now := s.now()
	t.ID = bson.NewObjectID()
	t.Status = notification.StatusPending
	t.CreatedAt, t.UpdatedAt, t.NextAttemptAt = now, now, now
	t.Errors = []notification.AttemptError{}
	_, err := s.tickets.InsertOne(ctx, t)
	if err == nil {
		return t, true, nil
	}
	if !mongox.IsDuplicateKey(err) || t.IdempotencyKey == "" {
		return nil, false, unavailable(err, "store the ticket")
	}
	var prev notification.Ticket
	if err := s.tickets.FindOne(ctx, bson.M{"idempotencyKey": t.IdempotencyKey}).Decode(&prev); err != nil {
		return nil, false, unavailable(err, "read the ticket of this Idempotency-Key")
	}
	if prev.RequestHash != t.RequestHash {
		return nil, false, errs.E(errs.Unprocessable, "Idempotency-Key was already used with a different request")
	}
	return &prev, false, nil
}

// Get returns one ticket.
func (s *Store) Get(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error) {
	var t notification.Ticket
	err := s.tickets.FindOne(ctx, bson.M{"_id": id}).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "ticket %s not found", id.Hex())
	}
	if err != nil {
		return nil, unavailable(err, "read the ticket")
	}
	return &t, nil
}

// List returns tickets newest first.
func (s *Store) List(ctx context.Context, f notification.ListFilter) ([]notification.Ticket, error) {
	filter := bson.M{}
	if f.Status != "" {
		filter["status"] = f.Status
	}
	if !f.Before.IsZero() {
		filter["_id"] = bson.M{"$lt": f.Before}
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(f.Limit))
	if f.Skip > 0 {
		opts.SetSkip(int64(f.Skip))
	}
	cur, err := s.tickets.Find(ctx, filter, opts)
	if err != nil {
		return nil, unavailable(err, "list tickets")
	}
	out := make([]notification.Ticket, 0, f.Limit)
	if err := cur.All(ctx, &out); err != nil {
		return nil, unavailable(err, "list tickets")
	}
	return out, nil
}

// Requeue puts a FAILED ticket back to PENDING in a new generation. The decision is an
// insert into a unique key (ticket, generation), so two operators cannot both re-queue it.
func (s *Store) Requeue(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != notification.StatusFailed {
		return nil, errs.E(errs.Conflict, "only a FAILED ticket can be re-queued; this one is %s", t.Status)
	}
	now := s.now()
	_, err = s.requeues.InsertOne(ctx, bson.M{"_id": fmt.Sprintf("%s:%d", id.Hex(), t.Generation), "at": now})
	if mongox.IsDuplicateKey(err) {
		// The re-queue of this generation was decided by someone else. If its holder died
		// (or lost the database) before moving the ticket on, the ticket would stay FAILED
		// with every later retry refused: finish the decided move (a no-op once done).
		if err := s.applyRequeue(ctx, id, t.Generation, now); err != nil {
			return nil, err
		}
		return nil, errs.E(errs.Conflict, "this ticket was already re-queued")
	}
	if err != nil {
		return nil, unavailable(err, "re-queue the ticket")
	}
	if err := s.applyRequeue(ctx, id, t.Generation, now); err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// applyRequeue moves a FAILED ticket of generation gen to PENDING in generation gen+1. It
// matches nothing once done, so running it twice is harmless.
func (s *Store) applyRequeue(ctx context.Context, id bson.ObjectID, gen int, now time.Time) error {
	_, err := s.tickets.UpdateOne(ctx,
		bson.M{"_id": id, "generation": gen, "status": notification.StatusFailed},
		bson.M{"$set": bson.M{
			"status": notification.StatusPending, "generation": gen + 1, "batch": "",
			"nextAttemptAt": now, "updatedAt": now,
		}})
	if err != nil {
		return unavailable(err, "re-queue the ticket")
	}
	return nil
}

// Stats counts tickets by status and finds the oldest pending one.
func (s *Store) Stats(ctx context.Context) (notification.Stats, error) {
	st := notification.Stats{ByStatus: map[notification.Status]int64{}}
	cur, err := s.tickets.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$status"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return st, err
	}
	var rows []struct {
		ID string `bson:"_id"`
		N  int64  `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return st, err
	}
	for _, r := range rows {
		st.ByStatus[notification.Status(r.ID)] = r.N
	}
	if st.ByStatus[notification.StatusPending] > 0 {
		var oldest struct {
			CreatedAt time.Time `bson:"createdAt"`
		}
		err := s.tickets.FindOne(ctx, bson.M{"status": notification.StatusPending},
			options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.M{"createdAt": 1})).Decode(&oldest)
		if err == nil {
			st.OldestPending = &oldest.CreatedAt
		} else if !errors.Is(err, mongo.ErrNoDocuments) {
			return st, err
		}
	}
	return st, nil
}
