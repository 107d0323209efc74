// Package mongostore keeps tickets in MongoDB (or the FerretDB dev database).
package mongostore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
	// Delivery records, written by the sweeper (see notification/delivery.go).
	BatchesCollection     = "delivery_batches"
	AssignmentsCollection = "delivery_assignments"
	OutcomesCollection    = "delivery_outcomes"
	ClaimsCollection      = "delivery_claims"
)

// resolveParallel bounds the concurrent point reads of one List page or Stats scan.
const resolveParallel = 8

// oldestPendingScan is how many stored-PENDING tickets Stats examines for the oldest one.
const oldestPendingScan = 50

// maxListRead caps one read of List when it reads on past tickets dropped by the filter.
const maxListRead = 1000

// Store is a notification.TicketStore on MongoDB.
//
// Reads show the truth of the delivery records: the sweeper never updates a ticket document
// while it delivers (it writes batches, assignments and outcomes, and projects an outcome onto
// the ticket later), so a PENDING document is overlaid with its generation's records by
// notification.Resolve. Those records are read by _id only (the one query the dev database
// serves from an index).
type Store struct {
	db          *mongo.Database
	tickets     *mongo.Collection
	requeues    *mongo.Collection
	batches     *mongo.Collection
	assignments *mongo.Collection
	outcomes    *mongo.Collection
	claims      *mongo.Collection
	now         func() time.Time
}

var _ notification.TicketStore = (*Store)(nil)

// New returns a store on db. Call EnsureIndexes once at start.
func New(db *mongo.Database) *Store {
	return &Store{db: db,
		tickets:     db.Collection(TicketsCollection),
		requeues:    db.Collection(RequeuesCollection),
		batches:     db.Collection(BatchesCollection),
		assignments: db.Collection(AssignmentsCollection),
		outcomes:    db.Collection(OutcomesCollection),
		claims:      db.Collection(ClaimsCollection),
		now:         func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
}

// EnsureIndexes creates the ticket indexes (the unique Idempotency-Key, sparse since most
// tickets have none, and the one behind listing by status) and the indexes MongoDB wants for
// the sweeper's queries on the delivery records: assignments by batch, outcomes by status,
// claims by (batch, attempt, lease), batches by (done, nextAttemptAt). No TTL or partial index
// (FerretDB refuses them). It is idempotent (the service and every sweeper run call it); an
// index that already exists on the same keys under another name is accepted.
//
// Each index is its own createIndexes command: FerretDB v1.24 drops the connection (a
// recovered panic) when one command asks for two or more indexes that all exist already.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	for _, ix := range []struct {
		coll  *mongo.Collection
		model mongo.IndexModel
	}{
		{s.tickets, mongo.IndexModel{Keys: bson.D{{Key: "idempotencyKey", Value: 1}},
			Options: options.Index().SetName("idempotency_key").SetUnique(true).SetSparse(true)}},
		{s.tickets, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "_id", Value: 1}},
			Options: options.Index().SetName("status_id")}},
		{s.assignments, mongo.IndexModel{Keys: bson.D{{Key: "batch", Value: 1}},
			Options: options.Index().SetName("batch")}},
		{s.outcomes, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}},
			Options: options.Index().SetName("status")}},
		{s.claims, mongo.IndexModel{Keys: bson.D{{Key: "batch", Value: 1}, {Key: "attempt", Value: 1}, {Key: "lease", Value: -1}},
			Options: options.Index().SetName("batch_attempt_lease")}},
		{s.batches, mongo.IndexModel{Keys: bson.D{{Key: "done", Value: 1}, {Key: "nextAttemptAt", Value: 1}},
			Options: options.Index().SetName("done_next_attempt")}},
	} {
		err := mongox.EnsureIndexes(ctx, ix.coll, ix.model)
		if err != nil && !(ix.coll != s.tickets && isIndexOptionsConflict(err)) {
			return err
		}
	}
	return nil
}

// isIndexOptionsConflict reports the server's "an index on these keys exists with another
// name/options" (code 85): the keys are indexed, which is all a query index is for.
func isIndexOptionsConflict(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(85)
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
	if err := s.resolve(ctx, &prev); err != nil {
		return nil, false, err
	}
	return &prev, false, nil
}

// findByID decodes the document of coll with _id id into v; found is false if there is none.
func findByID(ctx context.Context, coll *mongo.Collection, id any, v any) (found bool, err error) {
	err = coll.FindOne(ctx, bson.M{"_id": id}).Decode(v)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, err
}

// records reads the delivery records of a ticket generation by _id: its assignment's batch
// and its outcome, each nil when missing. The outcome is read alongside the assignment and
// then the batch it names.
func (s *Store) records(ctx context.Context, id bson.ObjectID, gen int) (*notification.Batch, *notification.Outcome, error) {
	key := notification.AssignmentKey(id, gen)
	var (
		batch   *notification.Batch
		outcome *notification.Outcome
		oErr    error
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		var o notification.Outcome
		found, err := findByID(ctx, s.outcomes, key, &o)
		if found {
			outcome = &o
		}
		oErr = err
	})
	var a notification.Assignment
	found, err := findByID(ctx, s.assignments, key, &a)
	if err == nil && found && a.Batch != "" {
		var b notification.Batch
		if found, err = findByID(ctx, s.batches, a.Batch, &b); found {
			batch = &b
		}
	}
	wg.Wait()
	if err = errors.Join(err, oErr); err != nil {
		return nil, nil, unavailable(err, "read the ticket's delivery records")
	}
	return batch, outcome, nil
}

// resolve overlays a PENDING ticket with its delivery records (see notification.Resolve); a
// projected ticket (SUCCESS or FAILED) is left as it is.
func (s *Store) resolve(ctx context.Context, t *notification.Ticket) error {
	if t.Status != notification.StatusPending {
		return nil
	}
	b, o, err := s.records(ctx, t.ID, t.Generation)
	if err != nil {
		return err
	}
	*t = notification.Resolve(*t, b, o)
	return nil
}

// resolveAll resolves ts in place, at most resolveParallel tickets at a time.
func (s *Store) resolveAll(ctx context.Context, ts []notification.Ticket) error {
	var todo []int
	for i := range ts {
		if ts[i].Status == notification.StatusPending {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for range min(resolveParallel, len(todo)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(todo) || ctx.Err() != nil {
					return
				}
				if err := s.resolve(ctx, &ts[todo[k]]); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil { // the caller's context ended: some tickets are unresolved
		return unavailable(err, "read the tickets' delivery records")
	}
	return nil
}

// Get returns one ticket as its delivery records say it is now: a PENDING document is
// overlaid with its generation's assignment, batch and outcome (point reads by _id).
func (s *Store) Get(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error) {
	var t notification.Ticket
	found, err := findByID(ctx, s.tickets, id, &t)
	if err != nil {
		return nil, unavailable(err, "read the ticket")
	}
	if !found {
		return nil, errs.E(errs.NotFound, "ticket %s not found", id.Hex())
	}
	if err := s.resolve(ctx, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListPage reads one page of f.Limit stored tickets, newest first (status filter on the
// stored status, then f.Before, f.Skip), resolves them as Get does, and drops those whose
// resolved status no longer matches f.Status. The page may therefore come back short, even
// empty, before the end: next is where the following page starts (the id of the last stored
// ticket read, for ListFilter.Before), or the zero id when the tickets have run out.
//
// The status filter applies to the stored status, which lags the delivery records until
// the sweeper projects an outcome: a stored-PENDING ticket whose outcome is decided is
// dropped from a PENDING list, and shows in a SUCCESS or FAILED list only once projected.
func (s *Store) ListPage(ctx context.Context, f notification.ListFilter) (tickets []notification.Ticket, next bson.ObjectID, err error) {
	filter := bson.M{}
	if f.Status != "" {
		filter["status"] = f.Status
	}
	if !f.Before.IsZero() {
		filter["_id"] = bson.M{"$lt": f.Before}
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}})
	if f.Limit > 0 {
		opts.SetLimit(int64(f.Limit))
	}
	if f.Skip > 0 {
		opts.SetSkip(int64(f.Skip))
	}
	cur, err := s.tickets.Find(ctx, filter, opts)
	if err != nil {
		return nil, next, unavailable(err, "list tickets")
	}
	raw := make([]notification.Ticket, 0, max(f.Limit, 0))
	if err := cur.All(ctx, &raw); err != nil {
		return nil, next, unavailable(err, "list tickets")
	}
	if f.Limit > 0 && len(raw) == f.Limit {
		next = raw[len(raw)-1].ID
	}
	if err := s.resolveAll(ctx, raw); err != nil {
		return nil, bson.ObjectID{}, err
	}
	if f.Status == "" {
		return raw, next, nil
	}
	tickets = raw[:0]
	for _, t := range raw {
		if t.Status == f.Status {
			tickets = append(tickets, t)
		}
	}
	return tickets, next, nil
}

// List returns tickets newest first, resolved and filtered as ListPage does. Unlike
// ListPage it reads on past the tickets the status filter dropped until it has f.Limit
// tickets or the tickets run out, so a page is short only at the end and the id of the last
// ticket of a full page is where the next page starts (the X-Next-Cursor rule of the API).
// f.Skip counts stored tickets matching the stored status. Each further read asks for more
// tickets (on the dev database every such read is a scan of the collection).
func (s *Store) List(ctx context.Context, f notification.ListFilter) ([]notification.Ticket, error) {
	want := f.Limit
	if want <= 0 {
		page, _, err := s.ListPage(ctx, f)
		return page, err
	}
	out := make([]notification.Ticket, 0, want)
	for {
		page, next, err := s.ListPage(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(out) >= want {
			return out[:want], nil
		}
		if next.IsZero() {
			return out, nil
		}
		f.Before, f.Skip = next, 0
		f.Limit = max(want-len(out), min(2*f.Limit, maxListRead))
	}
}

// Requeue puts a FAILED ticket back to PENDING in a new generation. The status decided on
// is the resolved one: a FAILED outcome counts even before the sweeper projected it. The
// decision is an insert into a unique key (ticket, generation), so two operators cannot both
// re-queue it. The ticket then gets the resolved history (attempts, errors including the
// failed generation's, lastError) in one update.
func (s *Store) Requeue(ctx context.Context, id bson.ObjectID) (*notification.Ticket, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != notification.StatusFailed {
		return nil, errs.E(errs.Conflict, "only a FAILED ticket can be re-queued; this one is %s", t.Status)
	}
	now := s.now()
	_, err = s.requeues.InsertOne(ctx, bson.M{"_id": notification.AssignmentKey(id, t.Generation), "at": now})
	if mongox.IsDuplicateKey(err) {
		// The re-queue of this generation was decided by someone else. If its holder died
		// (or lost the database) before moving the ticket on, the ticket would stay FAILED
		// with every later retry refused: finish the decided move (a no-op once done).
		if err := s.applyRequeue(ctx, t, now); err != nil {
			return nil, err
		}
		return nil, errs.E(errs.Conflict, "this ticket was already re-queued")
	}
	if err != nil {
		return nil, unavailable(err, "re-queue the ticket")
	}
	if err := s.applyRequeue(ctx, t, now); err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// applyRequeue moves the resolved FAILED ticket t (of generation g) to PENDING in generation
// g+1, writing its resolved history. The filter {_id, generation: g} matches nothing once
// done, and every field is set to an absolute value, so running it twice (or two callers
// racing on a database whose updates are not atomic) is harmless. It also wins over a late
// projection of generation g, whose filter names g.
func (s *Store) applyRequeue(ctx context.Context, t *notification.Ticket, now time.Time) error {
	history := t.Errors
	if history == nil {
		history = []notification.AttemptError{}
	}
	set := bson.M{
		"status": notification.StatusPending, "generation": t.Generation + 1, "batch": "",
		"nextAttemptAt": now, "updatedAt": now, "attempts": t.Attempts, "errors": history,
	}
	unset := bson.M{"sentAt": "", "providerMessageId": ""}
	if t.LastError != "" {
		set["lastError"] = t.LastError
	} else {
		unset["lastError"] = ""
	}
	_, err := s.tickets.UpdateOne(ctx, bson.M{"_id": t.ID, "generation": t.Generation},
		bson.M{"$set": set, "$unset": unset})
	if err != nil {
		return unavailable(err, "re-queue the ticket")
	}
	return nil
}

// Stats counts tickets by status from the delivery records, so the figures are exact while
// projection lags: SUCCESS is the number of SUCCESS outcomes, FAILED the number of FAILED
// outcomes minus the re-queues (each re-queue moves one FAILED generation back to PENDING),
// PENDING the remaining tickets. The records are counted before the tickets (an outcome or
// a re-queue only exists for a ticket that does), so a write racing with Stats cannot drive
// a figure below zero; a ticket marked SUCCESS or FAILED without an outcome record (data
// older than the delivery records) counts as PENDING.
//
// OldestPending is the creation time of the oldest stored-PENDING ticket (in _id order)
// without an outcome, among the oldest 50 stored-PENDING tickets. If all 50 have an outcome
// (projection lags far behind), the 50th one's creation time is used: the oldest pending
// ticket is younger, so the age derived from it is an upper bound.
func (s *Store) Stats(ctx context.Context) (notification.Stats, error) {
	st := notification.Stats{ByStatus: map[notification.Status]int64{}}
	cur, err := s.outcomes.Aggregate(ctx, mongo.Pipeline{
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
	var success, failed int64
	for _, r := range rows {
		switch notification.Status(r.ID) {
		case notification.StatusSuccess:
			success = r.N
		case notification.StatusFailed:
			failed = r.N
		}
	}
	requeued, err := s.requeues.CountDocuments(ctx, bson.D{})
	if err != nil {
		return st, err
	}
	total, err := s.tickets.CountDocuments(ctx, bson.D{})
	if err != nil {
		return st, err
	}
	failed = max(failed-requeued, 0)
	pending := max(total-success-failed, 0)
	st.ByStatus[notification.StatusSuccess] = success
	st.ByStatus[notification.StatusFailed] = failed
	st.ByStatus[notification.StatusPending] = pending
	if pending > 0 {
		if st.OldestPending, err = s.oldestPending(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

// oldestPending implements Stats.OldestPending.
func (s *Store) oldestPending(ctx context.Context) (*time.Time, error) {
	cur, err := s.tickets.Find(ctx, bson.M{"status": notification.StatusPending},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(oldestPendingScan).
			SetProjection(bson.M{"_id": 1, "generation": 1, "createdAt": 1}))
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID         bson.ObjectID `bson:"_id"`
		Generation int           `bson:"generation"`
		CreatedAt  time.Time     `bson:"createdAt"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, err
	}
	// Point-read the outcomes a chunk at a time, oldest first; stop at the first chunk that
	// holds a ticket without one.
	for lo := 0; lo < len(rows); lo += resolveParallel {
		chunk := rows[lo:min(lo+resolveParallel, len(rows))]
		decided := make([]bool, len(chunk))
		errc := make([]error, len(chunk))
		var wg sync.WaitGroup
		for i, r := range chunk {
			wg.Go(func() {
				var o struct{}
				decided[i], errc[i] = findByID(ctx, s.outcomes, notification.AssignmentKey(r.ID, r.Generation), &o)
			})
		}
		wg.Wait()
		if err := errors.Join(errc...); err != nil {
			return nil, err
		}
		for i, r := range chunk {
			if !decided[i] {
				return &r.CreatedAt, nil
			}
		}
	}
	if len(rows) == oldestPendingScan {
		return &rows[len(rows)-1].CreatedAt, nil // an upper bound of the age: see Stats
	}
	return nil, nil
}
