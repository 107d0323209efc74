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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/services/notification"
)

// Store is what a sweep needs from the database: the store of each part of a sweep, and the
// figures its report reads (jobs/sweeper/mongostore implements it over
// services/notification/mongostore; see notification/delivery.go for the records).
type Store interface {
	BatchStore
	OutcomeStore
	ProjectionStore
	// Backlog counts the tickets still to deliver: queued, and in open batches.
	Backlog(ctx context.Context) (int64, error)
	// ReadTally sums the figures (folding them, so that reads stay short).
	ReadTally(ctx context.Context) (notification.Tally, error)
}

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
	// ProviderErrorsByClass counts the failed provider requests by class (they add up to
	// ProviderErrors).
	ProviderErrorsByClass map[ErrorClass]int
	// ProviderRejected counts the failed requests the provider refused for good (Permanent:
	// their tickets are FAILED): an answer, not a failing provider.
	ProviderRejected int
}

// ProviderFailing reports whether the sweep met a failing provider: it delivered nothing
// while provider requests failed for a reason other than a refusal for good (429s, 5xx,
// timeouts, network errors, a refused API key).
func (r Report) ProviderFailing() bool { return r.Sent == 0 && r.ProviderErrors > r.ProviderRejected }

// ErrAuth means the provider refused the API key: the sweep stopped and nothing more will
// succeed until the configuration is fixed.
var ErrAuth = errors.New("the mail provider refused the API key")

// ErrProviderFailing means the sweep delivered nothing while its provider requests failed
// (Report.ProviderFailing): the tickets are retried by later sweeps, but the sweep did not do
// its job.
var ErrProviderFailing = errors.New("the mail provider failed the sweep's requests and nothing was delivered")

// Sweeper runs sweeps.
type Sweeper struct {
	cfg     Config
	store   Store           // deliveries, paced by DBShare
	project ProjectionStore // projection, paced by ProjectShare
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
	// logged holds the kinds of provider failure already logged in this sweep (see
	// providerError); repeats counts the failures not logged because their kind was.
	logged  map[string]bool
	repeats int
}

// Run performs one sweep. It returns an error only when the sweep could not do its work: the
// database failed before anything was sent, the provider refused the API key (ErrAuth), or
// the sweep delivered nothing while its provider requests failed (ErrProviderFailing). Emails
// that failed otherwise are reported, not returned; the report is complete in every case.
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

	r := &run{s: s, holder: notification.NewID().Hex(), start: start, decided: map[string]decidedBatch{},
		leaseUntil: start.Add(cfg.Deadline + cfg.LeaseMargin), stop: stop, abort: abort, hard: hard,
		logged: map[string]bool{}}
	r.rep.ProviderErrorsByClass = make(map[ErrorClass]int, len(ErrorClasses))

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
	r.summariseProviderErrors()
	cfg.Logger.Info("sweep finished", "stopped", r.rep.Stopped, "backlog", r.rep.Backlog, "sent", r.rep.Sent, "failed", r.rep.Failed,
		"delivery_unknown", r.rep.Unknown, "retried", r.rep.Retried, "batches", r.rep.Batches, "released", r.rep.Released,
		"rate_limited", r.rep.RateLimited, "provider_errors", r.rep.ProviderErrors, "projected", r.rep.Projected,
		"store_errors", r.rep.StoreErrors, "delivered_in_seconds", r.rep.DeliveredIn.Seconds(), "duration_seconds", r.rep.Duration.Seconds())
	switch {
	case r.rep.Stopped == "auth":
		return r.rep, ErrAuth
	case r.startErr != nil:
		return r.rep, fmt.Errorf("sweep could not run: %w", r.startErr)
	case r.rep.ProviderFailing():
		return r.rep, fmt.Errorf("%w (%s failed requests); the tickets are retried by later sweeps", ErrProviderFailing, r.rep.errorClasses())
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
