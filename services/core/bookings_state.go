package core

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultSeatViewTTL is how long a process trusts its view of a show's holds before it reads
// them again. The view only chooses which seats to try: the unique seat keys decide, a
// conflict or a sold-out answer always reads afresh, so a stale view costs a retry, never a
// wrong sale.
const DefaultSeatViewTTL = time.Second

// seatView is one process's view of a show's holds.
type seatView struct {
	mu    sync.Mutex
	at    time.Time            // when the holds were read from the store
	used  time.Time            // last use, for eviction
	holds map[string]Hold      // seat -> hold
	added map[string]time.Time // seats this process won, and when: a read begun earlier lacks them
}

// seatViews keeps the views of the shows this process books.
type seatViews struct {
	ttl   time.Duration
	mu    sync.Mutex
	views map[string]*seatView
	sf    singleflight.Group
}

func (vs *seatViews) get(showID string) *seatView {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v := vs.views[showID]
	if v == nil {
		v = &seatView{}
		vs.views[showID] = v
	}
	return v
}

// prune drops views unused for an hour (long after any TTL).
func (vs *seatViews) prune(now time.Time) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for id, v := range vs.views {
		v.mu.Lock()
		old := now.Sub(v.used) > time.Hour
		v.mu.Unlock()
		if old {
			delete(vs.views, id)
		}
	}
}

// showHolds returns the show's holds. With since zero the view will do: it is answered from
// memory, and a view older than the TTL is refreshed in the background (the unique seat keys,
// not the view, decide; a stale view costs at most a conflict and a retry). With since set it
// must be a read made at or after since: a 409 rests on it. Concurrent reads of a show are
// one read.
func (b *Bookings) showHolds(ctx context.Context, showID string, since time.Time) ([]Hold, error) {
	v := b.views.get(showID)
	now := b.now()
	v.mu.Lock()
	v.used = now
	if v.holds != nil && (since.IsZero() || !v.at.Before(since)) {
		out := make([]Hold, 0, len(v.holds))
		for _, h := range v.holds {
			out = append(out, h)
		}
		stale := now.Sub(v.at) >= b.views.ttl
		v.mu.Unlock()
		if stale {
			b.views.sf.DoChan(showID, func() (any, error) { return b.readHolds(context.WithoutCancel(ctx), v, showID) })
		}
		return out, nil
	}
	v.mu.Unlock()
	for range 2 { // a shared read that began before since does not count: read once more
		res, err, _ := b.views.sf.Do(showID, func() (any, error) { return b.readHolds(context.WithoutCancel(ctx), v, showID) })
		if err != nil {
			return nil, err
		}
		r := res.(readResult)
		if since.IsZero() || !r.at.Before(since) {
			return r.holds, nil
		}
	}
	return b.store.ShowHolds(ctx, showID)
}

// readHolds reads the show's holds into its view.
func (b *Bookings) readHolds(ctx context.Context, v *seatView, showID string) (any, error) {
	at := b.now()
	holds, err := b.store.ShowHolds(ctx, showID)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Hold, len(holds))
	for _, h := range holds {
		m[h.Seat] = h
	}
	v.mu.Lock()
	if !at.Before(v.at) {
		// Keep what this process won after the read began: the read cannot have seen it.
		for seat, t := range v.added {
			if t.Before(at) {
				delete(v.added, seat)
			} else if h, ok := v.holds[seat]; ok {
				m[seat] = h
			}
		}
		v.at, v.holds = at, m
	}
	v.mu.Unlock()
	return readResult{at: at, holds: holds}, nil
}

type readResult struct {
	at    time.Time
	holds []Hold
}

// viewAdd records holds this process won.
func (b *Bookings) viewAdd(showID string, holds []Hold) {
	v := b.views.get(showID)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.holds == nil {
		return
	}
	if v.added == nil {
		v.added = map[string]time.Time{}
	}
	now := b.now()
	for _, h := range holds {
		v.holds[h.Seat] = h
		v.added[h.Seat] = now
	}
}

// viewRemove forgets the booking's holds on seats (released by this process).
func (b *Bookings) viewRemove(showID, bookingID string, seats []string) {
	v := b.views.get(showID)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range seats {
		if h, ok := v.holds[s]; ok && h.BookingID == bookingID {
			delete(v.holds, s)
		}
	}
}

// viewSold marks the booking's holds sold.
func (b *Bookings) viewSold(showID, bookingID string, seats []string) {
	v := b.views.get(showID)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range seats {
		if h, ok := v.holds[s]; ok && h.BookingID == bookingID {
			h.Sold = true
			v.holds[s] = h
		}
	}
}

// projector copies decided fates onto booking, payment and hold documents in the background,
// many per write: on the dev database every update scans its whole collection, so one
// update per payment would cost more than the payment. Readers never depend on it: they
// resolve from outcome records.
type projector struct {
	running  atomic.Bool
	mu       sync.Mutex
	bookings map[BookingStatus][]string
	payments map[[2]string][]string // status, reason -> ids
	sold     []Hold
	pending  int
	wake     chan struct{}
}

// projectionBatch bounds the ids of one write.
const projectionBatch = 500

func newProjector() *projector {
	return &projector{bookings: map[BookingStatus][]string{}, payments: map[[2]string][]string{}, wake: make(chan struct{}, 1)}
}

// projectBooking queues (or, with no runner, writes) a booking's decided status.
func (b *Bookings) projectBooking(ctx context.Context, id string, st BookingStatus) {
	p := b.proj
	if !b.project {
		return
	}
	if !p.running.Load() {
		_ = b.store.ProjectStatus(context.WithoutCancel(ctx), st, []string{id})
		return
	}
	p.mu.Lock()
	p.bookings[st] = append(p.bookings[st], id)
	p.add()
	p.mu.Unlock()
}

func (b *Bookings) projectPayment(ctx context.Context, id string, st PaymentStatus, reason string) {
	p := b.proj
	if !b.project {
		return
	}
	if !p.running.Load() {
		_ = b.store.ProjectPayments(context.WithoutCancel(ctx), st, reason, []string{id})
		return
	}
	p.mu.Lock()
	k := [2]string{string(st), reason}
	p.payments[k] = append(p.payments[k], id)
	p.add()
	p.mu.Unlock()
}

func (b *Bookings) projectSold(ctx context.Context, holds []Hold) {
	p := b.proj
	if !b.project {
		return
	}
	if !p.running.Load() {
		_ = b.store.MarkSold(context.WithoutCancel(ctx), holds)
		return
	}
	p.mu.Lock()
	p.sold = append(p.sold, holds...)
	p.add()
	p.mu.Unlock()
}

// add counts a queued item; call with mu held.
func (p *projector) add() {
	if p.pending++; p.pending >= projectionBatch {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// flush writes everything queued, a batch per write. It returns the first error; failed
// items are dropped (the next reader or expirer that meets the booking queues them again).
func (b *Bookings) flush(ctx context.Context) error {
	p := b.proj
	p.mu.Lock()
	bookings, payments, sold := p.bookings, p.payments, p.sold
	p.bookings, p.payments, p.sold, p.pending = map[BookingStatus][]string{}, map[[2]string][]string{}, nil, 0
	p.mu.Unlock()
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for st, ids := range bookings {
		for chunk := range chunks(ids) {
			keep(b.store.ProjectStatus(ctx, st, chunk))
		}
	}
	for k, ids := range payments {
		for chunk := range chunks(ids) {
			keep(b.store.ProjectPayments(ctx, PaymentStatus(k[0]), k[1], chunk))
		}
	}
	for i := 0; i < len(sold); i += projectionBatch {
		keep(b.store.MarkSold(ctx, sold[i:min(len(sold), i+projectionBatch)]))
	}
	return first
}

func chunks(ids []string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for i := 0; i < len(ids); i += projectionBatch {
			if !yield(ids[i:min(len(ids), i+projectionBatch)]) {
				return
			}
		}
	}
}

// Run does the engine's background work until ctx ends: projections every second (sooner
// when many are queued) and, every expiryInterval, ExpireDue, so a hold nobody pays returns
// to sale without anyone asking. Before it returns it writes what is still queued.
func (b *Bookings) Run(ctx context.Context, expiryInterval time.Duration, onErr func(error)) {
	p := b.proj
	p.running.Store(true)
	defer func() {
		p.running.Store(false)
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := b.flush(fctx); err != nil && onErr != nil {
			onErr(err)
		}
	}()
	expiry := time.NewTicker(expiryInterval)
	defer expiry.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	report := func(err error) {
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			report(b.flush(ctx))
		case <-p.wake:
			report(b.flush(ctx))
		case <-expiry.C:
			_, err := b.ExpireDue(ctx, 500)
			report(err)
			b.views.prune(b.now())
		}
	}
}
