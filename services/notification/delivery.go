package notification

import (
	"fmt"
	"time"
)

// Delivery records. The notification service and the sweeper write them; the ticket's public
// state is derived from them.
//
// Every decision two writers could race on is an insert into a unique key, since the
// development database makes no conditional update atomic and has no transactions (see
// docs/architecture.md, "Delivery: no email lost, none sent twice"): a GenerationRecord starts
// a ticket's next generation (an operator's re-queue), an Assignment pins a ticket generation
// to one batch, a claim takes a batch's next lease, an Outcome decides a ticket generation's
// fate. Only the holder of a batch updates the Batch record.
//
// Work is found through small collections that hold only what is still to do, read by an
// empty filter with a limit (the only read the dev database serves without reading every
// document): the delivery queue (QueueEntry, one per ticket generation waiting for a batch),
// the open batches (OpenBatch) and the projection queue. So the cost of a sweep does not grow
// with the tickets delivered before.
//
// Ticket documents are written on create, then only by projection: a copy of the resolved
// state, which spares readers the records' reads (a SUCCESS document is final). Readers never
// depend on it; they overlay the document with the records (Resolve), so they see the truth
// before projection, and a stale projection is repaired by whoever notices it. Lists find
// tickets through list indexes written with the records (see mongostore/listindex.go).

// AssignmentKey is the unique key of a ticket generation: of its queue entry, assignment,
// outcome and generation record.
func AssignmentKey(ticket ID, generation int) string {
	return fmt.Sprintf("%s:%d", ticket.Hex(), generation)
}

// QueueShards is the number of collections the delivery queue is spread over. A sweep empties
// one shard at a time; removing many entries from a small shard costs the dev database one
// transaction and a read of that shard only (see mongostore.Dequeue).
const QueueShards = 16

// QueueShard is the shard of a ticket generation's queue entry: bits 4-7 of the ticket id's
// last byte, the low byte of the ObjectID's counter. Tickets spread evenly over the shards,
// sixteen consecutive ids share one, so the entries of concurrent creates (coalesced into
// one insert per collection) mostly land in one shard, one transaction.
func QueueShard(ticket ID) int { return int(ticket[11] >> 4) }

// QueueEntry is a ticket generation waiting to be put into a batch. It carries what the
// email needs, so forming batches reads nothing else. It is inserted when the ticket is
// created (generation 0) or re-queued, and deleted once the generation is assigned.
type QueueEntry struct {
	Key             string    `bson:"_id"` // AssignmentKey(Ticket, Generation)
	Ticket          ID        `bson:"ticket"`
	Generation      int       `bson:"generation"`
	Subject         string    `bson:"subject"`
	Content         string    `bson:"content"`
	RecipientEmails []string  `bson:"recepientEmails"`
	TraceParent     string    `bson:"traceparent,omitempty"`
	CreatedAt       time.Time `bson:"createdAt"` // the ticket's
	QueuedAt        time.Time `bson:"queuedAt"`  // when this generation became pending
}

// NewQueueEntry is the queue entry of generation gen of t.
func NewQueueEntry(t *Ticket, gen int, at time.Time) QueueEntry {
	return QueueEntry{Key: AssignmentKey(t.ID, gen), Ticket: t.ID, Generation: gen, Subject: t.Subject,
		Content: t.Content, RecipientEmails: t.RecipientEmails, TraceParent: t.TraceParent,
		CreatedAt: t.CreatedAt, QueuedAt: at}
}

// AsTicket returns the ticket generation the entry asks to deliver (what a batch sends).
func (q *QueueEntry) AsTicket() Ticket {
	return Ticket{ID: q.Ticket, Generation: q.Generation, Subject: q.Subject, Content: q.Content,
		RecipientEmails: q.RecipientEmails, TraceParent: q.TraceParent, Status: StatusPending,
		CreatedAt: q.CreatedAt, UpdatedAt: q.QueuedAt, NextAttemptAt: q.QueuedAt}
}

// GenerationRecord says that generation Generation of a ticket was re-queued: generation
// Generation+1 exists. Its key is AssignmentKey(ticket, Generation); the first insert wins,
// so one re-queue of a FAILED generation takes effect.
type GenerationRecord struct {
	Key        string    `bson:"_id"`
	Ticket     ID        `bson:"ticket"`
	Generation int       `bson:"generation"`
	At         time.Time `bson:"at"`
}

// Assignment pins a ticket generation to the batch that delivers it.
type Assignment struct {
	Key        string    `bson:"_id"`
	Ticket     ID        `bson:"ticket"`
	Generation int       `bson:"generation"`
	Batch      string    `bson:"batch"`
	CreatedAt  time.Time `bson:"createdAt"`
}

// Member is a ticket generation of a batch.
type Member struct {
	Ticket     ID  `bson:"ticket"`
	Generation int `bson:"generation"`
}

// Key is the member's AssignmentKey.
func (m Member) Key() string { return AssignmentKey(m.Ticket, m.Generation) }

// Batch is one provider request (1..100 emails) and its retry state. Its members are the
// ticket generations whose assignment names it; the idempotency key of every send of it is
// derived from its id, so a re-send after a crash or a lost response is dropped by the
// provider (for 24 hours).
type Batch struct {
	ID   string `bson:"_id"`
	From string `bson:"from"`
	Size int    `bson:"size"`
	// Members lists the batch's ticket generations. Until Verified, it lists the candidates
	// its creator tried to assign, some of which may belong to other batches: a sweep that
	// takes the batch over keeps only those whose assignment names it.
	Members  []Member `bson:"members"`
	Verified bool     `bson:"verified"`
	// FirstSendAt is when the batch may first have reached the provider (nil: never sent).
	// The provider forgets the idempotency key 24 hours later, so after that no send of it
	// could be told from a first one.
	FirstSendAt   *time.Time     `bson:"firstSendAt,omitempty"`
	Claims        int            `bson:"claims"` // highest claim number its holders took (a hint)
	Oldest        time.Time      `bson:"oldest"` // when its oldest ticket became pending
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

// OpenBatch is the entry of a batch not yet done in the open-batches collection, which is
// how sweeps find batches to retry or take over. Only the batch's holder writes it.
type OpenBatch struct {
	ID     string    `bson:"_id"`
	Due    time.Time `bson:"due"`    // the batch's NextAttemptAt
	Size   int       `bson:"size"`   // tickets in it (for the backlog figure)
	Oldest time.Time `bson:"oldest"` // when its oldest ticket became pending
	Claims int       `bson:"claims"` // the batch's last claim number (a hint for the next claim)
}

// Outcome is the final fate of a ticket generation: SUCCESS or FAILED.
type Outcome struct {
	Key               string     `bson:"_id"`
	Ticket            ID         `bson:"ticket"`
	Generation        int        `bson:"generation"`
	Status            Status     `bson:"status"`
	ProviderMessageID string     `bson:"providerMessageId,omitempty"`
	SentAt            *time.Time `bson:"sentAt,omitempty"`
	Error             string     `bson:"error,omitempty"`
	Attempts          int        `bson:"attempts"`
	At                time.Time  `bson:"at"`
}

// Tally is a change of the delivery figures: tickets delivered, failed, and FAILED tickets
// re-queued. Each is recorded once under a unique key (BatchTallyKey, RequeueTallyKey), so
// the figures are exact without counting the tickets.
type Tally struct {
	Success  int64 `bson:"success"`
	Failed   int64 `bson:"failed"`
	Requeued int64 `bson:"requeued"`
}

// Add returns t + d.
func (t Tally) Add(d Tally) Tally {
	return Tally{Success: t.Success + d.Success, Failed: t.Failed + d.Failed, Requeued: t.Requeued + d.Requeued}
}

// BatchTallyKey is the tally key of a decided batch's outcomes.
func BatchTallyKey(batchID string) string { return "batch:" + batchID }

// RequeueTallyKey is the tally key of the re-queue of generation gen of a ticket.
func RequeueTallyKey(ticket ID, gen int) string {
	return "requeue:" + AssignmentKey(ticket, gen)
}

// GenerationRecords are the delivery records of one generation of a ticket, each nil or zero
// when missing.
type GenerationRecords struct {
	Generation int
	Since      time.Time // when the generation began (its re-queue), zero for the stored one
	Batch      *Batch
	Outcome    *Outcome
}

// Resolve returns the ticket as its delivery records say it is now. doc is the stored
// document; gens holds the records of doc.Generation and of every later generation, in order
// (each but the last was re-queued). A PENDING document's Attempts and Errors hold the
// history of earlier generations; a SUCCESS or FAILED one is a projection of its generation,
// whose records it already holds. Resolve does not change its inputs.
func Resolve(doc Ticket, gens ...GenerationRecords) Ticket {
	t := doc
	t.Errors = append([]AttemptError{}, doc.Errors...)
	for i, g := range gens {
		if i > 0 { // generation g began: re-queued from the FAILED one before
			t.Generation, t.Status, t.Batch = g.Generation, StatusPending, ""
			t.SentAt, t.ProviderMessageID = nil, ""
			t.NextAttemptAt = g.Since
			if g.Since.After(t.UpdatedAt) {
				t.UpdatedAt = g.Since
			}
		} else if doc.Status != StatusPending || g.Generation != doc.Generation {
			continue // the projection holds this generation already
		}
		if b := g.Batch; b != nil {
			t.Batch = b.ID
			t.NextAttemptAt = b.NextAttemptAt
			t.Attempts += b.Attempts
			t.Errors = append(t.Errors, b.Errors...)
			if b.LastError != "" {
				t.LastError = b.LastError
			}
			if b.UpdatedAt.After(t.UpdatedAt) {
				t.UpdatedAt = b.UpdatedAt
			}
		}
		if o := g.Outcome; o != nil {
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
	}
	return t
}
