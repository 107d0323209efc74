package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cineflow/cineflow/services/core"
)

// OutboxStore keeps the emails owed until the notification service has them. Enqueue (from
// Outbox) is an insert keyed by Email.Key: a duplicate key is success and keeps the first.
// A key enqueued again after Reschedule moved its email is not a duplicate to every store
// (mongostore.Outbox queues a second copy, posted again under the same Idempotency-Key);
// Pending lists a key once all the same.
type OutboxStore interface {
	core.Outbox
	// Pending lists up to limit emails due at now (NextAttemptAt <= now), the longest due
	// first. Its cost must not grow with the number of emails waiting.
	Pending(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error)
	// Reschedule records a failed or postponed attempt of e, an entry Pending returned: it is
	// due again at next. An email another relay delivered meanwhile is not an error (the
	// store may queue it again: it is then posted again under its Idempotency-Key).
	Reschedule(ctx context.Context, e core.OutboxEntry, attempts int, next time.Time, lastError string) error
	// Delete removes e, an entry Pending returned (gone already is not an error).
	Delete(ctx context.Context, e core.OutboxEntry) error
	// Backlog counts the emails and finds the oldest, at a cost that does not grow with
	// their number (the count may be an estimate: see the store).
	Backlog(ctx context.Context) (core.OutboxBacklog, error)
}

// Notifier hands an email to the notification service. Its error says what to do next: a
// *NotifyError with Permanent set will never succeed; any other error is worth retrying.
type Notifier interface {
	Notify(ctx context.Context, e core.Email) error
}

// NotifyError is a classified failure of Notifier.Notify.
type NotifyError struct {
	Err error
	// Permanent: the notification service refused the email itself (a 4xx such as 400 or
	// 422): retrying cannot help.
	Permanent bool
	// Config: the service refused our credentials (401, 403): retryable, but an operator must
	// fix NOTIFICATION_API_TOKEN.
	Config bool
	// RetryAfter is the least delay before the next attempt the service asked for (0: none).
	RetryAfter time.Duration
}

func (e *NotifyError) Error() string { return e.Err.Error() }
func (e *NotifyError) Unwrap() error { return e.Err }

// OutboxGuard tells the relay whether the decision an email belongs to (its Kind and Ref)
// stands. An error means "cannot tell now": the relay retries later.
type OutboxGuard func(ctx context.Context, kind, ref string) (core.GuardVerdict, error)

// RelayResult is what became of one attempt to relay an email (a metric label).
type RelayResult string

// The results.
const (
	RelaySent    RelayResult = "sent"    // the notification service has it; deleted
	RelayDropped RelayResult = "dropped" // its guard said Drop; deleted unsent
	RelayRetry   RelayResult = "retry"   // failed or postponed; kept for a later attempt
	RelayFailed  RelayResult = "failed"  // refused permanently; deleted, logged as an error
)

// RelayOptions configure a Relay. Zero values take the defaults.
type RelayOptions struct {
	// Interval is how often the relay looks for due emails (default 1s); an Enqueue through
	// the relay also wakes it at once.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the exponential delay between attempts (defaults 1s
	// and 5m). The delay doubles per attempt, with jitter (between half and all of it).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxWait caps the delay while a guard answers Wait (default 30s, at most MaxBackoff).
	MaxWait time.Duration
	// Parallel is how many emails are sent at once (default 4); Batch how many due emails
	// are read per query (default 100).
	Parallel int
	Batch    int
	// StoreTimeout bounds each store write after an attempt (default 5s); those writes are
	// made even while the relay stops, so a sent email is not sent again needlessly.
	StoreTimeout time.Duration
	// BreakAfter is how many notifier failures in a row (refused connections, timeouts, 5xx,
	// 429, 401/403) pause the relay (default 5): see Relay. ProbeMax caps the interval between
	// its probes while paused (default 30s, at most MaxBackoff); the interval starts at
	// MinBackoff and doubles per failed probe.
	BreakAfter int
	ProbeMax   time.Duration
	Logger     *slog.Logger
	// GuardedKinds are kinds that must be guarded: their emails wait until a guard of their
	// kind is registered (a relay starts before the parts of the service that register
	// guards, and must not send an email whose decision nobody has checked).
	GuardedKinds []string
	// OnResult, if set, is called once per attempt.
	OnResult func(kind string, result RelayResult)
	// Metrics, if set, exports the relay's figures (see NewMetrics).
	Metrics *Metrics
	// TracerProvider makes the "outbox.relay" spans (default: the global one).
	TracerProvider trace.TracerProvider
	// Now and Rand (a number in [0, 1) for the jitter) are for tests.
	Now  func() time.Time
	Rand func() float64
}

// Relay posts the outbox's emails to the notification service until it has them. Several
// relays (one per core replica) may share one outbox: two may post the same email at once,
// which is safe because each POST carries the email's Key as Idempotency-Key, and the
// notification service answers a repeated key with the same ticket.
//
// A circuit breaker keeps an outage cheap, whatever the number of emails waiting: after
// BreakAfter notifier failures in a row the relay pauses (logged once, at WARN): its rounds
// read nothing and send nothing, except one email (the probe) per probe interval, which grows
// from MinBackoff to ProbeMax while the probes fail. The emails not tried are left untouched
// (still due, their attempts not counted). The first success resumes it (logged once, at
// INFO), and the same round drains the outbox at full speed. The breaker is per relay, so per
// replica.
//
// Relay is an Outbox too: its Enqueue stores the email and wakes the relay.
type Relay struct {
	store    OutboxStore
	notifier Notifier
	opts     RelayOptions
	log      *slog.Logger
	tracer   trace.Tracer
	nudge    chan struct{}

	mu      sync.RWMutex
	guards  map[string]OutboxGuard
	guarded map[string]bool

	br breaker
	// more is set by a RunOnce that stopped at maxRoundsPerRun with emails still due;
	// storeFailed by a store write that failed during it.
	more, storeFailed atomic.Bool

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// breaker is the relay's circuit breaker state (see Relay).
type breaker struct {
	mu       sync.Mutex
	failures int       // notifier failures in a row
	open     bool      // paused
	openedAt time.Time // when it opened
	probes   int       // failed probes since it opened
	probeAt  time.Time // while open: when the next probe may start
}

var _ core.Outbox = (*Relay)(nil)

// NewRelay returns a relay of store's emails to n. Start it.
func NewRelay(store OutboxStore, n Notifier, opts RelayOptions) *Relay {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 30 * time.Second
	}
	opts.MaxWait = min(opts.MaxWait, opts.MaxBackoff)
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 5 * time.Second
	}
	if opts.BreakAfter <= 0 {
		opts.BreakAfter = 5
	}
	if opts.ProbeMax <= 0 {
		opts.ProbeMax = 30 * time.Second
	}
	opts.ProbeMax = max(min(opts.ProbeMax, opts.MaxBackoff), opts.MinBackoff)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	guarded := map[string]bool{}
	for _, k := range opts.GuardedKinds {
		guarded[k] = true
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	r := &Relay{store: store, notifier: n, opts: opts, log: opts.Logger,
		tracer: opts.TracerProvider.Tracer("cineflow/core/outbox"), nudge: make(chan struct{}, 1),
		guards: map[string]OutboxGuard{}, guarded: guarded}
	if m := opts.Metrics; m != nil {
		m.relay = r
		if on := opts.OnResult; on != nil {
			r.opts.OnResult = func(kind string, res RelayResult) { m.observe(kind, res); on(kind, res) }
		} else {
			r.opts.OnResult = m.observe
		}
	}
	return r
}

// Enqueue stores e durably (a repeated Key keeps the first) and wakes the relay.
func (r *Relay) Enqueue(ctx context.Context, e core.Email) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := r.store.Enqueue(ctx, e); err != nil {
		return err
	}
	r.Nudge()
	return nil
}

// Owe stores e like Enqueue but does not wake the relay: for an email written before the
// decision it belongs to, whose guard would only say "wait" now. Nudge once decided.
func (r *Relay) Owe(ctx context.Context, e core.Email) error {
	if err := e.Validate(); err != nil {
		return err
	}
	return r.store.Enqueue(ctx, e)
}

// Nudge wakes the relay to look for due emails now.
func (r *Relay) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Guard makes g decide every email of kind before it is sent (replacing any earlier guard
// of that kind). An email of a kind without a guard is sent. Safe while the relay runs.
func (r *Relay) Guard(kind string, g OutboxGuard) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g == nil {
		delete(r.guards, kind)
		return
	}
	r.guards[kind] = g
}

// guard returns kind's guard; required is true for a GuardedKinds kind.
func (r *Relay) guard(kind string) (g OutboxGuard, required bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.guards[kind], r.guarded[kind]
}

// Store is the relay's outbox store.
func (r *Relay) Store() OutboxStore { return r.store }

// Start runs the relay in the background until Stop (a service that runs its loops itself
// calls Run instead). Starting a running relay does nothing.
func (r *Relay) Start() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		r.Run(ctx)
	}(r.done)
}

// Stop stops the relay: attempts in flight are cancelled (an email whose POST was cut short
// stays in the outbox and is posted again later, under the same Idempotency-Key). It waits
// for the loop to end, or for ctx.
func (r *Relay) Stop(ctx context.Context) error {
	r.runMu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.runMu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox relay did not stop: %w", ctx.Err())
	}
}

// nudgeGather is how long a woken relay waits for more nudges before it reads the due
// emails: under a burst of payments, one query then serves many emails instead of each.
const nudgeGather = 20 * time.Millisecond

// Run relays until ctx ends: a round every Interval, at once when an Enqueue wakes it, and
// without pause while a backlog drains. Start runs it in the background.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		r.RunOnce(ctx)
		if r.more.Load() {
			// Stopped at its bound with emails still due (a backlog draining): go on.
			select {
			case <-ctx.Done():
				return
			case <-time.After(nudgeGather):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.nudge:
			select {
			case <-ctx.Done():
				return
			case <-time.After(nudgeGather):
			}
		}
	}
}

// maxRoundsPerRun bounds the batches one RunOnce reads, should rescheduling fail.
const maxRoundsPerRun = 20

// RunOnce relays every email due now, Parallel at a time, and returns how many it tried.
// While the breaker is open it reads nothing, or tries only a probe (see Relay). Run calls
// it; tests call it directly.
func (r *Relay) RunOnce(ctx context.Context) int {
	tried := 0
	r.more.Store(false)
	r.storeFailed.Store(false)
	for round := 0; round < maxRoundsPerRun && ctx.Err() == nil; round++ {
		now := r.opts.Now()
		probe, ok := r.admitRound(now)
		if !ok {
			return tried // paused, and no probe due yet
		}
		limit := r.opts.Batch
		if probe {
			limit = 1
		}
		due, err := r.store.Pending(ctx, now, limit)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("outbox: cannot read due emails", "error", err.Error())
			}
			return tried
		}
		if probe {
			if len(due) == 0 {
				return tried
			}
			// One email, alone. If it reached the notification service, its answer closed the
			// breaker (go on at full speed) or set the next probe (the next round stops); if
			// its guard kept it from being sent, the next round probes with the next email.
			tried++
			r.relay(ctx, due[0], true)
			continue
		}
		sem := make(chan struct{}, r.opts.Parallel)
		var wg sync.WaitGroup
		for _, e := range due {
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			if r.BreakerOpen() { // opened by the attempts in flight: leave the rest untouched
				<-sem
				break
			}
			wg.Add(1)
			tried++
			go func(e core.OutboxEntry) {
				defer func() { <-sem; wg.Done() }()
				r.relay(ctx, e, false)
			}(e)
		}
		wg.Wait()
		// A full batch may have more behind it. Each attempt either deleted its email or
		// moved it into the future, so the next query does not see it again.
		if len(due) < r.opts.Batch || r.BreakerOpen() {
			return tried
		}
	}
	r.more.Store(ctx.Err() == nil && !r.storeFailed.Load() && !r.BreakerOpen())
	return tried
}

// BreakerOpen reports whether the relay is paused by its circuit breaker (see Relay).
func (r *Relay) BreakerOpen() bool {
	r.br.mu.Lock()
	defer r.br.mu.Unlock()
	return r.br.open
}

// admitRound says whether a round may run at now (ok), and whether it is a probe (the breaker
// is open and its probe is due).
func (r *Relay) admitRound(now time.Time) (probe, ok bool) {
	r.br.mu.Lock()
	defer r.br.mu.Unlock()
	switch {
	case !r.br.open:
		return false, true
	case !now.Before(r.br.probeAt):
		return true, true
	}
	return false, false
}

// probeDelay is the interval before the k-th probe: MinBackoff doubled per failed probe,
// capped at ProbeMax, jittered like Backoff.
func (r *Relay) probeDelay(k int) time.Duration {
	d := r.opts.MinBackoff
	for i := 1; i < k && d < r.opts.ProbeMax; i++ {
		d *= 2
	}
	d = min(d, r.opts.ProbeMax)
	return d/2 + time.Duration(r.opts.Rand()*float64(d-d/2))
}

// noteNotify feeds the breaker the notification service's answer to one attempt: up (a
// success, or a refusal of the email itself) or down (any other error).
func (r *Relay) noteNotify(up bool, probe bool, cause error) {
	now := r.opts.Now()
	r.br.mu.Lock()
	var opened, closed bool
	var pausedFor, probeIn time.Duration
	failures := 0
	switch {
	case up:
		r.br.failures = 0
		if r.br.open {
			r.br.open, closed, pausedFor = false, true, now.Sub(r.br.openedAt)
		}
	case r.br.open:
		if probe {
			r.br.probes++
			probeIn = r.probeDelay(r.br.probes + 1)
			r.br.probeAt = now.Add(probeIn)
		}
	default:
		r.br.failures++
		failures = r.br.failures
		if r.br.failures >= r.opts.BreakAfter {
			r.br.open, opened, r.br.openedAt, r.br.probes = true, true, now, 0
			probeIn = r.probeDelay(1)
			r.br.probeAt = now.Add(probeIn)
		}
	}
	r.br.mu.Unlock()
	switch {
	case opened:
		r.log.Warn("outbox: the notification service is failing: relay paused, probing with one email at a time",
			"failures_in_a_row", failures, "first_probe_in", probeIn.String(), "error", cause.Error())
	case closed:
		r.log.Info("outbox: the notification service answers again: relay resumed", "paused_for", pausedFor.String())
	}
}

// relay makes one attempt at e in the trace of the request that owed it; probe says it is the
// breaker's probe.
func (r *Relay) relay(ctx context.Context, e core.OutboxEntry, probe bool) {
	if e.TraceParent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": e.TraceParent})
	}
	ctx, span := r.tracer.Start(ctx, "outbox.relay", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("outbox.kind", e.Kind), attribute.String("outbox.key", e.Key),
			attribute.Int("outbox.attempt", e.Attempts+1)))
	defer span.End()
	result := r.attempt(ctx, e, probe)
	span.SetAttributes(attribute.String("outbox.result", string(result)))
	if result == RelayRetry || result == RelayFailed {
		span.SetStatus(codes.Error, string(result))
	}
	if r.opts.OnResult != nil {
		r.opts.OnResult(e.Kind, result)
	}
}

func (r *Relay) attempt(ctx context.Context, e core.OutboxEntry, probe bool) RelayResult {
	g, required := r.guard(e.Kind)
	if g == nil && required {
		r.log.Warn("outbox: no guard registered for this kind yet: the email waits", "kind", e.Kind, "key", e.Key)
		return r.retry(ctx, e, fmt.Errorf("waiting: no guard registered yet for kind %s", e.Kind), 0, true)
	}
	if g != nil {
		v, err := g(ctx, e.Kind, e.Ref)
		switch {
		case err != nil:
			return r.retry(ctx, e, fmt.Errorf("guard: %w", err), 0, false)
		case v == core.GuardDrop:
			if err := r.delete(ctx, e); err != nil {
				r.log.Warn("outbox: cannot delete a dropped email (it will be dropped again)",
					"kind", e.Kind, "ref", e.Ref, "key", e.Key, "error", err.Error())
			}
			r.log.Info("outbox: email dropped unsent: its decision did not stand", "kind", e.Kind, "ref", e.Ref, "key", e.Key)
			return RelayDropped
		case v == core.GuardWait:
			return r.retry(ctx, e, errors.New("waiting: the decision is not made yet"), 0, true)
		case v != core.GuardSend:
			return r.retry(ctx, e, fmt.Errorf("guard: unknown verdict %v", v), 0, false)
		}
	}
	err := r.notifier.Notify(ctx, e.Email)
	var ne *NotifyError
	errors.As(err, &ne)
	up := err == nil || (ne != nil && ne.Permanent) // the service answered
	if up || ctx.Err() == nil {                     // a cut-short attempt (stopping) tells nothing
		r.noteNotify(up, probe, err)
	}
	if err == nil {
		if err := r.delete(ctx, e); err != nil {
			// Posted again later under the same Idempotency-Key: the same ticket.
			r.log.Warn("outbox: email relayed but not deleted from the outbox",
				"kind", e.Kind, "ref", e.Ref, "key", e.Key, "error", err.Error())
		}
		return RelaySent
	}
	if ne != nil && ne.Permanent {
		if derr := r.delete(ctx, e); derr != nil {
			r.log.Warn("outbox: cannot delete a refused email", "kind", e.Kind, "key", e.Key, "error", derr.Error())
		}
		r.log.Error("outbox: the notification service refused an email for good: not sent",
			"kind", e.Kind, "ref", e.Ref, "key", e.Key, "attempt", e.Attempts+1, "error", err.Error())
		return RelayFailed
	}
	if ctx.Err() != nil { // stopping: not the email's fault, and not counted
		return RelayRetry
	}
	var after time.Duration
	if ne != nil {
		after = ne.RetryAfter
		if ne.Config {
			r.log.Error("outbox: the notification service refused our credentials: check NOTIFICATION_API_TOKEN",
				"kind", e.Kind, "key", e.Key, "error", err.Error())
		}
	}
	return r.retry(ctx, e, err, after, false)
}

// retry counts the attempt and schedules the next one.
func (r *Relay) retry(ctx context.Context, e core.OutboxEntry, cause error, atLeast time.Duration, wait bool) RelayResult {
	attempts := e.Attempts + 1
	delay := r.Backoff(attempts)
	if wait {
		delay = min(delay, r.opts.MaxWait)
	}
	delay = max(delay, atLeast)
	next := r.opts.Now().Add(delay)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StoreTimeout)
	defer cancel()
	if err := r.store.Reschedule(wctx, e, attempts, next, cause.Error()); err != nil {
		r.storeFailed.Store(true)
		r.log.Warn("outbox: cannot record a failed attempt", "kind", e.Kind, "key", e.Key, "error", err.Error())
	}
	if wait {
		r.log.Debug("outbox: email waits for its decision", "kind", e.Kind, "ref", e.Ref, "key", e.Key,
			"attempt", attempts, "retry_in", delay.String())
	} else {
		r.log.Warn("outbox: email not relayed yet, will retry", "kind", e.Kind, "ref", e.Ref, "key", e.Key,
			"attempt", attempts, "retry_in", delay.String(), "error", cause.Error())
	}
	return RelayRetry
}

func (r *Relay) delete(ctx context.Context, e core.OutboxEntry) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StoreTimeout)
	defer cancel()
	err := r.store.Delete(wctx, e)
	if err != nil {
		r.storeFailed.Store(true)
	}
	return err
}

// Backoff is the delay after the attempt-th failed attempt: MinBackoff doubled per attempt,
// capped at MaxBackoff, then jittered to between half and all of it.
func (r *Relay) Backoff(attempt int) time.Duration {
	d := r.opts.MinBackoff
	for i := 1; i < attempt && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.opts.MaxBackoff)
	return d/2 + time.Duration(r.opts.Rand()*float64(d-d/2))
}
