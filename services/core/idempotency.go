package core

import (
	"context"
	"time"
)

// StoredResponse is the first response given to an Idempotency-Key.
type StoredResponse struct {
	Status int
	Body   []byte
	At     time.Time
}

// IdempotencyStore keeps the first response of each idempotency key. Scope names the
// caller, route and key together; fingerprint is a hash of the request body.
type IdempotencyStore interface {
	// Begin claims the scope for a new request (nil, nil), or returns the stored response of
	// an earlier one with the same fingerprint. Another fingerprint under the scope is
	// errs.Unprocessable; an earlier request still running is errs.Conflict.
	Begin(ctx context.Context, scope, fingerprint string) (*StoredResponse, error)
	// Finish stores the response of the request that claimed the scope.
	Finish(ctx context.Context, scope, fingerprint string, r StoredResponse) error
	// Abandon frees the scope after a failure the client should retry (a 5xx).
	Abandon(ctx context.Context, scope string) error
}
