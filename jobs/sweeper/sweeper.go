// Package sweeper delivers PENDING tickets. One Run is one sweep: it takes over batches whose
// holder died or whose retry is due, forms new batches of up to 100 unassigned tickets, sends
// each batch through a Mailer with an idempotency key pinned to the batch, and records each
// ticket's outcome. It never loses a ticket and never sends one twice:
//
//   - every decision two sweeps could race on is an insert into a unique key (a ticket
//     generation's assignment to a batch, a batch attempt's claim, a ticket generation's
//     outcome), so concurrent sweeps split the work instead of repeating it;
//   - a batch's members and payload never change, so every re-send (after a crash, a
//     timeout, a 5xx) carries the same Idempotency-Key and the provider drops the repeat;
//   - a sweep that is killed leaves its batches leased until start + deadline + margin; the
//     next sweep after that takes them over and re-sends them under the same key.
package sweeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/services/notification"
)

// Store is what a sweep needs from the database.
type Store interface {
	// Backlog counts the tickets still to deliver.
	Backlog(ctx context.Context) (int64, error)
	// DueBatches returns up to limit open batches whose next attempt is due, oldest first.
	DueBatches(ctx context.Context, now time.Time, limit int) ([]notification.Batch, error)
	// Claim takes the lease on the batch's next attempt (an insert into a unique key per
	// batch, attempt and lease). ok is false when another sweep holds an unexpired lease.
	Claim(ctx context.Context, b *notification.Batch, holder string, now, until time.Time) (key string, ok bool, err error)
	// ReleaseClaim ends a claim at now, so the next sweep may take the batch at once.
	ReleaseClaim(ctx context.Context, key string, now time.Time) error
	// Candidates returns up to limit tickets whose stored status is PENDING and whose id is
	// greater than after, in id order.
	Candidates(ctx context.Context, after bson.ObjectID, limit int) ([]notification.Ticket, error)
	// CreateBatch stores b (held by its creator until b.NextAttemptAt), then assigns the
	// tickets to it. It returns the tickets it won; the others belong to other batches.
	CreateBatch(ctx context.Context, b *notification.Batch, tickets []notification.Ticket) ([]notification.Ticket, error)
	// Members returns the tickets assigned to a batch, in id order.
	Members(ctx context.Context, batchID string) ([]notification.Ticket, error)
	// Decide inserts outcomes; a ticket generation already decided keeps its first outcome,
	// and its key is returned in already.
	Decide(ctx context.Context, outcomes []notification.Outcome) (already map[string]bool, err error)
	// SaveBatch writes the batch as its holder sees it.
	SaveBatch(ctx context.Context, b *notification.Batch) error
	// DiscardBatch removes a batch that won no ticket (nothing refers to it).
	DiscardBatch(ctx context.Context, id string) error
	// Lookup reads a ticket generation's batch and outcome (either may be nil).
	Lookup(ctx context.Context, ticket bson.ObjectID, generation int) (*notification.Batch, *notification.Outcome, error)
	// Project copies a resolved ticket (notification.Resolve) onto its stored document,
	// if the document is still that generation and PENDING.
	Project(ctx context.Context, t *notification.Ticket) error
}

// Config tunes a sweep. Zero values take the defaults below.
type Config struct {
	From        string        // sender address of new batches
	BatchSize   int           // emails per provider request, at most MaxBatch (100)
	PageSize    int           // tickets read per query when forming batches (1000)
	MaxAttempts int           // attempts per batch before its tickets are FAILED (8)
	BackoffBase time.Duration // first retry delay (30s); doubles each attempt, with jitter
	BackoffMax  time.Duration // retry delay cap (1h)
	Deadline    time.Duration // the whole sweep (90s)
	SendTimeout time.Duration // one provider request (30s)
	Concurrency int           // batches in flight at once (4)
	RateLimit   float64       // provider requests per second (2)
	// LeaseMargin is added to the deadline to form the lease of every batch this sweep
	// holds: a killed sweep's batches are taken over once start+Deadline+LeaseMargin passed.
	LeaseMargin time.Duration // 30s
	// ProjectFor bounds the time spent copying outcomes onto ticket documents after the
	// deliveries (10s); what is left is projected by later sweeps.
	ProjectFor time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 || c.BatchSize > MaxBatch {
		c.BatchSize = MaxBatch
	}
	if c.PageSize <= 0 {
		c.PageSize = 1000
	}
	if c.PageSize < c.BatchSize {
		c.PageSize = c.BatchSize
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 30 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Hour
	}
	if c.Deadline <= 0 {
		c.Deadline = 90 * time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.SendTimeout > c.Deadline/2 {
		c.SendTimeout = c.Deadline / 2
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 2
	}
	if c.LeaseMargin <= 0 {
		c.LeaseMargin = 30 * time.Second
	}
	if c.ProjectFor <= 0 {
		c.ProjectFor = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = func() time.Time { return time.Now().UTC() }
	}
}

// Report is what one sweep did; the sweeper pushes it to the Pushgateway.
type Report struct {
	Backlog        int64         // tickets to deliver when the sweep started
	Batches        int           // batches sent or re-sent
	Requests       int           // provider requests (429s included)
	Sent           int           // tickets delivered (SUCCESS)
	Failed         int           // tickets FAILED for good
	Retried        int           // tickets whose batch will be retried later
	RateLimited    int           // 429 answers
	Released       int           // batches given back unsent (stopping)
	Projected      int           // ticket documents updated with their outcome
	DeliveredIn    time.Duration // from start until every batch was sent and recorded
	LatencyMax     time.Duration
	LatencySum     time.Duration // over Requests
	Duration       time.Duration
	Stopped        string // "drained", "deadline", "signal" or "auth"
	StoreErrors    int    // database failures during the sweep (the work is retried later)
	ProviderErrors int    // failed provider requests (any kind)
}

// ErrAuth means the provider refused the API key: the sweep stopped and nothing more will
// succeed until the configuration is fixed.
var ErrAuth = errors.New("the mail provider refused the API key")

// Sweeper runs sweeps.
type Sweeper struct {
	cfg     Config
	store   Store
	mailer  Mailer
	limiter *rate.Limiter
	tracer  trace.Tracer

	pauseMu    sync.Mutex
	pauseUntil time.Time
}

// New returns a Sweeper.
func New(store Store, mailer Mailer, cfg Config) *Sweeper {
	cfg.defaults()
	// Stay 2% under the provider's limit: requests spaced exactly at the limit arrive
	// closer together after network jitter, and each 429 costs a whole retry-after second.
	return &Sweeper{cfg: cfg, store: store, mailer: mailer,
		limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit*0.98), 1),
		tracer:  otel.Tracer("cineflow/sweeper")}
}

type job struct {
	batch    notification.Batch
	claim    string                // "" when the creator holds the batch
	tickets  []notification.Ticket // nil: read the members
	recovery bool
}

// decided is what projection needs of a ticket whose outcome this sweep recorded.
type decided struct {
	ticket  notification.Ticket // without content
	batch   *notification.Batch
	outcome notification.Outcome
}

type run struct {
	s          *Sweeper
	holder     string
	start      time.Time
	leaseUntil time.Time
	stop       context.Context // ends on signal, deadline for new work, or auth failure
	abort      context.CancelCauseFunc
	hard       context.Context // ends at the deadline; sends and records use it

	mu      sync.Mutex
	rep     Report
	decided []decided
	maybe   []notification.Ticket // seen assigned elsewhere: maybe decided, not projected
	// startErr is set when the database failed before the sweep could look at any work.
	startErr error
}

// maxProjectionQueue bounds what a sweep remembers for projection, so that its memory does
// not grow with the backlog; tickets beyond it are projected by later sweeps.
const maxProjectionQueue = 5000

// Run performs one sweep. It returns an error only when the sweep could not do its work
// (the database failed before anything was sent) or the provider refused the API key
// (ErrAuth); failed emails are reported, not returned.
func (s *Sweeper) Run(ctx context.Context) (Report, error) {
	cfg := s.cfg
	start := cfg.Now()
	ctx, span := s.tracer.Start(ctx, "sweep")
	defer span.End()

	hard, cancelHard := context.WithDeadline(context.WithoutCancel(ctx), time.Now().Add(cfg.Deadline))
	defer cancelHard()
	// Stop taking new work early enough for the last send and its records to finish.
	claimFor := max(cfg.Deadline-cfg.SendTimeout-2*time.Second, cfg.Deadline/2)
	stopCtx, cancelStop := context.WithTimeout(ctx, claimFor)
	defer cancelStop()
	stop, abort := context.WithCancelCause(stopCtx)
	defer abort(nil)

	r := &run{s: s, holder: bson.NewObjectID().Hex(), start: start,
		leaseUntil: start.Add(cfg.Deadline + cfg.LeaseMargin), stop: stop, abort: abort, hard: hard}

	// The backlog figure is for reporting: count it while the work starts.
	backlogDone := make(chan error, 1)
	go func() {
		n, err := s.store.Backlog(hard)
		r.rep.Backlog = n
		backlogDone <- err
	}()
	cfg.Logger.Info("sweep started", "holder", r.holder, "deadline", cfg.Deadline.String())

	jobs := make(chan job, cfg.Concurrency)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				r.process(j)
			}
		}()
	}
	r.produce(jobs)
	close(jobs)
	wg.Wait()
	r.rep.DeliveredIn = cfg.Now().Sub(start)
	if err := <-backlogDone; err != nil {
		r.storeError("count backlog", err)
	}

	pctx, cancelProject := context.WithTimeout(hard, cfg.ProjectFor)
	r.project(pctx)
	cancelProject()

	r.rep.Duration = cfg.Now().Sub(start)
	switch cause := context.Cause(stop); {
	case errors.Is(cause, ErrAuth):
		r.rep.Stopped = "auth"
	case ctx.Err() != nil:
		r.rep.Stopped = "signal"
	case stopCtx.Err() != nil:
		r.rep.Stopped = "deadline"
	default:
		r.rep.Stopped = "drained"
	}
	span.SetAttributes(attribute.Int("sweep.sent", r.rep.Sent), attribute.Int("sweep.failed", r.rep.Failed),
		attribute.Int("sweep.retried", r.rep.Retried), attribute.String("sweep.stopped", r.rep.Stopped))
	cfg.Logger.Info("sweep finished", "stopped", r.rep.Stopped, "backlog", r.rep.Backlog, "sent", r.rep.Sent, "failed", r.rep.Failed,
		"retried", r.rep.Retried, "batches", r.rep.Batches, "released", r.rep.Released,
		"rateLimited", r.rep.RateLimited, "projected", r.rep.Projected, "storeErrors", r.rep.StoreErrors,
		"deliveredInSeconds", r.rep.DeliveredIn.Seconds(), "durationSeconds", r.rep.Duration.Seconds())
	if r.rep.Stopped == "auth" {
		return r.rep, ErrAuth
	}
	if r.startErr != nil {
		return r.rep, fmt.Errorf("sweep could not run: %w", r.startErr)
	}
	return r.rep, nil
}

func (r *run) count(f func(*Report)) {
	r.mu.Lock()
	f(&r.rep)
	r.mu.Unlock()
}

func (r *run) storeError(what string, err error) {
	r.count(func(rep *Report) { rep.StoreErrors++ })
	r.s.cfg.Logger.Error("database error during sweep; the work is retried by a later sweep", "op", what, "error", err.Error())
}

// produce feeds jobs: first batches that are due again (retries, abandoned leases), then new
// batches of unassigned tickets, until there is nothing left or the sweep must stop.
func (r *run) produce(jobs chan<- job) {
	cfg := r.s.cfg
	due, err := r.s.store.DueBatches(r.stop, cfg.Now(), 10*cfg.PageSize/cfg.BatchSize)
	if err != nil {
		r.storeError("due batches", err)
		r.startErr = err
		return
	}
	for _, b := range due {
		if r.stop.Err() != nil {
			return
		}
		// Once started, a claim or a batch is written to the end (hard), so that a stop in
		// the middle cannot leave one half made and held until its lease ends.
		key, ok, err := r.s.store.Claim(r.hard, &b, r.holder, cfg.Now(), r.leaseUntil)
		if err != nil {
			r.storeError("claim", err)
			continue
		}
		if ok {
			select {
			case jobs <- job{batch: b, claim: key, recovery: true}:
			case <-r.stop.Done():
				r.release(job{batch: b, claim: key})
				return
			}
		}
	}

	var after bson.ObjectID
	for r.stop.Err() == nil {
		page, err := r.s.store.Candidates(r.stop, after, cfg.PageSize)
		if err != nil {
			if r.stop.Err() == nil {
				r.storeError("candidates", err)
				if after.IsZero() && len(due) == 0 {
					r.startErr = err
				}
			}
			return
		}
		if len(page) == 0 {
			return
		}
		after = page[len(page)-1].ID
		for i := 0; i < len(page) && r.stop.Err() == nil; i += cfg.BatchSize {
			chunk := page[i:min(i+cfg.BatchSize, len(page))]
			now := cfg.Now()
			b := notification.Batch{ID: bson.NewObjectID().Hex(), From: cfg.From, NextAttemptAt: r.leaseUntil,
				Errors: []notification.AttemptError{}, CreatedAt: now, UpdatedAt: now}
			won, err := r.s.store.CreateBatch(r.hard, &b, chunk)
			if err != nil {
				r.storeError("create batch", err)
				continue // whatever was assigned is recovered when the lease ends
			}
			r.noteLost(chunk, won)
			if len(won) == 0 {
				if err := r.s.store.DiscardBatch(r.hard, b.ID); err != nil {
					r.storeError("discard empty batch", err)
				}
				continue
			}
			b.Size = len(won)
			select {
			case jobs <- job{batch: b, tickets: won}:
			case <-r.stop.Done():
				r.release(job{batch: b})
				return
			}
		}
		if len(page) < cfg.PageSize {
			return
		}
	}
}

// noteLost remembers tickets another batch owns: if they are decided but their document
// still says PENDING (a projection that did not finish), this sweep projects them at the end.
func (r *run) noteLost(chunk, won []notification.Ticket) {
	if len(won) == len(chunk) {
		return
	}
	w := make(map[bson.ObjectID]bool, len(won))
	for _, t := range won {
		w[t.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range chunk {
		if !w[t.ID] && len(r.maybe) < maxProjectionQueue {
			t.Content = ""
			r.maybe = append(r.maybe, t)
		}
	}
}

// release gives a batch back unsent: due now, lease ended.
func (r *run) release(j job) {
	r.releaseUntil(j, r.s.cfg.Now())
}

func (r *run) releaseUntil(j job, next time.Time) {
	r.count(func(rep *Report) { rep.Released++ })
	b := j.batch
	b.NextAttemptAt = next
	b.UpdatedAt = r.s.cfg.Now()
	if err := r.s.store.SaveBatch(r.hard, &b); err != nil {
		r.storeError("release batch", err)
	}
	if j.claim != "" {
		if err := r.s.store.ReleaseClaim(r.hard, j.claim, r.s.cfg.Now()); err != nil {
			r.storeError("release claim", err)
		}
	}
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
		var err error
		if tickets, err = r.s.store.Members(r.hard, j.batch.ID); err != nil {
			r.storeError("batch members", err)
			return // the lease runs out and a later sweep retries
		}
		if len(tickets) == 0 {
			j.batch.Done = true
			j.batch.UpdatedAt = cfg.Now()
			if err := r.s.store.SaveBatch(r.hard, &j.batch); err != nil {
				r.storeError("close empty batch", err)
			}
			return
		}
	}
	sort.Slice(tickets, func(a, b int) bool { return bytes.Compare(tickets[a].ID[:], tickets[b].ID[:]) < 0 })
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
		r.count(func(rep *Report) { rep.ProviderErrors++ })
		if !errors.As(err, &sendErr) {
			sendErr = &SendError{Kind: Transient, Message: err.Error()}
		}
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
	now := cfg.Now()
	b := j.batch
	b.UpdatedAt = now
	b.Size = len(tickets)
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

	var already map[string]bool
	if len(decide) > 0 {
		var err error
		if already, err = r.s.store.Decide(r.hard, decide); err != nil {
			r.storeError("record outcomes", err)
			return // the batch stays open; a later sweep re-sends under the same key
		}
	}
	if err := r.s.store.SaveBatch(r.hard, &b); err != nil {
		r.storeError("save batch", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !b.Done && sendErr != nil && sendErr.Kind != Auth {
		r.rep.Retried += len(tickets)
	}
	if sendErr == nil || sendErr.Kind != Auth {
		r.rep.Batches++
	}
	for i, o := range decide {
		if already[o.Key] {
			continue // decided by an earlier holder of this batch
		}
		if o.Status == notification.StatusSuccess {
			r.rep.Sent++
		} else {
			r.rep.Failed++
		}
		if len(r.decided) < maxProjectionQueue {
			t := tickets[i]
			t.Content = ""
			r.decided = append(r.decided, decided{ticket: t, batch: &b, outcome: o})
		}
	}
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

// project copies the outcomes of this sweep (and of earlier sweeps it noticed) onto the
// ticket documents, with what time is left. It is only a convenience for list filters and
// reporting: readers resolve tickets from the delivery records anyway.
func (r *run) project(ctx context.Context) {
	for _, d := range r.decided {
		if ctx.Err() != nil {
			return
		}
		t := notification.Resolve(d.ticket, d.batch, &d.outcome)
		if err := r.s.store.Project(ctx, &t); err != nil {
			r.projectError(ctx, err)
			return
		}
		r.rep.Projected++
	}
	for _, t := range r.maybe {
		if ctx.Err() != nil {
			return
		}
		b, o, err := r.s.store.Lookup(ctx, t.ID, t.Generation)
		if err != nil {
			r.projectError(ctx, err)
			return
		}
		if o == nil {
			continue
		}
		rt := notification.Resolve(t, b, o)
		if err := r.s.store.Project(ctx, &rt); err != nil {
			r.projectError(ctx, err)
			return
		}
		r.rep.Projected++
	}
}

// projectError logs a failed projection, unless its time budget simply ran out.
func (r *run) projectError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		r.s.cfg.Logger.Info("projection time is up; later sweeps project the rest", "projected", r.rep.Projected)
		return
	}
	r.storeError("project outcome", err)
}

var tc = propagation.TraceContext{}

func spanContextOf(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	ctx := tc.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}
