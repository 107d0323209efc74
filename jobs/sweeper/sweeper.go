// Package sweeper delivers PENDING tickets: it claims them in batches, sends each batch
// through a Mailer with an idempotency key pinned to the batch, and records the outcome.
package sweeper
