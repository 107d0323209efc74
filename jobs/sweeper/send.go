package sweeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cineflow/cineflow/services/notification"
)

// KeyWindow is how long after a batch's first send it may be sent again under its
// Idempotency-Key: Resend keeps keys for 24 hours; an hour of margin covers clock skew and a
// send in flight.
const KeyWindow = 23 * time.Hour

// OutcomeStore is what sending a batch and recording what happened needs from the database:
// the members of a batch taken over, the outcomes (the decisions), and the batch's record,
// lease, figures and projection entry. Methods shared with BatchStore are documented there.
type OutcomeStore interface {
	// Members returns the tickets of a batch taken over, verifying its member list (in b).
	Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error)
	// Decide inserts outcomes; a ticket generation already decided keeps its first outcome,
	// and its key is returned in already.
	Decide(ctx context.Context, outcomes []notification.Outcome) (already map[string]bool, err error)
	// Outcomes reads the outcomes of ticket generations (missing ones are absent).
	Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error)
	// EnqueueProjection puts a decided batch on the projection queue: its outcomes are still
	// to be copied onto the ticket documents.
	EnqueueProjection(ctx context.Context, batchID string) error
	AppendTally(ctx context.Context, key string, d notification.Tally) error
	SaveBatch(ctx context.Context, b *notification.Batch) error
	ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error
	CloseBatch(ctx context.Context, id string) error
}

func (s *Sweeper) pause(d time.Duration) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	if until := time.Now().Add(d); until.After(s.pauseUntil) {
		s.pauseUntil = until
	}
}

// wait blocks until the provider may be called: the client-side rate limit, and any pause
// a 429's retry-after asked for.
func (s *Sweeper) wait(ctx context.Context) error {
	for {
		s.pauseMu.Lock()
		d := time.Until(s.pauseUntil)
		s.pauseMu.Unlock()
		if d <= 0 {
			break
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.limiter.Wait(ctx)
}

// DeliveryUnknown is the reason given to the tickets of a batch that can no longer be sent
// under its Idempotency-Key.
func DeliveryUnknown(firstSend time.Time) string {
	return fmt.Sprintf("delivery unknown: first sent at %s, idempotency key expired; requeue to send again",
		firstSend.UTC().Format(time.RFC3339))
}

// prepareTakeOver readies a batch taken over from another sweep: its members (verified),
// and whether it needs a send at all. A batch whose tickets are all decided (its holder
// died before closing it) is closed without a send; one first sent more than KeyWindow ago
// is not sent again (delivery unknown). It returns the tickets to send, or nil when the
// batch was dealt with.
func (r *run) prepareTakeOver(j *job) []notification.Ticket {
	cfg := r.s.cfg
	var st OutcomeStore = r.s.store
	tickets, err := st.Members(r.hard, &j.batch)
	if err != nil {
		r.storeError("batch members", err)
		return nil // the lease runs out and a later sweep retries
	}
	keys := make([]string, len(tickets))
	for i, t := range tickets {
		keys[i] = notification.AssignmentKey(t.ID, t.Generation)
	}
	decided, err := st.Outcomes(r.hard, keys)
	if err != nil {
		r.storeError("batch outcomes", err)
		return nil
	}
	now := cfg.Now()
	b := j.batch
	switch {
	case len(tickets) == 0 || len(decided) == len(tickets):
		r.finish(j, tickets, nil)
		return nil
	case b.FirstSendAt != nil && now.Sub(*b.FirstSendAt) > KeyWindow:
		reason := DeliveryUnknown(*b.FirstSendAt)
		var out []notification.Outcome
		for _, t := range tickets {
			if decided[notification.AssignmentKey(t.ID, t.Generation)] == nil {
				out = append(out, notification.Outcome{Key: notification.AssignmentKey(t.ID, t.Generation), Ticket: t.ID,
					Generation: t.Generation, Status: notification.StatusFailed, Error: reason, Attempts: b.Attempts, At: now})
			}
		}
		j.batch.LastError = reason
		j.batch.Errors = append(j.batch.Errors, notification.AttemptError{At: now, Attempt: b.Attempts, Error: reason})
		if r.finish(j, tickets, out) {
			r.count(func(rep *Report) { rep.Unknown += len(out) })
		}
		return nil
	case b.FirstSendAt == nil:
		// Persist the first send before it happens, so that a later holder knows.
		j.batch.FirstSendAt = &now
		j.batch.UpdatedAt = now
		if err := st.SaveBatch(r.hard, &j.batch); err != nil {
			r.storeError("save batch", err)
			return nil
		}
	}
	return tickets
}

// process sends one batch (re-sending it after a 429 or an in-flight 409 while time allows)
// and records what happened.
func (r *run) process(j job) {
	cfg := r.s.cfg
	if r.stop.Err() != nil {
		r.release(j)
		return
	}
	tickets := j.tickets
	if tickets == nil {
		if tickets = r.prepareTakeOver(&j); tickets == nil {
			return
		}
	}
	slices.SortFunc(tickets, func(a, b notification.Ticket) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	emails := make([]Email, len(tickets))
	links := make([]trace.Link, 0, len(tickets))
	for i, t := range tickets {
		emails[i] = Email{TicketID: t.ID.Hex(), From: j.batch.From, To: t.RecipientEmails, Subject: t.Subject, Text: t.Content}
		if sc := spanContextOf(t.TraceParent); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}

	ctx, span := r.s.tracer.Start(r.hard, "resend.send", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("batch.id", j.batch.ID), attribute.Int("batch.size", len(emails)),
			attribute.Int("batch.attempt", j.batch.Attempts+1), attribute.Bool("batch.recovery", j.recovery)))
	defer span.End()

	var outcomes []Outcome
	var sendErr *SendError
	for inFlightTries := 0; ; {
		if err := r.s.wait(r.stop); err != nil {
			r.release(j)
			return
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.SendTimeout)
		t0 := time.Now()
		j.sent = true
		out, err := r.s.mailer.Send(sctx, j.batch.IdempotencyKey(), emails)
		lat := time.Since(t0)
		cancel()
		r.count(func(rep *Report) {
			rep.Requests++
			rep.LatencySum += lat
			rep.LatencyMax = max(rep.LatencyMax, lat)
		})
		if err == nil {
			outcomes, sendErr = out, nil
			if len(outcomes) != len(emails) {
				sendErr = &SendError{Kind: Transient, Message: fmt.Sprintf("provider answered %d results for %d emails", len(outcomes), len(emails))}
			}
			break
		}
		if !errors.As(err, &sendErr) {
			sendErr = &SendError{Kind: Transient, Message: err.Error()}
		}
		r.providerError(&j, emails, sendErr)
		if sendErr.Kind == RateLimited {
			r.count(func(rep *Report) { rep.RateLimited++ })
			wait := max(sendErr.RetryAfter, time.Second)
			r.s.pause(wait)
			if dl, ok := r.stop.Deadline(); !ok || time.Now().Add(wait).Before(dl) {
				continue // nothing was sent: try again once the window reopens
			}
			r.releaseUntil(j, cfg.Now().Add(wait))
			return
		}
		if sendErr.Kind == InFlight && inFlightTries < 3 {
			inFlightTries++
			select {
			case <-time.After(time.Second):
				continue
			case <-r.stop.Done():
			}
		}
		break
	}
	if sendErr != nil {
		span.SetStatus(codes.Error, sendErr.Error())
	}
	r.record(j, tickets, outcomes, sendErr)
}

// record writes the result of one attempt: outcomes first (the decision), then the batch.
func (r *run) record(j job, tickets []notification.Ticket, outcomes []Outcome, sendErr *SendError) {
	cfg := r.s.cfg
	var st OutcomeStore = r.s.store
	now := cfg.Now()
	b := &j.batch
	b.UpdatedAt = now
	var decide []notification.Outcome
	switch {
	case sendErr == nil:
		b.Attempts++
		b.Done = true
		for i, t := range tickets {
			o := notification.Outcome{Key: notification.AssignmentKey(t.ID, t.Generation), Ticket: t.ID,
				Generation: t.Generation, Attempts: b.Attempts, At: now}
			if outcomes[i].Rejected != "" {
				o.Status, o.Error = notification.StatusFailed, "rejected by the provider: "+outcomes[i].Rejected
			} else {
				sent := now
				o.Status, o.ProviderMessageID, o.SentAt = notification.StatusSuccess, outcomes[i].MessageID, &sent
			}
			decide = append(decide, o)
		}
	case sendErr.Kind == Auth:
		// Not the tickets' fault: no attempt is charged. Stop the sweep.
		b.LastError = sendErr.Error()
		b.NextAttemptAt = now.Add(cfg.BackoffBase)
		r.abort(ErrAuth)
	default:
		b.Attempts++
		b.LastError = sendErr.Error()
		b.Errors = append(b.Errors, notification.AttemptError{At: now, Attempt: b.Attempts, Error: sendErr.Error()})
		reason := ""
		switch {
		case sendErr.Kind == Permanent:
			reason = "rejected by the provider: " + sendErr.Error()
		case b.Attempts >= cfg.MaxAttempts:
			reason = fmt.Sprintf("gave up after %d attempts: %s", b.Attempts, sendErr.Error())
		default:
			b.NextAttemptAt = now.Add(r.s.backoff(b.Attempts))
		}
		if reason != "" {
			b.Done = true
			for _, t := range tickets {
				decide = append(decide, notification.Outcome{Key: notification.AssignmentKey(t.ID, t.Generation),
					Ticket: t.ID, Generation: t.Generation, Status: notification.StatusFailed, Error: reason,
					Attempts: b.Attempts, At: now})
			}
		}
	}
	if sendErr == nil || sendErr.Kind != Auth {
		r.count(func(rep *Report) { rep.Batches++ })
	}
	if b.Done {
		r.finish(&j, tickets, decide)
		return
	}
	if err := st.SaveBatch(r.hard, b); err != nil {
		r.storeError("save batch", err)
	}
	if j.claim > 0 {
		if err := st.ReleaseClaim(r.hard, b.ID, j.claim, now); err != nil {
			r.storeError("release claim", err)
		}
	}
	if sendErr != nil && sendErr.Kind != Auth {
		r.count(func(rep *Report) { rep.Retried += len(tickets) })
	}
}

// finish decides a batch's tickets and closes the batch, in an order that a crash at any
// point leaves the batch open for a later holder to finish the same way: the outcomes (the
// decision), the batch's figures (once per batch), its projection entry, the batch marked
// done, then its open entry removed. It reports whether the outcomes were recorded.
func (r *run) finish(j *job, tickets []notification.Ticket, decide []notification.Outcome) bool {
	var st OutcomeStore = r.s.store
	b := &j.batch
	b.Done = true
	b.UpdatedAt = r.s.cfg.Now()
	var already map[string]bool
	if len(decide) > 0 {
		var err error
		if already, err = st.Decide(r.hard, decide); err != nil {
			r.storeError("record outcomes", err)
			return false // the batch stays open; a later sweep re-sends under the same key
		}
	}
	// The batch's figures count every member by its recorded outcome: outcomes decided
	// earlier (by a holder that died before closing the batch) are read back.
	final := make(map[string]*notification.Outcome, len(tickets))
	var unread []string
	for i := range decide {
		if !already[decide[i].Key] {
			final[decide[i].Key] = &decide[i]
		}
	}
	for _, t := range tickets {
		if k := notification.AssignmentKey(t.ID, t.Generation); final[k] == nil {
			unread = append(unread, k)
		}
	}
	if len(unread) > 0 {
		earlier, err := st.Outcomes(r.hard, unread)
		if err != nil {
			r.storeError("read outcomes", err)
			return false
		}
		for k, o := range earlier {
			final[k] = o
		}
	}
	var tally notification.Tally
	for _, o := range final {
		if o.Status == notification.StatusSuccess {
			tally.Success++
		} else {
			tally.Failed++
		}
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"count outcomes", func() error { return st.AppendTally(r.hard, notification.BatchTallyKey(b.ID), tally) }},
		{"queue projection", func() error { return st.EnqueueProjection(r.hard, b.ID) }},
		{"save batch", func() error { return st.SaveBatch(r.hard, b) }},
		{"close batch", func() error { return st.CloseBatch(r.hard, b.ID) }},
	}
	if len(final) == 0 { // a batch that won no ticket (its creator died before assigning)
		steps = steps[2:]
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			r.storeError(step.what, err)
			break
		}
	}
	if j.claim > 0 {
		if err := st.ReleaseClaim(r.hard, b.ID, j.claim, r.s.cfg.Now()); err != nil {
			r.storeError("release claim", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range decide {
		if already[o.Key] {
			continue // decided by an earlier holder of this batch
		}
		if o.Status == notification.StatusSuccess {
			r.rep.Sent++
		} else {
			r.rep.Failed++
		}
	}
	if r.decidedTickets+len(final) <= maxProjectionMemory {
		r.decided[b.ID] = decidedBatch{batch: *b, outcomes: final}
		r.decidedTickets += len(final)
	}
	return true
}

// backoff is the delay before retry attempt n+1: exponential from BackoffBase, capped at
// BackoffMax, with jitter over its upper half so that retries of many batches spread out.
func (s *Sweeper) backoff(attempt int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < attempt && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

var tc = propagation.TraceContext{}

func spanContextOf(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	ctx := tc.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}
