package mongostore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// Idempotency-Key records of POST /. A key is claimed by inserting the record
// "<scope>:<generation>" (scope: SHA-256 of the key), which names the ticket the request will
// create; then the ticket is stored. A repeat of the key finds the record and returns its
// ticket. If the ticket is not stored, the request that claimed the key is still running or
// died: within IdempotencyLease it is answered 409 (retry), after it the repeat takes the key
// over by inserting the next generation's record (decided by insert, so one repeat wins).
// createTimeout bounds the writes of a create well under the lease, so the ticket of a
// claim that was taken over never lands after it. Records are kept IdempotencyRetention:
// a TTL index removes them on MongoDB, CleanupIdempotency on a database without TTL indexes.

// IdempotencyLease is how long a claimed key whose ticket is not stored yet counts as a
// request in progress.
const IdempotencyLease = time.Minute

// IdempotencyRetention is how long a key is remembered (the same ticket is returned).
const IdempotencyRetention = 24 * time.Hour

// maxClaimGenerations bounds the take-overs of one key.
const maxClaimGenerations = 16

type idemClaim struct {
	ID        string          `bson:"_id"` // <scope>:<generation>
	Ticket    notification.ID `bson:"ticket"`
	Hash      string          `bson:"requestHash"`
	CreatedAt time.Time       `bson:"createdAt"`
}

func idemScope(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func claimID(scope string, gen int) string { return fmt.Sprintf("%s:%d", scope, gen) }

// createIdempotent creates t under an Idempotency-Key, or returns the key's ticket.
func (s *Store) createIdempotent(ctx context.Context, t *notification.Ticket, key, hash string) (*notification.Ticket, bool, error) {
	scope := idemScope(key)
	for gen := 0; gen < maxClaimGenerations; {
		now := s.now()
		c := idemClaim{ID: claimID(scope, gen), Ticket: notification.NewID(), Hash: hash, CreatedAt: now}
		err := s.idemIns.InsertOne(ctx, c)
		if err == nil {
			t.ID = c.Ticket
			if err := s.insertTicket(ctx, t, now); err != nil {
				return nil, false, err
			}
			return t, true, nil
		}
		if !mongox.IsDuplicateKey(err) {
			return nil, false, unavailable(err, "record the Idempotency-Key")
		}
		var prev idemClaim
		found, err := findByID(ctx, s.idem, c.ID, &prev)
		if err != nil {
			return nil, false, unavailable(err, "read the Idempotency-Key")
		}
		if !found {
			continue // removed a moment ago (past its retention): claim it afresh
		}
		if prev.Hash != hash {
			return nil, false, errs.E(errs.Unprocessable, "Idempotency-Key was already used with a different request").Because(errs.ReasonKeyReused)
		}
		tk, err := s.stored(ctx, prev.Ticket)
		if err != nil {
			return nil, false, err
		}
		if tk == nil && now.Sub(prev.CreatedAt) < IdempotencyLease {
			// Most likely the first request is storing it this very moment: wait a little.
			if tk, err = s.awaitTicket(ctx, prev.Ticket); err != nil {
				return nil, false, err
			}
		}
		if tk != nil {
			if err := s.ensureQueued(ctx, tk); err != nil {
				return nil, false, err
			}
			if err := s.resolve(ctx, tk); err != nil {
				return nil, false, err
			}
			return tk, false, nil
		}
		next, err := exists(ctx, s.idem, claimID(scope, gen+1))
		if err != nil {
			return nil, false, unavailable(err, "read the Idempotency-Key")
		}
		if !next && now.Sub(prev.CreatedAt) < IdempotencyLease {
			e := errs.E(errs.Conflict, "a request with this Idempotency-Key is still in progress; retry").Because(errs.ReasonKeyInProgress)
			e.RetryAfter = time.Second
			return nil, false, e
		}
		gen++ // taken over already, or its request died: the next generation decides
	}
	return nil, false, errs.E(errs.Conflict, "this Idempotency-Key was taken over too many times; use a new key").Because(errs.ReasonKeyExhausted)
}

// awaitTicketFor is how long a repeat of a key waits for the first request to store its
// ticket before it answers "in progress".
const awaitTicketFor = 2 * time.Second

// awaitTicket polls for a ticket being stored (nil if it is not, after awaitTicketFor).
func (s *Store) awaitTicket(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	deadline := time.Now().Add(awaitTicketFor)
	for wait := 5 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			return nil, unavailable(ctx.Err(), "read the ticket of this Idempotency-Key")
		case <-time.After(wait):
		}
		tk, err := s.stored(ctx, id)
		if err != nil || tk != nil {
			return tk, err
		}
	}
	return nil, nil
}

// ensureQueued queues a ticket that was stored but whose queue entry is missing (its create
// failed between the two inserts). A ticket assigned to a batch, or projected, needs none.
func (s *Store) ensureQueued(ctx context.Context, t *notification.Ticket) error {
	if t.Generation != 0 || t.Status != notification.StatusPending {
		return nil
	}
	for _, coll := range []*mongo.Collection{s.queueOf(t.ID), s.assignments} {
		found, err := exists(ctx, coll, notification.AssignmentKey(t.ID, 0))
		if err != nil {
			return unavailable(err, "read the ticket's queue entry")
		}
		if found {
			return nil
		}
	}
	if err := s.Enqueue(ctx, notification.NewQueueEntry(t, 0, t.CreatedAt)); err != nil {
		return unavailable(err, "queue the ticket")
	}
	return nil
}

// idemExpiry removes Idempotency-Key records IdempotencyRetention after their createdAt: a
// TTL index where the server has them, else CleanupIdempotency (one read of its limit).
func idemExpiry(idem *mongo.Collection) mongox.Expiry {
	return mongox.Expiry{Colls: []*mongo.Collection{idem}, Field: "createdAt", Index: "created_at_ttl",
		Retention: IdempotencyRetention}
}

// ensureIdempotencyTTL creates the TTL index on the records' createdAt where the server
// supports one; a server that refuses it (FerretDB) is left to CleanupIdempotency.
func (s *Store) ensureIdempotencyTTL(ctx context.Context) error {
	err := s.idemExpiry.EnsureTTL(ctx)
	switch {
	case err == nil:
		s.ttl.Store(true)
	case mongox.TTLRefused(err):
		s.ttl.Store(false) // refused: no TTL indexes here
	default:
		return err
	}
	return nil
}

// IdempotencyTTL reports whether the server expires Idempotency-Key records itself (known
// after EnsureIndexes).
func (s *Store) IdempotencyTTL() bool { return s.ttl.Load() }

// CleanupIdempotency removes Idempotency-Key records older than IdempotencyRetention, at most
// limit of them, and returns how many it removed. It reads the oldest records (an empty
// filter with a limit: the dev database reads only those rows) and deletes each by _id, so
// its cost does not grow with the records kept; a full result means more may be due.
func (s *Store) CleanupIdempotency(ctx context.Context, limit int) (int, error) {
	return s.idemExpiry.Clean(ctx, s.now(), limit)
}
