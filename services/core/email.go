package core

import (
	"context"
	"fmt"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Email is a message owed to someone: written to the outbox durably, then relayed to the
// notification service. Key is unique per email and becomes the relay's Idempotency-Key.
type Email struct {
	Key        string
	Recipients []string
	Subject    string
	Content    string
	// Kind and Ref say which decision the email belongs to (e.g. "booking-paid" and the booking
	// id); the relay asks a guard whether that decision stands before it sends.
	Kind string
	Ref  string
	// TraceParent is the W3C traceparent of the request that owed the email, so the trace
	// continues into the notification service.
	TraceParent string
}

// Outbox accepts emails to relay. Enqueue is durable when it returns nil; enqueueing the
// same Key again while its email waits unattempted keeps the first email. (Once an attempt
// has rescheduled it, a store may keep a second copy: see OutboxStore.)
type Outbox interface {
	Enqueue(ctx context.Context, e Email) error
}

// DeferredOutbox is an Outbox that can also store an email owed by a decision not yet taken
// without waking its relay (Owe), and wake it once the decision is taken (Nudge).
type DeferredOutbox interface {
	Outbox
	Owe(ctx context.Context, e Email) error
	Nudge()
}

// MaxEmailKey is the longest Email.Key: it travels as the notification service's
// Idempotency-Key (1 to 255 printable ASCII characters).
const MaxEmailKey = 255

// Validate checks what the relay needs of an email before it is stored: a key the
// notification service accepts as an Idempotency-Key, recipients, a subject and content.
func (e *Email) Validate() error {
	f := map[string]string{}
	switch {
	case e.Key == "" || len(e.Key) > MaxEmailKey:
		f["key"] = fmt.Sprintf("must be 1 to %d printable ASCII characters", MaxEmailKey)
	default:
		for i := 0; i < len(e.Key); i++ {
			if e.Key[i] < 0x20 || e.Key[i] > 0x7e {
				f["key"] = fmt.Sprintf("must be 1 to %d printable ASCII characters", MaxEmailKey)
				break
			}
		}
	}
	if len(e.Recipients) == 0 {
		f["recipients"] = "is required"
	}
	if e.Subject == "" {
		f["subject"] = "is required"
	}
	if e.Content == "" {
		f["content"] = "is required"
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	return nil
}

// OutboxEntry is an email waiting in the outbox, with its relay state.
type OutboxEntry struct {
	Email
	CreatedAt     time.Time
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	// Queue says where the store keeps the email (set by Pending, opaque to the relay): the
	// entry is handed back to Reschedule and Delete as Pending returned it.
	Queue string
}

// OutboxBacklog is what the outbox holds: how many emails and since when (Oldest is zero
// when it is empty).
type OutboxBacklog struct {
	Pending int64
	Oldest  time.Time
}
