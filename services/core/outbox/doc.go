// Package outbox relays the core's emails to the notification service until it has them.
//
// What a caller may assume:
//
//   - An email enqueued (Relay.Enqueue, or Owe for a decision not yet taken) is durable and
//     will be posted until the notification service accepts it, unless its guard says the
//     decision it belongs to did not stand (GuardDrop) or the service refuses it for good.
//   - It is accepted at most once: every POST carries the email's Key as Idempotency-Key,
//     and the notification service answers a repeated key with the same ticket. Two relays
//     (replicas) may post the same email at once safely.
//   - An outage costs the same whatever the backlog: after BreakAfter failures in a row the
//     relay pauses and probes with one email per interval (see Relay).
//
// The store (OutboxStore) keeps the emails; which replica runs the relay is decided by the
// caller (cmd/core runs it under a lease).
package outbox
