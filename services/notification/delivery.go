package notification

import (
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Delivery records. The sweeper writes them; the ticket's public state is derived from them.
//
// Every decision two sweeps could race on is an insert into a unique key (see DESIGN.md):
// an Assignment pins a ticket generation to one batch, a Claim takes a batch attempt, an
// Outcome decides a ticket generation's fate. Only the holder of a batch updates the Batch
// record. Ticket documents are never updated on the delivery path (on the dev database an
// update costs a scan of the collection); the sweeper copies the outcome onto the ticket
// afterwards ("projection"), and readers overlay the records with Resolve so they always see
// the truth.

// AssignmentKey is the unique key of a ticket generation's assignment and outcome.
func AssignmentKey(ticket bson.ObjectID, generation int) string {
	return fmt.Sprintf("%s:%d", ticket.Hex(), generation)
}

// Assignment pins a ticket generation to the batch that delivers it.
type Assignment struct {
	Key        string        `bson:"_id"`
	Ticket     bson.ObjectID `bson:"ticket"`
	Generation int           `bson:"generation"`
	Batch      string        `bson:"batch"`
	CreatedAt  time.Time     `bson:"createdAt"`
}

// Batch is one provider request (1..100 emails) and its retry state. Its members are the
// assignments that name it; the idempotency key of every send of it is derived from its id,
// so a re-send after a crash or a lost response is dropped by the provider.
type Batch struct {
	ID            string         `bson:"_id"`
	From          string         `bson:"from"`
	Size          int            `bson:"size"`
	Attempts      int            `bson:"attempts"`
	NextAttemptAt time.Time      `bson:"nextAttemptAt"`
	Done          bool           `bson:"done"`
	LastError     string         `bson:"lastError,omitempty"`
	Errors        []AttemptError `bson:"errors"`
	CreatedAt     time.Time      `bson:"createdAt"`
	UpdatedAt     time.Time      `bson:"updatedAt"`
}

// IdempotencyKey is the provider idempotency key of every send of the batch.
func (b *Batch) IdempotencyKey() string { return "cineflow-batch-" + b.ID }

// Outcome is the final fate of a ticket generation: SUCCESS or FAILED.
type Outcome struct {
	Key               string        `bson:"_id"`
	Ticket            bson.ObjectID `bson:"ticket"`
	Generation        int           `bson:"generation"`
	Status            Status        `bson:"status"`
	ProviderMessageID string        `bson:"providerMessageId,omitempty"`
	SentAt            *time.Time    `bson:"sentAt,omitempty"`
	Error             string        `bson:"error,omitempty"`
	Attempts          int           `bson:"attempts"`
	At                time.Time     `bson:"at"`
}

// Resolve returns the ticket as its delivery records say it is now: the outcome (if any)
// decides the status, the batch (if any) supplies attempts, errors and the next attempt.
// Either may be nil. A PENDING document's Attempts and Errors hold the history of earlier
// generations; a SUCCESS or FAILED document has been projected already and is returned as is.
func Resolve(t Ticket, b *Batch, o *Outcome) Ticket {
	if t.Status != StatusPending {
		return t // already projected: the document is the truth
	}
	if b != nil {
		t.Batch = b.ID
		t.NextAttemptAt = b.NextAttemptAt
		t.Attempts += b.Attempts
		t.Errors = append(append([]AttemptError{}, t.Errors...), b.Errors...)
		if b.LastError != "" {
			t.LastError = b.LastError
		}
		if b.UpdatedAt.After(t.UpdatedAt) {
			t.UpdatedAt = b.UpdatedAt
		}
	}
	if o != nil {
		t.NextAttemptAt = time.Time{} // decided: no attempt will follow
		t.Status = o.Status
		t.SentAt = o.SentAt
		t.ProviderMessageID = o.ProviderMessageID
		if o.Error != "" {
			t.LastError = o.Error
			t.Errors = append(t.Errors, AttemptError{At: o.At, Attempt: t.Attempts, Error: o.Error})
		}
		if o.At.After(t.UpdatedAt) {
			t.UpdatedAt = o.At
		}
	}
	if t.Errors == nil {
		t.Errors = []AttemptError{}
	}
	return t
}
