package notification

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Bulk re-queue: an operator puts back to PENDING, in one request, the FAILED tickets that
// failed in a time window (and whose reason contains some text), each exactly as a single
// retry would (TicketStore.Requeue: the re-queue of a generation is decided by inserting its
// generation record, so racing retries, bulk re-queues and sweeps re-queue a generation once).

// Limits of a bulk re-queue.
const (
	// DefaultRequeueLimit is how many matching tickets one request takes when it names no
	// limit; MaxRequeueLimit is the most it may name. A request that stops at its limit says
	// so (More) and where to go on (Next).
	DefaultRequeueLimit = 1000
	MaxRequeueLimit     = 10000
	// MaxRequeueReason bounds ReasonContains.
	MaxRequeueReason = 200
	// MaxRequeueCursor bounds a cursor's length.
	MaxRequeueCursor = 32
)

// RequeueFilter selects FAILED tickets for a bulk re-queue, by when they failed (the time
// their current generation's FAILED outcome was recorded) and why.
type RequeueFilter struct {
	// FailedSince is required: tickets that failed at or after it. It also bounds the work:
	// the store stops reading failed tickets once it has passed it.
	FailedSince time.Time
	// FailedUntil, when set, excludes tickets that failed after it.
	FailedUntil time.Time
	// ReasonContains, when set, keeps the tickets whose failure reason contains it (ignoring
	// case).
	ReasonContains string
	// Limit bounds the matching tickets one request takes (0: DefaultRequeueLimit).
	Limit int
	// Cursor is where the request goes on: the Next of an earlier one with the same filter
	// ("" to start with the newest failures).
	Cursor string
	// DryRun counts the matching tickets without re-queuing them.
	DryRun bool
}

// Validate checks a filter and sets the default limit. The error, if any, is Invalid with a
// reason per field.
func (f *RequeueFilter) Validate() error {
	fields := map[string]string{}
	if f.FailedSince.IsZero() {
		fields["failedSince"] = "is required: the time (RFC 3339) of the first failures to re-queue"
	}
	if !f.FailedUntil.IsZero() && !f.FailedSince.IsZero() && f.FailedUntil.Before(f.FailedSince) {
		fields["failedUntil"] = "must not be before failedSince"
	}
	if len(f.ReasonContains) > MaxRequeueReason || !utf8.ValidString(f.ReasonContains) {
		fields["reasonContains"] = fmt.Sprintf("must be UTF-8 text of at most %d bytes", MaxRequeueReason)
	}
	switch {
	case f.Limit == 0:
		f.Limit = DefaultRequeueLimit
	case f.Limit < 0 || f.Limit > MaxRequeueLimit:
		fields["limit"] = fmt.Sprintf("must be 1 to %d", MaxRequeueLimit)
	}
	if len(f.Cursor) > MaxRequeueCursor {
		fields["cursor"] = "must be the next of an earlier answer"
	}
	if len(fields) > 0 {
		return errs.Fields(fields)
	}
	return nil
}

// RequeueReport is what a bulk re-queue did.
type RequeueReport struct {
	// Requeued is how many tickets this request put back to PENDING (with DryRun, none).
	Requeued int `json:"requeued"`
	// Matched is how many FAILED tickets matched the filter. A matched ticket not re-queued
	// was re-queued by someone else meanwhile (a retry, another bulk re-queue), or the
	// request is a dry run.
	Matched int `json:"matched"`
	// Examined is how many entries of the list of failures the request read (the cost).
	Examined int `json:"examined"`
	// More says that failures remain to examine (the request stopped at its limit, or at
	// its share of work or time): send the request again with Next as its cursor.
	More bool   `json:"more"`
	Next string `json:"next,omitempty"`
	// DryRun echoes the request's: nothing was re-queued.
	DryRun bool `json:"dryRun"`
}
