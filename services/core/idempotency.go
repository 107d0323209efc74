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

// IdempotencyClaim is a request's claim on its scope. A scope is claimed in generations: a
// request that failed (Abandon) or never answered (its process died: its claim outlived the
// store's lease) leaves its generation to the next request with the key, which claims the
// next one. Each generation is an insert into a unique key, so of two requests claiming it,
// one runs and the other is told the first is in progress.
type IdempotencyClaim struct {
	Scope      string
	Generation int
}

// IdempotencyStore keeps the first response of each idempotency key. Scope names the
// caller, route and key together; fingerprint is a hash of the request body.
type IdempotencyStore interface {
	// Begin claims the scope for a new request (nil response and the claim), or returns the
	// stored response of an earlier one with the same fingerprint. Another fingerprint under
	// the scope is errs.Unprocessable; an earlier request still running (within its lease) is
	// errs.Conflict.
	Begin(ctx context.Context, scope, fingerprint string) (*StoredResponse, IdempotencyClaim, error)
	// Finish stores the response of the request that holds the claim (the first response
	// stored for the scope stays).
	Finish(ctx context.Context, c IdempotencyClaim, fingerprint string, r StoredResponse) error
	// Abandon gives the claim up after a failure the client should retry (a 5xx): the next
	// request with the key runs.
	Abandon(ctx context.Context, c IdempotencyClaim) error
}
