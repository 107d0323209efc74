package sweeper

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/services/notification"
)

// Paced returns store with at most concurrency calls at once (0: no bound) and its calls
// paced so that the time spent in them stays under share of the time elapsed: each call's
// duration is charged to a token bucket filled at share seconds per second, and the caller
// waits out any debt after its call. Concurrent calls each count their whole duration (time
// queued in the database included), so the bound is conservative, and calls slow down by
// themselves when the database is busy with other work. share <= 0 or >= 1: no pacing.
//
// Bounding concurrency matters on the dev database: SQLite takes one writer at a time, and
// writers that find it busy sleep in steps of up to 100 ms, so concurrent writes from one
// sweep make it slower, not faster.
//
// The paced store embeds store: a method it does not list passes through unpaced, so a method
// added to Store needs no change here to compile. It lists every method a sweep calls today.
func Paced(store Store, share float64, concurrency int) Store {
	p := &paced{Store: store}
	if share > 0 && share < 1 {
		// A burst of 200 ms of database time lets short calls go at once.
		p.burst = int(200 * time.Millisecond / time.Microsecond)
		p.lim = rate.NewLimiter(rate.Limit(share*1e6), p.burst)
	}
	if concurrency > 0 {
		p.sem = make(chan struct{}, concurrency)
	}
	if p.lim == nil && p.sem == nil {
		return store
	}
	return p
}

type paced struct {
	Store               // what a method below does not pace
	lim   *rate.Limiter // tokens are microseconds of database time; nil: no pacing
	burst int
	sem   chan struct{} // nil: no bound on concurrent calls
}

// acquire waits for a call slot (until ctx ends; the call then fails on its own).
func (p *paced) acquire(ctx context.Context) func() {
	if p.sem == nil {
		return func() {}
	}
	select {
	case p.sem <- struct{}{}:
		return func() { <-p.sem }
	case <-ctx.Done():
		return func() {}
	}
}

// charge pays for a call that took d, waiting out the debt (until ctx ends).
func (p *paced) charge(ctx context.Context, d time.Duration) {
	if p.lim == nil {
		return
	}
	now := time.Now()
	var wait time.Duration
	for n := int(d / time.Microsecond); n > 0; n -= p.burst { // a long call pays in several reservations
		if r := p.lim.ReserveN(now, min(n, p.burst)); r.OK() {
			wait = max(wait, r.DelayFrom(now))
		}
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// do runs one call and pays for it.
func do[T any](p *paced, ctx context.Context, f func() (T, error)) (T, error) {
	release := p.acquire(ctx)
	t0 := time.Now()
	v, err := f()
	d := time.Since(t0)
	release()
	p.charge(ctx, d)
	return v, err
}

func do0(p *paced, ctx context.Context, f func() error) error {
	_, err := do(p, ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

func (p *paced) Backlog(ctx context.Context) (int64, error) {
	return do(p, ctx, func() (int64, error) { return p.Store.Backlog(ctx) })
}

func (p *paced) OpenBatches(ctx context.Context, limit int) ([]notification.OpenBatch, error) {
	return do(p, ctx, func() ([]notification.OpenBatch, error) { return p.Store.OpenBatches(ctx, limit) })
}

func (p *paced) Claim(ctx context.Context, batchID string, from int, holder string, now, until time.Time) (int, bool, error) {
	var ok bool
	n, err := do(p, ctx, func() (int, error) {
		n, won, err := p.Store.Claim(ctx, batchID, from, holder, now, until)
		ok = won
		return n, err
	})
	return n, ok, err
}

func (p *paced) ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error {
	return do0(p, ctx, func() error { return p.Store.ReleaseClaim(ctx, batchID, n, now) })
}

func (p *paced) Batch(ctx context.Context, id string) (*notification.Batch, error) {
	return do(p, ctx, func() (*notification.Batch, error) { return p.Store.Batch(ctx, id) })
}

func (p *paced) QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error) {
	return do(p, ctx, func() ([]notification.QueueEntry, error) { return p.Store.QueueHead(ctx, shard, limit) })
}

func (p *paced) Dequeue(ctx context.Context, keys []string) error {
	return do0(p, ctx, func() error { return p.Store.Dequeue(ctx, keys) })
}

func (p *paced) GenerationStarted(ctx context.Context, ticket notification.ID, gen int) (bool, error) {
	return do(p, ctx, func() (bool, error) { return p.Store.GenerationStarted(ctx, ticket, gen) })
}

func (p *paced) AppendTally(ctx context.Context, key string, d notification.Tally) error {
	return do0(p, ctx, func() error { return p.Store.AppendTally(ctx, key, d) })
}

func (p *paced) ReadTally(ctx context.Context) (notification.Tally, error) {
	return do(p, ctx, func() (notification.Tally, error) { return p.Store.ReadTally(ctx) })
}

func (p *paced) InsertBatch(ctx context.Context, b *notification.Batch) error {
	return do0(p, ctx, func() error { return p.Store.InsertBatch(ctx, b) })
}

func (p *paced) Assign(ctx context.Context, b *notification.Batch, members []notification.Member) (map[int]bool, error) {
	return do(p, ctx, func() (map[int]bool, error) { return p.Store.Assign(ctx, b, members) })
}

func (p *paced) Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error) {
	return do(p, ctx, func() ([]notification.Ticket, error) { return p.Store.Members(ctx, b) })
}

func (p *paced) Decide(ctx context.Context, outcomes []notification.Outcome) (map[string]bool, error) {
	return do(p, ctx, func() (map[string]bool, error) { return p.Store.Decide(ctx, outcomes) })
}

func (p *paced) Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error) {
	return do(p, ctx, func() (map[string]*notification.Outcome, error) { return p.Store.Outcomes(ctx, keys) })
}

func (p *paced) SaveBatch(ctx context.Context, b *notification.Batch) error {
	return do0(p, ctx, func() error { return p.Store.SaveBatch(ctx, b) })
}

func (p *paced) CloseBatch(ctx context.Context, id string) error {
	return do0(p, ctx, func() error { return p.Store.CloseBatch(ctx, id) })
}

func (p *paced) DiscardBatch(ctx context.Context, id string) error {
	return do0(p, ctx, func() error { return p.Store.DiscardBatch(ctx, id) })
}

func (p *paced) EnqueueProjection(ctx context.Context, batchID string) error {
	return do0(p, ctx, func() error { return p.Store.EnqueueProjection(ctx, batchID) })
}

func (p *paced) ProjectionHead(ctx context.Context, limit int) ([]string, error) {
	return do(p, ctx, func() ([]string, error) { return p.Store.ProjectionHead(ctx, limit) })
}

func (p *paced) ProjectionDone(ctx context.Context, batchID string) error {
	return do0(p, ctx, func() error { return p.Store.ProjectionDone(ctx, batchID) })
}

func (p *paced) ProjectMember(ctx context.Context, m notification.Member, b *notification.Batch, o *notification.Outcome) error {
	return do0(p, ctx, func() error { return p.Store.ProjectMember(ctx, m, b, o) })
}
