package mongostore

import (
	"context"
	"errors"
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

// StaleClaim is how long a claimed key without a response counts as still running; after
// that the request is taken as lost (its process died) and the key as unusable.
const StaleClaim = time.Minute

// Idempotency is a core.IdempotencyStore: a claim is an insert into the unique _id of
// idempotency_keys, the response a second insert into idempotency_results. Nothing is updated,
// so the store is correct on a database without atomic conditional updates. Records are kept
// (on MongoDB, a TTL index on createdAt may expire them; the dev database has no TTL indexes).
type Idempotency struct {
	keys    *mongo.Collection
	results *mongo.Collection
	now     func() time.Time
}

var _ core.IdempotencyStore = (*Idempotency)(nil)

// NewIdempotency returns the store on db.
func NewIdempotency(db *mongo.Database) *Idempotency {
	return &Idempotency{keys: db.Collection(IdempotencyKeysCollection), results: db.Collection(IdempotencyResultsCollection), now: time.Now}
}

type idemKeyDoc struct {
	ID          string    `bson:"_id"`
	Fingerprint string    `bson:"fingerprint"`
	CreatedAt   time.Time `bson:"createdAt"`
}

type idemResultDoc struct {
	ID          string    `bson:"_id"`
	Fingerprint string    `bson:"fingerprint"`
	Status      int       `bson:"status"`
	Body        []byte    `bson:"body"`
	CreatedAt   time.Time `bson:"createdAt"`
}

// Begin claims scope or returns its stored response.
func (s *Idempotency) Begin(ctx context.Context, scope, fp string) (*core.StoredResponse, error) {
	now := s.now().UTC()
	_, err := s.keys.InsertOne(ctx, idemKeyDoc{ID: scope, Fingerprint: fp, CreatedAt: now})
	if err == nil {
		return nil, nil
	}
	if !mongox.IsDuplicateKey(err) {
		return nil, dbError(err, "could not record the idempotency key")
	}
	var r idemResultDoc
	err = s.results.FindOne(ctx, bson.M{"_id": scope}).Decode(&r)
	switch {
	case err == nil:
		if r.Fingerprint != fp {
			return nil, errUsedKey()
		}
		return &core.StoredResponse{Status: r.Status, Body: r.Body, At: r.CreatedAt.UTC()}, nil
	case !errors.Is(err, mongo.ErrNoDocuments):
		return nil, dbError(err, "could not read the idempotency key")
	}
	var k idemKeyDoc
	if err := s.keys.FindOne(ctx, bson.M{"_id": scope}).Decode(&k); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) { // abandoned a moment ago: the client may retry
			e := errs.E(errs.Conflict, "a request with this Idempotency-Key just failed; retry")
			e.RetryAfter = time.Second
			return nil, e
		}
		return nil, dbError(err, "could not read the idempotency key")
	}
	if k.Fingerprint != fp {
		return nil, errUsedKey()
	}
	if now.Sub(k.CreatedAt) > StaleClaim {
		return nil, errs.E(errs.Conflict, "an earlier request with this Idempotency-Key did not finish; check its effect and use a new key")
	}
	e := errs.E(errs.Conflict, "a request with this Idempotency-Key is still in progress")
	e.RetryAfter = time.Second
	return nil, e
}

func errUsedKey() error {
	return errs.E(errs.Unprocessable, "this Idempotency-Key was used with a different request body")
}

// Finish stores the response of scope's request.
func (s *Idempotency) Finish(ctx context.Context, scope, fp string, r core.StoredResponse) error {
	_, err := s.results.InsertOne(ctx, idemResultDoc{ID: scope, Fingerprint: fp, Status: r.Status, Body: r.Body, CreatedAt: s.now().UTC()})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return dbError(err, "could not store the response")
	}
	return nil
}

// Abandon frees scope.
func (s *Idempotency) Abandon(ctx context.Context, scope string) error {
	if _, err := s.keys.DeleteOne(ctx, bson.M{"_id": scope}); err != nil {
		return dbError(err, "could not free the idempotency key")
	}
	return nil
}
