// Package sweeper delivers PENDING tickets. One Run is one sweep: it takes over batches whose
// holder died or whose retry is due, forms new batches of up to 100 queued tickets, sends
// each batch through a Mailer with an idempotency key pinned to the batch, records each
// ticket's outcome, and then copies outcomes onto the ticket documents. It never loses a
// ticket and never sends one twice:
//
//   - every decision two sweeps could race on is an insert into a unique key (a ticket
//     generation's assignment to a batch, a batch's next claim, a ticket generation's
//     outcome), so concurrent sweeps split the work instead of repeating it;
//   - a batch's members and payload never change, so every re-send (after a crash, a
//     timeout, a 5xx) carries the same Idempotency-Key and the provider drops the repeat;
//   - a sweep that is killed leaves its batches leased until start + deadline + margin; the
//     next sweep after that takes them over and re-sends them under the same key, unless the
//     provider has forgotten the key by then: a batch first sent more than KeyWindow ago is
//     not sent again, its tickets end FAILED with "delivery unknown" for an operator to
//     re-queue.
//
// Work is found in collections that hold only what is left to do (the delivery queue, the
// open batches, the projection queue), so a sweep's cost does not grow with the tickets
// delivered before it.
package sweeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
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

// Store is what a sweep needs from the database (services/notification/mongostore implements
// it; see notification/delivery.go for the records).
type Store interface {
	// Backlog counts the tickets still to deliver: queued, and in open batches.
	Backlog(ctx context.Context) (int64, error)
	// OpenBatches returns up to limit batches not yet done.
	OpenBatches(ctx context.Context, limit int) ([]notification.OpenBatch, error)
	// Claim takes the next lease on a batch: it inserts claim n, starting from from (the last
	// claim number known, 0 for none) and moving on only over claims that ended, so the
	// winner of claim n learns n from its own insert. ok is false when a lease is held.
	Claim(ctx context.Context, batchID string, from int, holder string, now, until time.Time) (n int, ok bool, err error)
	// ReleaseClaim ends claim n at now, so the next sweep may take the batch at once.
	ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error
	// Batch reads a batch (nil when there is none).
	Batch(ctx context.Context, id string) (*notification.Batch, error)
	// QueueHead returns up to limit queued ticket generations of queue shard shard (of
	// notification.QueueShards), oldest queued first.
	QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error)
	// Dequeue removes queue entries.
	Dequeue(ctx context.Context, keys []string) error
	// GenerationStarted reports whether a ticket's generation exists (its re-queue is decided).
	GenerationStarted(ctx context.Context, ticket bson.ObjectID, gen int) (bool, error)
	// AppendTally records a change of the delivery figures under a unique key, once.
	AppendTally(ctx context.Context, key string, d notification.Tally) error
	// ReadTally sums the figures (folding them, so that reads stay short).
	ReadTally(ctx context.Context) (notification.Tally, error)
	// InsertBatch stores a new batch (held by its creator until b.NextAttemptAt) and opens it.
	InsertBatch(ctx context.Context, b *notification.Batch) error
	// Assign assigns ticket generations to a batch; it returns the indexes another batch owns.
	Assign(ctx context.Context, b *notification.Batch, members []notification.Member) (lost map[int]bool, err error)
	// Members returns the tickets of a batch taken over, verifying its member list (in b).
	Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error)
	// Decide inserts outcomes; a ticket generation already decided keeps its first outcome,
	// and its key is returned in already.
	Decide(ctx context.Context, outcomes []notification.Outcome) (already map[string]bool, err error)
	// Outcomes reads the outcomes of ticket generations (missing ones are absent).
	Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error)
	// SaveBatch writes the batch (and its open entry) as its holder sees it.
	SaveBatch(ctx context.Context, b *notification.Batch) error
	// CloseBatch removes a done batch from the open batches.
	CloseBatch(ctx context.Context, id string) error
	// DiscardBatch removes a batch that won no ticket.
	DiscardBatch(ctx context.Context, id string) error
	// EnqueueProjection, ProjectionHead and ProjectionDone keep the batches whose outcomes
	// are still to be copied onto the ticket documents.
	EnqueueProjection(ctx context.Context, batchID string) error
	ProjectionHead(ctx context.Context, limit int) ([]string, error)
	ProjectionDone(ctx context.Context, batchID string) error
	// ProjectMember copies a member's outcome onto its ticket document.
	ProjectMember(ctx context.Context, m notification.Member, b *notification.Batch, o *notification.Outcome) error
}

// KeyWindow is how long after a batch's first send it may be sent again under its
// Idempotency-Key: Resend keeps keys for 24 hours; an hour of margin covers clock skew and a
// send in flight.
const KeyWindow = 23 * time.Hour

// orphanGrace is how long a queue entry of a re-queued generation may wait for its
// generation record (the re-queue decision, inserted just after it) before it counts as
// left by a re-queue that failed, and is removed.
const orphanGrace = 10 * time.Minute

// maxOpenRead bounds the open batches one sweep reads.
const maxOpenRead = 20000

// Config tunes a sweep. Zero values take the defaults below.
type Config struct {
	From        string        // sender address of new batches
	BatchSize   int           // emails per provider request, at most MaxBatch (100)
	PageSize    int           // queue entries read per query when forming batches (1000)
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
	// DBShare bounds the share of time the sweep's deliveries keep the database busy: after
	// each store call the sweep waits so that the time spent in calls stays under DBShare
	// of the time elapsed (0.25; 1 and above: no bound). Measured on the embedded database,
	// a drain at 0.25 left ticket creation beside it 83% of its quiet rate and under 2x its
	// quiet p99; unbounded, 40% and 8x (but drained 4x faster).
	DBShare float64
	// ProjectShare is the same bound for projection (0.25; 1 and above: no bound).
	ProjectShare float64
	// DBConcurrency bounds the sweep's store calls in flight at once (1: on the dev
	// database concurrent writes only wait on each other; projection runs after the
	// deliveries, one call at a time).
	DBConcurrency int
	Logger        *slog.Logger
	Now           func() time.Time
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
	if c.DBShare <= 0 {
		c.DBShare = 0.25
	}
	if c.ProjectShare <= 0 {
		c.ProjectShare = 0.25
	}
	if c.DBConcurrency <= 0 {
		c.DBConcurrency = 1
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
	Backlog        int64         // tickets to deliver when the sweep started (decided by it + left after it)
	Batches        int           // batches sent or re-sent
	Requests       int           // provider requests (429s included)
	Sent           int           // tickets delivered (SUCCESS)
	Failed         int           // tickets FAILED for good (Unknown included)
	Unknown        int           // tickets FAILED because their batch's key expired (delivery unknown)
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
	store   Store // deliveries, paced by DBShare
	project Store // projection, paced by ProjectShare
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
	return &Sweeper{cfg: cfg, store: Paced(store, cfg.DBShare, cfg.DBConcurrency), project: Paced(store, cfg.ProjectShare, 1), mailer: mailer,
		limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit*0.98), 1),
		tracer:  otel.Tracer("cineflow/sweeper")}
}

type job struct {
	batch    notification.Batch
	claim    int                   // the claim held; 0 for the batch's creator (held until its lease)
	created  bool                  // this sweep created the batch
	tickets  []notification.Ticket // nil: read the members
	recovery bool
	sent     bool // a send of it was tried in this sweep
}

// decidedBatch is what projection needs of a batch this sweep decided.
type decidedBatch struct {
	batch    notification.Batch
	outcomes map[string]*notification.Outcome
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
	decided map[string]decidedBatch // this sweep's decided batches, for projection
	// decidedTickets counts the tickets in decided, which is bounded by maxProjectionMemory.
	decidedTickets int
	// startErr is set when the database failed before the sweep could look at any work.
	startErr error
}

// maxProjectionMemory bounds the tickets whose outcomes a sweep keeps in memory for
// projection; beyond it projection reads them back.
const maxProjectionMemory = 5000

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

	r := &run{s: s, holder: bson.NewObjectID().Hex(), start: start, decided: map[string]decidedBatch{},
		leaseUntil: start.Add(cfg.Deadline + cfg.LeaseMargin), stop: stop, abort: abort, hard: hard}

	cfg.Logger.Info("sweep started", "holder", r.holder, "deadline", cfg.Deadline.String())

	jobs := make(chan job, cfg.Concurrency)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				r.process(j)
			}
		})
	}
	r.produce(jobs)
	close(jobs)
	wg.Wait()
	r.rep.DeliveredIn = cfg.Now().Sub(start)
	// The backlog when the sweep started: what it decided plus what is left (counted now,
	// when the queue is short).
	r.rep.Backlog = int64(r.rep.Sent + r.rep.Failed)
	if r.startErr == nil {
		left, err := s.store.Backlog(hard)
		if err != nil {
			r.storeError("count backlog", err)
		}
		r.rep.Backlog += left
	}

	pctx, cancelProject := context.WithTimeout(hard, cfg.ProjectFor)
	r.project(pctx)
	cancelProject()
	if r.startErr == nil && hard.Err() == nil {
		if _, err := s.store.ReadTally(hard); err != nil { // keeps the figures' tail short
			r.storeError("fold the figures", err)
		}
	}

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
		"deliveryUnknown", r.rep.Unknown, "retried", r.rep.Retried, "batches", r.rep.Batches, "released", r.rep.Released,
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
// batches of queued tickets, until there is nothing left or the sweep must stop.
func (r *run) produce(jobs chan<- job) {
	cfg := r.s.cfg
	st := r.s.store
	open, err := st.OpenBatches(r.stop, maxOpenRead)
	if err != nil {
		r.storeError("open batches", err)
		r.startErr = err
		return
	}
	now := cfg.Now()
	due := open[:0]
	for _, b := range open {
		if !b.Due.After(now) {
			due = append(due, b)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].Due.Before(due[j].Due) })
	if limit := 10 * cfg.PageSize / cfg.BatchSize; len(due) > limit {
		due = due[:limit]
	}
	for _, ob := range due {
		if r.stop.Err() != nil {
			return
		}
		if j, ok := r.takeOver(ob); ok {
			select {
			case jobs <- j:
			case <-r.stop.Done():
				r.release(j)
				return
			}
		}
	}
	r.formBatches(jobs)
}

// takeOver claims a due batch and reads it afresh: the claim is won first, so what is read
// is what the previous holder last wrote. A batch done, or not due after all (the open
// entry read was stale), is released at once.
func (r *run) takeOver(ob notification.OpenBatch) (job, bool) {
	cfg := r.s.cfg
	st := r.s.store
	// Once started, a claim or a batch is written to the end (hard), so that a stop in the
	// middle cannot leave one half made and held until its lease ends.
	n, ok, err := st.Claim(r.hard, ob.ID, ob.Claims, r.holder, cfg.Now(), r.leaseUntil)
	if err != nil {
		r.storeError("claim", err)
		return job{}, false
	}
	if !ok {
		return job{}, false
	}
	b, err := st.Batch(r.hard, ob.ID)
	now := cfg.Now()
	switch {
	case err != nil:
		r.storeError("read claimed batch", err)
	case b == nil: // an open entry without its batch (a creation that failed half-way)
		if err := st.CloseBatch(r.hard, ob.ID); err != nil {
			r.storeError("close orphan open entry", err)
		}
	case b.Done: // a holder finished it but did not close it
		if err := st.CloseBatch(r.hard, ob.ID); err != nil {
			r.storeError("close done batch", err)
		}
	case b.NextAttemptAt.After(now):
		// not due: leave it to its holder or its backoff
	default:
		b.Claims = n
		return job{batch: *b, claim: n, recovery: true}, true
	}
	if err := st.ReleaseClaim(r.hard, ob.ID, n, now); err != nil {
		r.storeError("release claim", err)
	}
	return job{}, false
}

// formBatches reads the delivery queue a page at a time, one shard after the other (from
// one picked at random, so that concurrent sweeps start apart and no shard always waits
// last), puts its entries into new batches of BatchSize (a batch may take entries of two
// shards), hands the batches to the workers, and removes the entries it handled (assigned
// by this sweep or, for the ones it lost, by another) before it reads on.
func (r *run) formBatches(jobs chan<- job) {
	cfg := r.s.cfg
	st := r.s.store
	var (
		buf  []notification.QueueEntry // read, not yet in a batch
		done []string                  // assigned (or left by a failed re-queue): to dequeue
		seen = map[string]bool{}       // every entry read by this sweep
	)
	// batches forms batches from buf, all of it or only full ones; false means stop.
	batches := func(all bool) bool {
		for len(buf) >= cfg.BatchSize || (all && len(buf) > 0) {
			if r.stop.Err() != nil {
				return false
			}
			chunk := buf[:min(cfg.BatchSize, len(buf))]
			buf = buf[len(chunk):]
			j, assigned, ok := r.newBatch(chunk)
			if !assigned {
				return false // the database failed: the entries stay queued for a later sweep
			}
			for _, e := range chunk {
				done = append(done, e.Key)
			}
			if !ok {
				continue
			}
			select {
			case jobs <- j:
			case <-r.stop.Done():
				r.release(j)
				return false
			}
		}
		return true
	}
	dequeue := func() bool {
		if len(done) == 0 {
			return true
		}
		err := st.Dequeue(r.hard, done)
		done = nil
		if err != nil {
			r.storeError("dequeue", err)
			return false
		}
		return true
	}
	first := rand.N(notification.QueueShards)
	for k := range notification.QueueShards {
		shard := (first + k) % notification.QueueShards
		for r.stop.Err() == nil {
			page, err := st.QueueHead(r.stop, shard, cfg.PageSize)
			if err != nil {
				if r.stop.Err() == nil {
					r.storeError("delivery queue", err)
					if k == 0 && len(seen) == 0 {
						r.startErr = err
					}
				}
				dequeue()
				return
			}
			fresh := page[:0]
			for _, e := range page {
				if !seen[e.Key] {
					seen[e.Key] = true
					fresh = append(fresh, e)
				}
			}
			keep, drop := r.checkGenerations(fresh)
			buf = append(buf, keep...)
			done = append(done, drop...)
			if !batches(false) || !dequeue() {
				dequeue()
				return
			}
			if len(page) < cfg.PageSize || len(fresh) == 0 {
				break // the shard is drained (what is left is in buf, or waits for its re-queue)
			}
		}
		if r.stop.Err() != nil {
			break
		}
	}
	batches(true)
	dequeue()
}

// checkGenerations keeps the entries whose generation exists. An entry of a re-queued
// generation whose re-queue is not decided is young (the re-queue is under way: left queued)
// or was left by a re-queue that failed (removed: returned in drop).
func (r *run) checkGenerations(page []notification.QueueEntry) (keep []notification.QueueEntry, drop []string) {
	now := r.s.cfg.Now()
	for _, e := range page {
		if e.Generation == 0 {
			keep = append(keep, e)
			continue
		}
		ok, err := r.s.store.GenerationStarted(r.hard, e.Ticket, e.Generation)
		switch {
		case err != nil:
			r.storeError("read generation", err)
		case ok:
			keep = append(keep, e)
		case now.Sub(e.QueuedAt) > orphanGrace:
			drop = append(drop, e.Key)
		}
	}
	return keep, drop
}

// newBatch stores a batch of the chunk's ticket generations and assigns them to it.
// assigned reports that every entry of the chunk is now assigned (to this batch or another);
// ok that the batch won tickets and is to be sent.
func (r *run) newBatch(chunk []notification.QueueEntry) (j job, assigned, ok bool) {
	cfg := r.s.cfg
	st := r.s.store
	now := cfg.Now()
	members := make([]notification.Member, len(chunk))
	oldest := chunk[0].QueuedAt
	for i, e := range chunk {
		members[i] = notification.Member{Ticket: e.Ticket, Generation: e.Generation}
		if e.QueuedAt.Before(oldest) {
			oldest = e.QueuedAt
		}
	}
	// FirstSendAt is set from the start: the batch may reach the provider from now on. If
	// it is given back unsent, it is cleared.
	sendFrom := now
	b := notification.Batch{ID: bson.NewObjectID().Hex(), From: cfg.From, Size: len(chunk), Members: members,
		FirstSendAt: &sendFrom, NextAttemptAt: r.leaseUntil, Oldest: oldest, Errors: []notification.AttemptError{},
		CreatedAt: now, UpdatedAt: now}
	if err := st.InsertBatch(r.hard, &b); err != nil {
		r.storeError("create batch", err)
		if err := st.DiscardBatch(r.hard, b.ID); err != nil {
			r.storeError("discard batch", err)
		}
		return j, false, false
	}
	lost, err := st.Assign(r.hard, &b, members)
	if err != nil {
		// Some may be assigned: the batch keeps its candidates, unverified, and is taken
		// over when its lease ends; the entries stay queued (a later assignment loses).
		r.storeError("assign tickets", err)
		return j, false, false
	}
	won := make([]notification.Ticket, 0, len(chunk))
	kept := make([]notification.Member, 0, len(chunk))
	for i, e := range chunk {
		if lost[i] {
			continue
		}
		won = append(won, e.AsTicket())
		kept = append(kept, members[i])
		if e.Generation > 0 { // count the re-queue, if its holder could not
			if err := st.AppendTally(r.hard, notification.RequeueTallyKey(e.Ticket, e.Generation-1), notification.Tally{Requeued: 1}); err != nil {
				r.storeError("count re-queue", err)
			}
		}
	}
	if len(won) == 0 {
		if err := st.DiscardBatch(r.hard, b.ID); err != nil {
			r.storeError("discard empty batch", err)
		}
		return j, true, false
	}
	b.Members, b.Verified, b.Size = kept, true, len(kept)
	return job{batch: b, created: true, tickets: won}, true, true
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
	if j.created && !j.sent {
		b.FirstSendAt = nil // never left this sweep
	}
	if err := r.s.store.SaveBatch(r.hard, &b); err != nil {
		r.storeError("release batch", err)
	}
	if j.claim > 0 {
		if err := r.s.store.ReleaseClaim(r.hard, b.ID, j.claim, r.s.cfg.Now()); err != nil {
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
	st := r.s.store
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
	if err := r.s.store.SaveBatch(r.hard, b); err != nil {
		r.storeError("save batch", err)
	}
	if j.claim > 0 {
		if err := r.s.store.ReleaseClaim(r.hard, b.ID, j.claim, now); err != nil {
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
	st := r.s.store
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

// projectionPage is how many batches projection takes from its queue at a time.
const projectionPage = 16

// project copies the outcomes of decided batches onto their tickets' documents, with what
// time is left, paced by ProjectShare: the batches this sweep decided and any an earlier
// sweep left in the projection queue. It is only a convenience for readers of the raw ticket
// documents: the service resolves tickets from the delivery records, and its status lists are
// indexed when an outcome is decided, before projection.
func (r *run) project(ctx context.Context) {
	st := r.s.project
	skip := map[string]bool{}
	for ctx.Err() == nil {
		ids, err := st.ProjectionHead(ctx, projectionPage+len(skip))
		if err != nil {
			r.projectError(ctx, err)
			return
		}
		progressed := false
		for _, id := range ids {
			if skip[id] {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			done, err := r.projectBatch(ctx, id)
			if err != nil {
				r.projectError(ctx, err)
				return
			}
			if !done {
				skip[id] = true // not closed yet: its holder (or taker-over) finishes it first
				continue
			}
			progressed = true
		}
		if !progressed {
			return
		}
	}
}

// projectBatch projects the members of one decided batch and takes it off the projection
// queue. done is false for a batch not yet closed.
func (r *run) projectBatch(ctx context.Context, id string) (done bool, err error) {
	st := r.s.project
	r.mu.Lock()
	d, mine := r.decided[id]
	r.mu.Unlock()
	b, outcomes := &d.batch, d.outcomes
	if !mine {
		if b, err = st.Batch(ctx, id); err != nil {
			return false, err
		}
		if b == nil {
			return true, st.ProjectionDone(ctx, id)
		}
		if !b.Done || !b.Verified {
			return false, nil
		}
		keys := make([]string, len(b.Members))
		for i, m := range b.Members {
			keys[i] = m.Key()
		}
		if outcomes, err = st.Outcomes(ctx, keys); err != nil {
			return false, err
		}
	}
	for _, m := range b.Members {
		o := outcomes[m.Key()]
		if o == nil {
			continue
		}
		if err := st.ProjectMember(ctx, m, b, o); err != nil {
			return false, err
		}
		r.count(func(rep *Report) { rep.Projected++ })
	}
	return true, st.ProjectionDone(ctx, id)
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
