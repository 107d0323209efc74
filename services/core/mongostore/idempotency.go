package mongostore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// Collections of the idempotency store.
const (
	IdempotencyKeysCollection    = "idempotency_keys"
	IdempotencyResultsCollection = "idempotency_results"
)

// StaleClaim is the default lease of a claim: a claimed key without a response older than
// this is taken as lost (its process died), and the next request with the key takes it over.
// Keep it well above the longest a request can run.
const StaleClaim = time.Minute

// DefaultIdempotencyRetention is how long keys and responses are kept (Stripe's, and
// Resend's, 24 hours): a key used again later is a new request.
const DefaultIdempotencyRetention = 24 * time.Hour

// maxClaimGenerations bounds how often one key may be taken over or retried after a 5xx.
const maxClaimGenerations = 100

// cleanupPage is how many of the oldest records one read of the clean-up takes.
const cleanupPage = 100

// IdempotencyOptions configure the store; zero values are the defaults.
type IdempotencyOptions struct {
	// Lease is how long a claim without a response counts as in progress (StaleClaim).
	Lease time.Duration
	// Retention is how long records are kept (DefaultIdempotencyRetention).
	Retention time.Duration
	Now       func() time.Time
}

// Idempotency is a core.IdempotencyStore. Nothing is ever updated, so it is correct on a
// database without atomic conditional updates:
//   - a claim is an insert into idempotency_keys keyed "<scope>#<generation>": the first insert
//     of a generation wins;
//   - the response is an insert into idempotency_results keyed by the scope (the first stays);
//   - Abandon (after a 5xx) inserts a release marker "<scope>#<generation>#released";
//   - a request finds the latest generation by walking them from 0 (exact _id reads, one or
//     two per generation, and keys rarely pass generation 0) and claims the next one when the
//     latest was released or is older than the lease (its process died), so two retries
//     cannot both take it over.
//
// Records older than the retention are removed: by a TTL index where the server has them
// (EnsureTTL), else by Clean, run periodically (RunCleanup).
type Idempotency struct {
	keys    *mongo.Collection
	results *mongo.Collection
	opts    IdempotencyOptions
	expiry  mongox.Expiry
}

var _ core.IdempotencyStore = (*Idempotency)(nil)

// NewIdempotency returns the store on db with the default lease and retention.
func NewIdempotency(db *mongo.Database) *Idempotency {
	return NewIdempotencyWith(db, IdempotencyOptions{})
}

// NewIdempotencyWith returns the store on db configured by opts.
func NewIdempotencyWith(db *mongo.Database, opts IdempotencyOptions) *Idempotency {
	if opts.Lease <= 0 {
		opts.Lease = StaleClaim
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultIdempotencyRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Idempotency{keys: db.Collection(IdempotencyKeysCollection), results: db.Collection(IdempotencyResultsCollection), opts: opts}
	s.expiry = mongox.Expiry{Colls: []*mongo.Collection{s.keys, s.results}, Field: "createdAt", Index: "createdAt_ttl",
		Retention: opts.Retention, Page: cleanupPage, Wrap: func(err error, reading bool) error {
			if reading {
				return dbError(err, "could not read the oldest idempotency records")
			}
			return dbError(err, "could not remove an idempotency record")
		}}
	return s
}

type idemKeyDoc struct {
	ID          string    `bson:"_id"`
	Fingerprint string    `bson:"fingerprint,omitempty"`
	Generation  int       `bson:"generation"`
	CreatedAt   time.Time `bson:"createdAt"`
}

type idemResultDoc struct {
	ID          string    `bson:"_id"`
	Fingerprint string    `bson:"fingerprint"`
	Status      int       `bson:"status"`
	Body        []byte    `bson:"body"`
	Generation  int       `bson:"generation"`
	CreatedAt   time.Time `bson:"createdAt"`
}

func claimID(c core.IdempotencyClaim) string { return c.Scope + "#" + strconv.Itoa(c.Generation) }

func releaseID(c core.IdempotencyClaim) string { return claimID(c) + "#released" }

func inProgress() error {
	e := errs.E(errs.Conflict, "a request with this Idempotency-Key is still in progress").Because(errs.ReasonKeyInProgress)
	e.RetryAfter = time.Second
	return e
}

// Begin claims scope or returns its stored response.
func (s *Idempotency) Begin(ctx context.Context, scope, fp string) (*core.StoredResponse, core.IdempotencyClaim, error) {
	now := s.opts.Now().UTC()
	for g := range maxClaimGenerations {
		c := core.IdempotencyClaim{Scope: scope, Generation: g}
		_, err := s.keys.InsertOne(ctx, idemKeyDoc{ID: claimID(c), Fingerprint: fp, Generation: g, CreatedAt: now})
		if err == nil {
			return nil, c, nil
		}
		if !mongox.IsDuplicateKey(err) {
			return nil, core.IdempotencyClaim{}, dbError(err, "could not record the idempotency key")
		}
		// Generation g is someone's: answered, running, given up, or lost with its process.
		if r, err := s.stored(ctx, scope, fp); r != nil || err != nil {
			return r, core.IdempotencyClaim{}, err
		}
		var k idemKeyDoc
		if err := s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: claimID(c)}}).Decode(&k); err != nil {
			if errors.Is(err, mongo.ErrNoDocuments) { // removed by the clean-up a moment ago
				return nil, core.IdempotencyClaim{}, inProgress()
			}
			return nil, core.IdempotencyClaim{}, dbError(err, "could not read the idempotency key")
		}
		if k.Fingerprint != fp {
			return nil, core.IdempotencyClaim{}, errUsedKey()
		}
		if now.Sub(k.CreatedAt) >= s.opts.Lease {
			continue // its process died: take over with the next generation
		}
		err = s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: releaseID(c)}}).Err()
		switch {
		case err == nil:
			continue // it failed and gave the key up
		case !errors.Is(err, mongo.ErrNoDocuments):
			return nil, core.IdempotencyClaim{}, dbError(err, "could not read the idempotency key")
		}
		return nil, core.IdempotencyClaim{}, inProgress()
	}
	return nil, core.IdempotencyClaim{}, errs.E(errs.Conflict, "requests with this Idempotency-Key failed too often; use a new key").Because(errs.ReasonKeyExhausted)
}

// stored returns the stored response of scope (nil if none).
func (s *Idempotency) stored(ctx context.Context, scope, fp string) (*core.StoredResponse, error) {
	var r idemResultDoc
	err := s.results.FindOne(ctx, bson.D{{Key: "_id", Value: scope}}).Decode(&r)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, nil
	case err != nil:
		return nil, dbError(err, "could not read the idempotency key")
	case r.Fingerprint != fp:
		return nil, errUsedKey()
	}
	return &core.StoredResponse{Status: r.Status, Body: r.Body, At: r.CreatedAt.UTC()}, nil
}

func errUsedKey() error {
	return errs.E(errs.Unprocessable, "this Idempotency-Key was used with a different request body").Because(errs.ReasonKeyReused)
}

// Finish stores the response of the claim's request, unless one is stored already.
func (s *Idempotency) Finish(ctx context.Context, c core.IdempotencyClaim, fp string, r core.StoredResponse) error {
	_, err := s.results.InsertOne(ctx, idemResultDoc{ID: c.Scope, Fingerprint: fp, Status: r.Status, Body: r.Body,
		Generation: c.Generation, CreatedAt: s.opts.Now().UTC()})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not store the response")
	}
	return nil
}

// Abandon gives the claim up: the next request with the key claims the next generation.
func (s *Idempotency) Abandon(ctx context.Context, c core.IdempotencyClaim) error {
	_, err := s.keys.InsertOne(ctx, idemKeyDoc{ID: releaseID(c), Generation: c.Generation, CreatedAt: s.opts.Now().UTC()})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not free the idempotency key")
	}
	return nil
}

// EnsureTTL asks the server to expire records after the retention (a TTL index on createdAt
// of both collections). A server without TTL indexes (the embedded database refuses
// expireAfterSeconds) answers an error: run RunCleanup instead.
func (s *Idempotency) EnsureTTL(ctx context.Context) error { return s.expiry.EnsureTTL(ctx) }

// Clean removes records older than the retention, oldest first, at most limit per collection
// (limit <= 0: no bound), and returns how many it removed. Its cost does not grow with the
// data kept (see mongox.Expiry.Clean).
func (s *Idempotency) Clean(ctx context.Context, limit int) (int, error) {
	return s.expiry.Clean(ctx, s.opts.Now().UTC(), limit)
}

// RunCleanup runs Clean every interval (and once at once) until ctx ends, reporting failures
// to onErr; with leads set, only while it reports true (the replica elected for the job:
// another one cleans meanwhile).
func (s *Idempotency) RunCleanup(ctx context.Context, interval time.Duration, leads func() bool, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if leads == nil || leads() {
			if _, err := s.Clean(ctx, 0); err != nil && ctx.Err() == nil && onErr != nil {
				onErr(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
