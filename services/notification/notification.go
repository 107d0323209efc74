// Package notification is the domain of the notification service: email tickets, their
// delivery state, and the rules a new ticket must satisfy. It imports no framework or driver:
// ID (id.go) is stored as an ObjectID without one.
package notification

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Status is a ticket's public delivery status.
type Status string

// Ticket statuses. A ticket starts PENDING; the sweeper makes it SUCCESS or FAILED; an
// operator may put a FAILED ticket back to PENDING.
const (
	StatusPending Status = "PENDING"
	StatusSuccess Status = "SUCCESS"
	StatusFailed  Status = "FAILED"
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusSuccess || s == StatusFailed
}

// Limits on a ticket.
const (
	MaxRecipients     = 50
	MaxSubjectLen     = 998 // RFC 5322 line length
	MaxContentBytes   = 256 << 10
	MaxRequesterLen   = 200
	MaxIdempotencyKey = 255
)

// AttemptError is one failed delivery attempt, kept forever (append-only).
type AttemptError struct {
	At      time.Time `bson:"at" json:"at"`
	Attempt int       `bson:"attempt" json:"attempt"`
	Error   string    `bson:"error" json:"error"`
}

// Ticket is an email to deliver and the record of its delivery.
type Ticket struct {
	ID              ID       `bson:"_id" json:"_id"`
	Subject         string   `bson:"subject" json:"subject"`
	Content         string   `bson:"content" json:"content"`
	RecipientEmails []string `bson:"recepientEmails" json:"recepientEmails"`
	Requester       string   `bson:"requester,omitempty" json:"requester,omitempty"`
	Status          Status   `bson:"status" json:"status"`

	// Delivery state. The stored document holds a projection of the delivery records (see
	// delivery.go), written by the sweeper and by a re-queue; readers resolve the ticket
	// from the records (Resolve).
	Attempts          int            `bson:"attempts" json:"attempts"`
	LastError         string         `bson:"lastError,omitempty" json:"lastError,omitempty"`
	Errors            []AttemptError `bson:"errors,omitempty" json:"errors"`
	NextAttemptAt     time.Time      `bson:"nextAttemptAt" json:"nextAttemptAt,omitzero"` // zero once decided
	SentAt            *time.Time     `bson:"sentAt,omitempty" json:"sentAt,omitempty"`
	ProviderMessageID string         `bson:"providerMessageId,omitempty" json:"providerMessageId,omitempty"`
	// Generation counts operator re-queues; a ticket belongs to at most one delivery batch
	// per generation, and Batch names it ("" while unassigned).
	Generation int    `bson:"generation" json:"generation"`
	Batch      string `bson:"batch" json:"-"`

	TraceParent string `bson:"traceparent,omitempty" json:"traceparent,omitempty"`
	// IdempotencyKey and RequestHash come with a create request; the store keeps them in
	// its Idempotency-Key records, not in the ticket.
	IdempotencyKey string `bson:"-" json:"-"`
	RequestHash    string `bson:"-" json:"-"`

	CreatedAt time.Time `bson:"createdAt" json:"createdAt"`
	UpdatedAt time.Time `bson:"updatedAt" json:"updatedAt"`
}

// NewTicket is what a client asks to send.
type NewTicket struct {
	Subject         string
	Content         string
	RecipientEmails []string
	Requester       string
}

// Validate checks a new ticket and normalises its recipients (trimmed, duplicates removed).
// The error, if any, is Invalid with a reason per field.
func (n *NewTicket) Validate() error {
	f := map[string]string{}
	n.Subject = strings.TrimSpace(n.Subject)
	switch {
	case n.Subject == "":
		f["subject"] = "is required"
	case !utf8.ValidString(n.Subject):
		f["subject"] = "must be valid UTF-8 text"
	case len(n.Subject) > MaxSubjectLen:
		f["subject"] = fmt.Sprintf("must be at most %d bytes", MaxSubjectLen)
	case strings.ContainsAny(n.Subject, "\r\n"):
		f["subject"] = "must be a single line"
	}
	switch {
	case strings.TrimSpace(n.Content) == "":
		f["content"] = "is required"
	case !utf8.ValidString(n.Content):
		f["content"] = "must be valid UTF-8 text"
	case len(n.Content) > MaxContentBytes:
		f["content"] = fmt.Sprintf("must be at most %d bytes", MaxContentBytes)
	}
	if len(n.Requester) > MaxRequesterLen || !utf8.ValidString(n.Requester) {
		f["requester"] = fmt.Sprintf("must be UTF-8 text of at most %d bytes", MaxRequesterLen)
	}
	if reason := n.normaliseRecipients(); reason != "" {
		f["recepientEmails"] = reason
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	return nil
}

func (n *NewTicket) normaliseRecipients() string {
	if len(n.RecipientEmails) == 0 {
		return "is required: a list of 1 to 50 email addresses"
	}
	if len(n.RecipientEmails) > MaxRecipients {
		return fmt.Sprintf("must hold at most %d addresses", MaxRecipients)
	}
	seen := make(map[string]bool, len(n.RecipientEmails))
	out := make([]string, 0, len(n.RecipientEmails))
	for i, raw := range n.RecipientEmails {
		addr := strings.TrimSpace(raw)
		if !ValidEmail(addr) {
			return fmt.Sprintf("item %d is not a valid email address", i)
		}
		key := strings.ToLower(addr)
		if !seen[key] {
			seen[key] = true
			out = append(out, addr)
		}
	}
	n.RecipientEmails = out
	return ""
}

// ValidEmail accepts a bare address (local@domain, no display name) whose domain has a dot.
func ValidEmail(s string) bool {
	if len(s) < 3 || len(s) > 254 || strings.ContainsAny(s, " <>\r\n\t\"") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	return at > 0 && strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") &&
		!strings.HasSuffix(domain, ".") && !strings.Contains(domain, "..")
}

// ListFilter selects a page of tickets for the list endpoint, newest first: every ticket in
// the order it was created, or the tickets of one status in the order they entered it.
type ListFilter struct {
	Status Status // "" for all
	// Cursor is where the page starts: the Next of the page before (the store's own format).
	Cursor string
	// Before is the cursor of earlier versions, a ticket id: only tickets older than it.
	Before ID
	Skip   int
	Limit  int
}

// Page is one page of a list. Next, when not empty, is the Cursor of the following page:
// more tickets may follow. A page may be short, even empty, and still have a Next (the store
// bounds the work of one page); a client follows Next until there is none.
type Page struct {
	Tickets []Ticket
	Next    string
}

// Stats are the backlog figures exported as metrics.
type Stats struct {
	ByStatus      map[Status]int64
	OldestPending *time.Time
}

// TicketStore keeps tickets.
type TicketStore interface {
	// Create stores a new PENDING ticket. If t.IdempotencyKey is already used it returns the
	// existing ticket and created=false (Unprocessable if the request differs).
	Create(ctx context.Context, t *Ticket) (saved *Ticket, created bool, err error)
	Get(ctx context.Context, id ID) (*Ticket, error)
	// List returns one page of tickets as Get shows them (Invalid for a bad f.Cursor).
	List(ctx context.Context, f ListFilter) (Page, error)
	// Requeue puts a FAILED ticket back to PENDING, keeping its history (Conflict if it is
	// not FAILED or someone else re-queued it first).
	Requeue(ctx context.Context, id ID) (*Ticket, error)
	// RequeueFailed re-queues, each as Requeue does, the tickets whose current generation
	// FAILED as f selects, newest failures first (see requeue.go); the report says how many
	// and whether more remain (Invalid for a filter RequeueFilter.Validate refuses or a
	// cursor not made by it).
	RequeueFailed(ctx context.Context, f RequeueFilter) (RequeueReport, error)
	Stats(ctx context.Context) (Stats, error)
	Ping(ctx context.Context) error
}

// The machine-readable codes of the notification service's failures a client may want to
// tell apart, answered as the envelope's code (errs.Error.Because; the Idempotency-Key
// codes are errs.ReasonKey*). The OpenAPI document lists, per route, the codes it may answer
// (x-error-codes).
const (
	ReasonNotFailed       = "not_failed"       // 409: only a FAILED ticket can be re-queued
	ReasonAlreadyRequeued = "already_requeued" // 409: another retry re-queued this failure first
)
