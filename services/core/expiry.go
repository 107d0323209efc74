package core

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
)

// expiryFullReadEvery is how often the expirer reads a whole page even when the front intent
// is not due yet, for an intent due sooner behind it (a hold TTL shortened between two
// versions, or intents of migrated bookings).
const expiryFullReadEvery = 30 * time.Second

// DefaultExpiryPage is how many intents the expirer reads from the front of the queue at a
// time, and settles together.
const DefaultExpiryPage = 500

// ExpireDue meets the intents at the front of the expiry queue whose hold has ended: their
// booking is decided EXPIRED unless it was decided first, whatever it claimed is settled by
// the outcome in force (seats released or, for a paid booking, recorded sold; fair-use slots
// released), and the intent is deleted. It reads at most limit intents and returns how many
// it met. The queue is ordered by insertion, which is the order holds end in (every booking
// holds for the same TTL), so it stops at the first page without a due intent.
//
// The page is settled a stage at a time, every intent of the page at once in each stage, so
// that each stage's writes coalesce into one batch (see the store's inserter and deleter):
// a page costs a handful of writes, not a handful per booking. Each booking is still decided
// by its own outcome insert, and an intent whose stage failed is kept for the next run.
func (b *Bookings) ExpireDue(ctx context.Context, limit int) (int, error) {
	b.expiryMu.Lock()
	defer b.expiryMu.Unlock()
	ctx = AsBackground(ctx)
	now := b.now()
	if limit > 1 && now.Sub(b.expiryFullRead) < expiryFullReadEvery {
		// Mostly nothing is due: one intent tells, where a page costs a read of hundreds.
		front, err := b.store.DueIntents(ctx, 1)
		if err != nil || len(front) == 0 || !now.After(front[0].ExpiresAt) {
			return 0, err
		}
	}
	page, err := b.store.DueIntents(ctx, limit)
	if err != nil {
		return 0, err
	}
	b.expiryFullRead = now
	type meeting struct {
		in     Intent
		o      Outcome
		seats  []string
		logged <-chan bool
		err    error
	}
	var due []*meeting
	for _, in := range page {
		if now.After(in.ExpiresAt) {
			due = append(due, &meeting{in: in, seats: in.Seats})
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	// stage runs fn on every intent not failed yet, all at once.
	stage := func(fn func(m *meeting) error) {
		var wg sync.WaitGroup
		for _, m := range due {
			if m.err == nil {
				wg.Go(func() { m.err = fn(m) })
			}
		}
		wg.Wait()
	}
	stage(func(m *meeting) error {
		o, won, err := b.decide(ctx, Outcome{BookingID: m.in.BookingID, Status: BookingExpired, DecidedAt: b.clock()})
		if err != nil {
			return err
		}
		if won {
			b.events.Booking("expired")
		}
		m.o = o
		if o.Status == BookingPaid {
			// Only the seats the booking won are sold: its record says which.
			bk, err := b.getBooking(ctx, m.in.BookingID)
			if err != nil {
				return err
			}
			m.seats = bk.Seats
		}
		return nil
	})
	// The seats and the fair-use slots are settled side by side (other collections: the
	// database reads for one while it writes the other).
	stage(func(m *meeting) error {
		var slotsErr error
		var wg sync.WaitGroup
		if len(m.in.Slots) > 0 {
			wg.Go(func() {
				if slotsErr = b.store.ReleaseSlots(ctx, m.in.UserID, m.in.BookingID, m.in.Slots); slotsErr == nil {
					b.slots.seen(m.in.UserID, m.in.Slots, false, b.now())
				}
			})
		}
		ok, logged := b.settleSeats(ctx, m.in.ShowID, m.in.BookingID, m.seats, m.o)
		wg.Wait()
		if !ok {
			return errs.E(errs.Unavailable, "could not settle booking %s; retrying", m.in.BookingID)
		}
		m.logged = logged
		return slotsErr
	})
	var (
		settled []string
		first   error
	)
	for _, m := range due {
		if m.err == nil && !<-m.logged {
			m.err = errs.E(errs.Unavailable, "could not settle booking %s; retrying", m.in.BookingID)
		}
		if m.err != nil {
			first = cmp.Or(first, m.err)
			continue
		}
		settled = append(settled, m.in.ID)
	}
	if len(settled) > 0 {
		if err := b.store.DeleteIntents(ctx, settled); err != nil {
			return 0, err
		}
	}
	return len(settled), first
}

// expiryBudget bounds the time one run of the expirer spends before it yields to the next
// tick, so that a storm of expiries cannot hold the database for long at a stretch.
const expiryBudget = 5 * time.Second

// expireAll meets due intents page by page until a page has none, the budget is spent, or a
// page makes no progress.
func (b *Bookings) expireAll(ctx context.Context) error {
	deadline := b.now().Add(expiryBudget)
	for ctx.Err() == nil {
		n, err := b.ExpireDue(ctx, DefaultExpiryPage)
		if err != nil || n == 0 || b.now().After(deadline) {
			return err
		}
	}
	return nil
}

// projector copies decided fates onto booking, payment and hold documents in the background,
// many per write. Readers never depend on it: they resolve from outcome records.
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
// when many are queued) and, every expiryInterval, the expirer, so a hold nobody pays returns
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
		b.bg.Wait()
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
			report(b.expireAll(ctx))
			now := b.now()
			b.views.prune(now, 2*b.ttl+expiryInterval)
			b.slots.prune(now, b.ttl)
		}
	}
}

// MigrateSeatLogs prepares a store written by a version without seat logs and intents, once:
// every show with holds gets a snapshot of them, and every booking whose hold ends later than
// a day ago gets an intent, so the expirer meets it. It then records that the store is
// migrated; a store without bookings only records it. Run it before serving (each replica
// may; the work is idempotent).
func (b *Bookings) MigrateSeatLogs(ctx context.Context) error {
	done, err := b.store.Migrated(ctx)
	if err != nil || done {
		return err
	}
	holds, err := b.store.AllHolds(ctx)
	if err != nil {
		return err
	}
	byShow := map[string][]Hold{}
	for _, h := range holds {
		byShow[h.ShowID] = append(byShow[h.ShowID], h)
	}
	for showID, hs := range byShow {
		v := b.views.get(showID)
		if err := b.refresh(ctx, v); err != nil {
			return err
		}
		v.mu.Lock()
		for _, h := range hs {
			e := seatEntry{booking: h.BookingID, expires: h.ExpiresAt, sold: h.Sold}
			if cur, ok := v.log[h.Seat]; ok && cur.booking == h.BookingID && cur.sold {
				e.sold = true
			}
			v.log[h.Seat] = e
		}
		v.rebuild()
		v.mu.Unlock()
		b.saveSnapshot(ctx, v)
	}
	open, err := b.store.OpenBookings(ctx, b.now().Add(-24*time.Hour))
	if err != nil {
		return err
	}
	for _, bk := range open {
		in := Intent{ID: IntentID(bk.ID, 0), BookingID: bk.ID, ShowID: bk.ShowID, UserID: bk.UserID, Seats: bk.Seats,
			ExpiresAt: bk.ExpiresAt}
		if err := b.store.AddIntent(ctx, in); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return b.store.SetMigrated(ctx)
}
