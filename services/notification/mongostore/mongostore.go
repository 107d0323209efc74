// Package mongostore keeps tickets and their delivery records in MongoDB (or the FerretDB dev
// database). The notification service uses Store as its notification.TicketStore; the sweeper
// uses the delivery primitives of delivery.go on the same collections.
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

// Collection names.
const (
	TicketsCollection = "tickets"
	// RequeuesCollection holds the generation records (notification.GenerationRecord).
	RequeuesCollection    = "ticket_requeues"
	IdempotencyCollection = "ticket_idempotency"
	// Delivery records (see notification/delivery.go). The queue is notification.QueueShards
	// collections, QueueShardCollection(i).
	QueueCollection          = "delivery_queue"
	BatchesCollection        = "delivery_batches"
	OpenBatchesCollection    = "delivery_open_batches"
	AssignmentsCollection    = "delivery_assignments"
	OutcomesCollection       = "delivery_outcomes"
	ClaimsCollection         = "delivery_claims"
	ProjectionCollection     = "delivery_projection"
	TallyCollection          = "delivery_tally"
	TallySnapshotsCollection = "delivery_tally_snapshots"
)

// resolveParallel bounds the concurrent point reads of one call (pointReads, resolveAll).
const resolveParallel = 8

// maxListRead caps one read of listScan when it reads on past tickets dropped by the filter.
const maxListRead = 1000

// maxOpenBatches bounds one read of the open batches (each is up to 100 pending tickets).
const maxOpenBatches = 20000

// Store is a notification.TicketStore on MongoDB.
//
// Reads show the truth of the delivery records: a ticket document is written on create and
// then only by projection, so a stored document is overlaid with its generations' records by
// notification.Resolve. Records are read by _id only.
type Store struct {
	db          *mongo.Database
	tickets     *mongo.Collection
	requeues    *mongo.Collection
	idem        *mongo.Collection
	queues      [notification.QueueShards]*mongo.Collection
	batches     *mongo.Collection
	open        *mongo.Collection
	assignments *mongo.Collection
	outcomes    *mongo.Collection
	claims      *mongo.Collection
	projection  *mongo.Collection
	tally       *mongo.Collection
	snapshots   *mongo.Collection

	// Now is the clock (milliseconds, UTC); tests may replace it before use.
	Now func() time.Time

	// Coalesced inserts of concurrent creates (see mongox.Inserter); queueIns serves every shard.
	ticketIns, idemIns, queueIns *mongox.Inserter

	idemExpiry mongox.Expiry // of the Idempotency-Key records (idempotency.go)

	// The list indexes (listindex.go), and whether they hold every ticket (list.go).
	lists    [numLists]*listIndex
	listDone atomic.Bool

	tallyHead atomic.Int64 // a lower bound of the first free tally sequence number
	snapHead  atomic.Int64 // a lower bound of the first free snapshot sequence number
	ttl       atomic.Bool  // the server expires Idempotency-Key records (a TTL index)
}

var _ notification.TicketStore = (*Store)(nil)

// New returns a store on db. Call EnsureIndexes once at start.
func New(db *mongo.Database) *Store {
	s := &Store{db: db,
		tickets:     db.Collection(TicketsCollection),
		requeues:    db.Collection(RequeuesCollection),
		idem:        db.Collection(IdempotencyCollection),
		batches:     db.Collection(BatchesCollection),
		open:        db.Collection(OpenBatchesCollection),
		assignments: db.Collection(AssignmentsCollection),
		outcomes:    db.Collection(OutcomesCollection),
		claims:      db.Collection(ClaimsCollection),
		projection:  db.Collection(ProjectionCollection),
		tally:       db.Collection(TallyCollection),
		snapshots:   db.Collection(TallySnapshotsCollection),
		Now:         func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
	for i := range s.queues {
		s.queues[i] = db.Collection(QueueShardCollection(i))
	}
	for i, name := range listCollections {
		s.lists[i] = newListIndex(db.Collection(name))
	}
	s.ticketIns, s.idemIns, s.queueIns = mongox.NewInserter(s.tickets), mongox.NewInserter(s.idem), mongox.NewInserter(s.queues[:]...)
	s.idemExpiry = idemExpiry(s.idem)
	return s
}

func (s *Store) now() time.Time { return s.Now().UTC().Truncate(time.Millisecond) }

// EnsureIndexes creates the indexes: the tally's and the list indexes' unique keys (each
// change of the figures, each list entry is recorded once), the one behind listing tickets
// by status on MongoDB until the list indexes are complete, and, where the server
// supports TTL indexes (MongoDB; FerretDB refuses them), the expiry of Idempotency-Key records
// after IdempotencyRetention (elsewhere CleanupIdempotency removes them). Every other record is
// read by _id. It is idempotent (the service and every sweep call it); an index that already
// exists on the same keys under another name is accepted.
//
// Each index is its own createIndexes command: FerretDB v1.24 drops the connection (a
// recovered panic) when one command asks for two or more indexes that all exist already.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	for _, ix := range []struct {
		coll  *mongo.Collection
		model mongo.IndexModel
	}{
		{s.tally, mongo.IndexModel{Keys: bson.D{{Key: "key", Value: 1}},
			Options: options.Index().SetName("key").SetUnique(true)}},
		{s.tickets, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "_id", Value: 1}},
			Options: options.Index().SetName("status_id")}},
	} {
		err := mongox.EnsureIndexes(ctx, ix.coll, ix.model)
		if err != nil && !(ix.coll != s.tally && isIndexOptionsConflict(err)) {
			return err
		}
	}
	if err := s.ensureListIndexes(ctx); err != nil {
		return err
	}
	if err := s.ensureIdempotencyTTL(ctx); err != nil {
		return err
	}
	// The queue shards exist from the start, so that no create pays for making one.
	for i := range s.queues {
		err := s.db.CreateCollection(ctx, QueueShardCollection(i))
		var se mongo.ServerError
		if err != nil && !(errors.As(err, &se) && se.HasErrorCode(48)) { // 48: NamespaceExists
			return err
		}
	}
	if err := s.markFreshInstall(ctx); err != nil {
		return err
	}
	return s.markFreshList(ctx)
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

// createTimeout bounds the writes of one create, well under IdempotencyLease: a create that
// has not landed by then never will, so a retry may take its Idempotency-Key over.
const createTimeout = 20 * time.Second

// Create stores a new PENDING ticket and queues it for delivery. With an Idempotency-Key it
// first claims the key (see idempotency.go): a repeated key returns the first ticket.
func (s *Store) Create(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	key, hash := t.IdempotencyKey, t.RequestHash
	if key != "" {
		return s.createIdempotent(ctx, t, key, hash)
	}
	t.ID = notification.NewID()
	if err := s.insertTicket(ctx, t, s.now()); err != nil {
		return nil, false, err
	}
	return t, true, nil
}

// listedTicket is a ticket document as a create stores it: with the number of its entry in
// the index of all tickets (absent from tickets earlier versions stored).
type listedTicket struct {
	notification.Ticket `bson:",inline"`
	ListSeq             *int64 `bson:"listSeq,omitempty"`
}

// insertTicket stores t (its ID set) as a new PENDING ticket: its entry in the index of all
// tickets first (so that a stored ticket is always listed; an entry whose ticket insert
// failed is skipped by readers), then the ticket, then its queue entry. Should the last insert
// fail, the ticket is stored but not queued: a replay of its Idempotency-Key queues it
// (ensureQueued); a request without a key was answered 503 and is not sent. Each insert is
// coalesced with those of concurrent creates.
func (s *Store) insertTicket(ctx context.Context, t *notification.Ticket, now time.Time) error {
	t.Status = notification.StatusPending
	t.CreatedAt, t.UpdatedAt, t.NextAttemptAt = now, now, now
	t.Errors = []notification.AttemptError{}
	nums, err := s.lists[listAll].ins.append(ctx, listEntry{Key: t.ID.Hex(), Ticket: t.ID, At: now})
	if err != nil {
		return unavailable(err, "list the ticket")
	}
	doc := listedTicket{Ticket: *t}
	if nums[0] != alreadyListed {
		doc.ListSeq = &nums[0]
	}
	if err := s.ticketIns.InsertOne(ctx, doc); err != nil {
		return unavailable(err, "store the ticket")
	}
	if err := s.queueIns.InsertOneInto(ctx, notification.QueueShard(t.ID), notification.NewQueueEntry(t, 0, now)); err != nil && !mongox.IsDuplicateKey(err) {
		return unavailable(err, "queue the ticket")
	}
	return nil
}

// findByID decodes the document of coll with _id id into v; found is false if there is none.
func findByID(ctx context.Context, coll *mongo.Collection, id any, v any) (found bool, err error) {
	err = coll.FindOne(ctx, bson.M{"_id": id}).Decode(v)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, err
}

// exists reports whether coll has a document with _id id.
func exists(ctx context.Context, coll *mongo.Collection, id any) (bool, error) {
	var v struct{}
	return findByID(ctx, coll, id, &v)
}

// records reads the delivery records of a ticket generation by _id: its assignment's batch
// and its outcome, each nil when missing.
func (s *Store) records(ctx context.Context, id notification.ID, gen int) (notification.GenerationRecords, error) {
	key := notification.AssignmentKey(id, gen)
	g := notification.GenerationRecords{Generation: gen}
	var (
		oErr error
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		var o notification.Outcome
		found, err := findByID(ctx, s.outcomes, key, &o)
		if found {
			g.Outcome = &o
		}
		oErr = err
	})
	var a notification.Assignment
	found, err := findByID(ctx, s.assignments, key, &a)
	if err == nil && found && a.Batch != "" {
		var b notification.Batch
		if found, err = findByID(ctx, s.batches, a.Batch, &b); found {
			g.Batch = &b
		}
	}
	wg.Wait()
	if err = errors.Join(err, oErr); err != nil {
		return g, unavailable(err, "read the ticket's delivery records")
	}
	return g, nil
}

// resolve overlays a stored ticket with its delivery records (see notification.Resolve). A
// SUCCESS document is final. Otherwise the records of the stored generation are read, and
// while the last generation read is FAILED, whether it was re-queued: the current generation
// is decided by the generation records, whatever the document says.
func (s *Store) resolve(ctx context.Context, t *notification.Ticket) error {
	if t.Status == notification.StatusSuccess {
		return nil
	}
	g := t.Generation
	var gens []notification.GenerationRecords
	last := notification.StatusFailed // a FAILED document is a projection of generation g
	if t.Status == notification.StatusPending {
		r, err := s.records(ctx, t.ID, g)
		if err != nil {
			return err
		}
		gens = append(gens, r)
		last = notification.StatusPending
		if r.Outcome != nil {
			last = r.Outcome.Status
		}
	} else {
		gens = append(gens, notification.GenerationRecords{Generation: g})
	}
	for last == notification.StatusFailed {
		var rec notification.GenerationRecord
		found, err := findByID(ctx, s.requeues, notification.AssignmentKey(t.ID, g), &rec)
		if err != nil {
			return unavailable(err, "read the ticket's generations")
		}
		if !found {
			break
		}
		g++
		r, err := s.records(ctx, t.ID, g)
		if err != nil {
			return err
		}
		r.Since = rec.At
		gens = append(gens, r)
		last = notification.StatusPending
		if r.Outcome != nil {
			last = r.Outcome.Status
		}
	}
	*t = notification.Resolve(*t, gens...)
	return nil
}

// resolveAll resolves ts in place, at most resolveParallel tickets at a time.
func (s *Store) resolveAll(ctx context.Context, ts []notification.Ticket) error {
	var todo []int
	for i := range ts {
		if ts[i].Status != notification.StatusSuccess {
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

// stored reads a ticket document as stored (nil when there is none).
func (s *Store) stored(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	var t notification.Ticket
	found, err := findByID(ctx, s.tickets, id, &t)
	if err != nil {
		return nil, unavailable(err, "read the ticket")
	}
	if !found {
		return nil, nil
	}
	return &t, nil
}

// Get returns one ticket as its delivery records say it is now (point reads by _id).
func (s *Store) Get(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	t, err := s.stored(ctx, id)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, errs.E(errs.NotFound, "ticket %s not found", id.Hex())
	}
	if err := s.resolve(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// Requeue puts a FAILED ticket back to PENDING in a new generation. The status decided on
// is the resolved one: a FAILED outcome counts even before the sweeper projected it. The
// decision is the insert of the generation record (ticket, generation): two operators cannot
// both re-queue one generation, and no write to the ticket document can undo it. The next
// generation's queue entry and its entry in the index of re-queued tickets are inserted
// before the decision (so a decided re-queue is always queued and listed) and the queue entry
// again after it; then the figures are told, and the ticket document gets the new generation
// (projection, repaired if a late projection of the old one lands after).
func (s *Store) Requeue(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	return s.requeue(ctx, id, anyGeneration)
}

// anyGeneration asks requeue for the ticket's current generation, whichever it is.
const anyGeneration = -1

// requeue is Requeue of generation gen of the ticket (anyGeneration: its current one): a
// Conflict when the ticket is no longer in generation gen (it was re-queued since).
func (s *Store) requeue(ctx context.Context, id notification.ID, gen int) (*notification.Ticket, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != notification.StatusFailed {
		if t.Status == notification.StatusPending && t.Generation > 0 {
			// A re-queue decided by someone else: finish what its holder may not have.
			if err := s.finishRequeue(ctx, t, t.Generation-1); err != nil {
				return nil, err
			}
		}
		return nil, errs.E(errs.Conflict, "only a FAILED ticket can be re-queued; this one is %s", t.Status).Because(notification.ReasonNotFailed)
	}
	if gen != anyGeneration && t.Generation != gen {
		return nil, errs.E(errs.Conflict, "this ticket was already re-queued")
	}
	now := s.now()
	g := t.Generation
	entry := notification.NewQueueEntry(t, g+1, now)
	if err := s.Enqueue(ctx, entry); err != nil {
		return nil, unavailable(err, "re-queue the ticket")
	}
	if _, err := s.lists[listRequeued].ins.append(ctx, listEntry{Key: entry.Key, Ticket: id, Gen: g + 1, At: now}); err != nil {
		return nil, unavailable(err, "list the re-queued ticket")
	}
	_, err = s.requeues.InsertOne(ctx, notification.GenerationRecord{Key: notification.AssignmentKey(id, g), Ticket: id,
		Generation: g, At: now})
	if mongox.IsDuplicateKey(err) {
		if t, err := s.Get(ctx, id); err == nil && t.Generation == g+1 {
			if err := s.finishRequeue(ctx, t, g); err != nil {
				return nil, err
			}
		}
		return nil, errs.E(errs.Conflict, "this ticket was already re-queued").Because(notification.ReasonAlreadyRequeued)
	}
	if err != nil {
		return nil, unavailable(err, "re-queue the ticket")
	}
	if t, err = s.Get(ctx, id); err != nil {
		return nil, err
	}
	if err := s.finishRequeue(ctx, t, g); err != nil {
		return nil, err
	}
	return t, nil
}

// finishRequeue completes the decided re-queue of generation g of the resolved ticket t (now
// in generation g+1): its queue entry (unless the generation is assigned already), its tally,
// and the projection. Each step is idempotent.
func (s *Store) finishRequeue(ctx context.Context, t *notification.Ticket, g int) error {
	if t.Batch == "" && t.Status == notification.StatusPending {
		assigned, err := exists(ctx, s.assignments, notification.AssignmentKey(t.ID, g+1))
		if err != nil {
			return unavailable(err, "re-queue the ticket")
		}
		if !assigned {
			if err := s.Enqueue(ctx, notification.NewQueueEntry(t, g+1, t.NextAttemptAt)); err != nil {
				return unavailable(err, "re-queue the ticket")
			}
		}
	}
	if err := s.AppendTally(ctx, notification.RequeueTallyKey(t.ID, g), notification.Tally{Requeued: 1}); err != nil {
		return unavailable(err, "count the re-queue")
	}
	if err := s.Project(ctx, t); err != nil {
		return unavailable(err, "write the re-queued ticket")
	}
	return nil
}

// Project writes a resolved ticket onto its stored document (by exact _id), which spares
// readers the records' reads (and is what lists select on until the list indexes are
// complete, see listScan): readers never depend on it. On a database whose updates are not atomic a
// late writer can put an older state over a newer one, so every write is checked afterwards
// against the one record that could have moved the ticket past what was written (a FAILED
// generation's re-queue, a PENDING generation's outcome; SUCCESS is final): if it exists,
// the ticket is resolved afresh and written again. Whoever writes last therefore leaves the
// truth (as of its check) in the document.
func (s *Store) Project(ctx context.Context, t *notification.Ticket) error {
	for range 4 {
		set := bson.M{"status": t.Status, "generation": t.Generation, "attempts": t.Attempts, "errors": t.Errors,
			"lastError": t.LastError, "nextAttemptAt": t.NextAttemptAt, "batch": t.Batch, "updatedAt": t.UpdatedAt}
		unset := bson.M{}
		if t.SentAt != nil {
			set["sentAt"] = t.SentAt
		} else {
			unset["sentAt"] = ""
		}
		if t.ProviderMessageID != "" {
			set["providerMessageId"] = t.ProviderMessageID
		} else {
			unset["providerMessageId"] = ""
		}
		if t.Errors == nil {
			set["errors"] = []notification.AttemptError{}
		}
		update := bson.M{"$set": set}
		if len(unset) > 0 {
			update["$unset"] = unset
		}
		if _, err := s.tickets.UpdateOne(ctx, bson.M{"_id": t.ID}, update); err != nil {
			return err
		}
		var moved bool
		var err error
		switch t.Status {
		case notification.StatusFailed:
			moved, err = exists(ctx, s.requeues, notification.AssignmentKey(t.ID, t.Generation))
		case notification.StatusPending:
			moved, err = exists(ctx, s.outcomes, notification.AssignmentKey(t.ID, t.Generation))
		}
		if err != nil || !moved {
			return err
		}
		fresh, err := s.Get(ctx, t.ID)
		if err != nil {
			return err
		}
		t = fresh
	}
	return nil
}

// Stats are the delivery figures, none of them counted over the tickets: SUCCESS and FAILED
// from the tally (each batch's outcomes and each re-queue counted once, see tally.go), PENDING
// as the queue entries plus the tickets of open batches. OldestPending is the time the
// oldest pending ticket became pending: the first queue entry of a shard (the oldest
// inserted) or the oldest open batch's.
func (s *Store) Stats(ctx context.Context) (notification.Stats, error) {
	st := notification.Stats{ByStatus: map[notification.Status]int64{}}
	tally, err := s.ReadTally(ctx)
	if err != nil {
		return st, err
	}
	queued, err := s.QueueLen(ctx)
	if err != nil {
		return st, err
	}
	open, err := s.OpenBatches(ctx, maxOpenBatches)
	if err != nil {
		return st, err
	}
	pending := queued
	var oldest *time.Time
	for _, b := range open {
		pending += int64(b.Size)
		if oldest == nil || b.Oldest.Before(*oldest) {
			o := b.Oldest
			oldest = &o
		}
	}
	if queued > 0 {
		for i := range notification.QueueShards {
			head, err := s.QueueHead(ctx, i, 1)
			if err != nil {
				return st, err
			}
			if len(head) == 1 && (oldest == nil || head[0].QueuedAt.Before(*oldest)) {
				oldest = &head[0].QueuedAt
			}
		}
	}
	st.ByStatus[notification.StatusSuccess] = tally.Success
	st.ByStatus[notification.StatusFailed] = max(tally.Failed-tally.Requeued, 0)
	st.ByStatus[notification.StatusPending] = pending
	if pending > 0 {
		st.OldestPending = oldest
	}
	return st, nil
}
