package booking

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// DefaultExpiryPage is how many intents the expirer settles together: each stage of a page
// coalesces into one batch per collection (see the store's inserter and deleter).
const DefaultExpiryPage = 500

// releasedBucket is what the expirer keeps of a bucket of the expiry queue it has released,
// until it has cleared it: the outcome in force of every intent it met.
type releasedBucket struct {
	met     map[string]core.BookingStatus // intent id -> outcome
	slots   []core.Intent                 // intents met with fair-use slots (noted lapsed until cleared)
	cleared map[string]bool               // intents cleared already (a clear stopped for a release)
}

// forget drops what the bucket noted of lapsed slots (deleted, or the bucket is gone).
func (r *releasedBucket) forget(l *lapsedSlots) {
	for _, in := range r.slots {
		l.drop(in.UserID, in.BookingID, in.Slots)
	}
}

// ExpireDue does one step of the expirer, in two phases, and returns how many intents the
// step met (0: nothing is left to do).
//
// Release: every bucket of the expiry queue whose span has passed (so every intent in it is
// due) is read whole, and its bookings are decided EXPIRED unless decided first; a paid
// booking's seats are recorded sold. From then on the seats count as free: a booking that
// needs one meets its old hold and deletes it (see freeSeats), and a seat map shows it free.
// The customers have their fair-use room back too: their slots are noted lapsed, and a booking
// of theirs that finds one taken deletes it and takes it (see claimSlots).
//
// Clear: only when nothing is left to release, one released bucket is read again, the holds of
// its unpaid bookings are deleted and logged freed, its bookings' slots are deleted, and the
// bucket is dropped with everything in it.
//
// So a storm of expiries is released at the cost of one outcome insert per booking (and a read
// of its intent); the deletes follow when the storm is over, as background work. Each booking is still decided by its
// own outcome insert, and a bucket whose release or clearing failed in part is met again by
// the next step (every stage is idempotent).
//
// Only the replica that leads the expiry (BookingsOptions.Leads) runs it; on the others a step
// does nothing (their requests still meet the expired holds they need, see freeSeats). Two
// replicas running it at once (at a change of leader) stay correct, each booking being decided
// by its outcome insert: only the work is done twice. A bucket is due once its end is past by
// the takeover margin, and with a LapseStore the lapsed slots' notes are shared (shareLapses).
func (b *Bookings) ExpireDue(ctx context.Context) (_ int, err error) {
	if b.leads != nil && !b.leads() {
		return 0, nil
	}
	b.expiryMu.Lock()
	defer b.expiryMu.Unlock()
	ctx = core.AsBackground(ctx)
	now := b.takeoverNow()
	_, first := b.store.ForwardLegacyIntents(ctx, DefaultExpiryPage)
	buckets, err := b.store.IntentBuckets(ctx)
	if err != nil {
		return 0, err
	}
	listed := make(map[string]bool, len(buckets))
	for _, bk := range buckets {
		listed[bk.Name] = true
	}
	defer func() { // what is left, for ExpiryProgress
		err = cmp.Or(err, b.shareLapses(ctx))
		p := ExpiryProgress{Steps: b.ExpiryProgress().Steps + 1, Clear: len(b.released)}
		for _, bk := range buckets {
			if _, done := b.released[bk.Name]; !done && !bk.End.After(now) && listed[bk.Name] {
				p.Release++
			}
		}
		b.progress.Store(&p)
	}()
	for name, rel := range b.released {
		if !listed[name] { // cleared by another replica
			rel.forget(&b.lapsed)
			delete(b.released, name)
		}
	}
	met := 0
	deadline := time.Now().Add(expiryBudget)
	for _, bk := range buckets {
		if _, done := b.released[bk.Name]; done || bk.End.After(now) {
			continue
		}
		n, err := b.releaseBucket(ctx, bk.Name, now)
		met += n
		first = cmp.Or(first, err)
		if time.Now().After(deadline) {
			break
		}
	}
	if met > 0 {
		return met, first
	}
	for _, bk := range buckets {
		if rel, ok := b.released[bk.Name]; ok {
			n, err := b.clearBucket(ctx, bk.Name, rel)
			if _, still := b.released[bk.Name]; !still {
				listed[bk.Name] = false // dropped: not left to release (ExpiryProgress)
			}
			return n, cmp.Or(first, err)
		}
	}
	return 0, first
}

// ExpiryProgress is what the expirer's last step left to do.
type ExpiryProgress struct {
	Steps   int64 // steps run so far
	Release int   // buckets of the expiry queue due and not released
	Clear   int   // buckets released and not cleared
}

// ExpiryProgress reports what the expirer's last step left to do.
func (b *Bookings) ExpiryProgress() ExpiryProgress {
	if p := b.progress.Load(); p != nil {
		return *p
	}
	return ExpiryProgress{}
}

// meeting is one intent met by the expirer.
type meeting struct {
	in     core.Intent
	o      core.Outcome
	logged <-chan bool
	err    error
}

// stage runs fn on every meeting not failed yet, all at once (their writes coalesce).
func stage(ms []*meeting, fn func(m *meeting) error) {
	var wg sync.WaitGroup
	for _, m := range ms {
		if m.err == nil {
			wg.Go(func() { m.err = fn(m) })
		}
	}
	wg.Wait()
}

// waitLogged waits for the seat log of every meeting and returns the first failure.
func waitLogged(ms []*meeting) error {
	var first error
	for _, m := range ms {
		if m.err == nil && m.logged != nil && !<-m.logged {
			m.err = errs.E(errs.Unavailable, "could not log the seats of booking %s; retrying", m.in.BookingID)
		}
		first = cmp.Or(first, m.err)
	}
	return first
}

// intentGroup is the intents of one booking, met together: in names every seat and fair-use
// slot they name (its ID is the first one's), ids are their ids.
type intentGroup struct {
	in  core.Intent
	ids []string
}

// byBooking groups intents by booking, in the order their bookings first appear, so that the
// expirer meets a booking once (one outcome insert, one settlement) however many rounds it
// wrote. A booking whose intents sit in several buckets is met once per bucket, but decided
// once: its outcome is known by then (see decide).
func byBooking(ins []core.Intent) []intentGroup {
	at := make(map[string]int, len(ins))
	out := make([]intentGroup, 0, len(ins))
	for _, in := range ins {
		i, ok := at[in.BookingID]
		if !ok {
			at[in.BookingID] = len(out)
			in.Seats, in.Slots = slices.Clone(in.Seats), slices.Clone(in.Slots)
			out = append(out, intentGroup{in: in, ids: []string{in.ID}})
			continue
		}
		g := &out[i]
		g.ids = append(g.ids, in.ID)
		for _, s := range in.Seats {
			if !slices.Contains(g.in.Seats, s) {
				g.in.Seats = append(g.in.Seats, s)
			}
		}
		for _, k := range in.Slots {
			if !slices.Contains(g.in.Slots, k) {
				g.in.Slots = append(g.in.Slots, k)
			}
		}
	}
	return out
}

// releaseBucket runs the release phase over a bucket whose span has passed; it remembers the
// bucket as released once every intent in it is. The intents are met by booking (byBooking).
func (b *Bookings) releaseBucket(ctx context.Context, bucket string, now time.Time) (int, error) {
	ins, err := b.store.BucketIntents(ctx, bucket)
	if err != nil {
		return 0, err
	}
	rel := &releasedBucket{met: make(map[string]core.BookingStatus, len(ins)), cleared: map[string]bool{}}
	var first error
	met, complete := 0, true
	due := make([]core.Intent, 0, len(ins))
	for _, in := range ins {
		if now.After(in.ExpiresAt) {
			due = append(due, in)
		} else { // not due, whatever its bucket says: met by a later step
			complete = false
		}
	}
	for page := range slices.Chunk(byBooking(due), DefaultExpiryPage) {
		ms := make([]*meeting, len(page))
		for i, g := range page {
			ms[i] = &meeting{in: g.in}
		}
		b.meet(ctx, ms, false)
		first = cmp.Or(first, waitLogged(ms))
		for i, m := range ms {
			if m.err == nil {
				for _, id := range page[i].ids {
					rel.met[id] = m.o.Status
				}
				if len(m.in.Slots) > 0 {
					b.lapsed.note(m.in.UserID, m.in.BookingID, m.in.Slots)
					b.slots.seen(m.in.UserID, m.in.Slots, false, b.now())
					rel.slots = append(rel.slots, m.in)
				}
				met += len(page[i].ids)
			}
		}
	}
	if first == nil && complete {
		b.released[bucket] = rel
	} else {
		rel.forget(&b.lapsed) // noted again when met again
	}
	return met, first
}

// meet decides each meeting's booking (EXPIRED unless decided first) and settles a paid
// one's seats as sold. In full, it also releases an unpaid booking's seats and every decided
// booking's fair-use slots (else the clear phase does).
func (b *Bookings) meet(ctx context.Context, ms []*meeting, full bool) {
	stage(ms, func(m *meeting) error {
		o, won, err := b.decide(ctx, core.Outcome{BookingID: m.in.BookingID, Status: core.BookingExpired, DecidedAt: b.clock()})
		if err != nil {
			return err
		}
		if won {
			b.events.Booking("expired")
		}
		m.o = o
		return nil
	})
	stage(ms, func(m *meeting) error {
		if m.o.Status == core.BookingPaid {
			// Only the seats the booking won are sold: its record says which.
			bk, err := b.getBooking(ctx, m.in.BookingID)
			if err != nil {
				return err
			}
			m.in.Seats = bk.Seats
		} else if !full {
			b.projectBooking(ctx, m.in.BookingID, m.o.Status)
			return nil
		}
		return b.settleMeeting(ctx, m, full, false)
	})
}

// settleMeeting settles a decided meeting's seats by its outcome (a paid booking's recorded
// sold, an unpaid one's released) and, with slots, releases its fair-use slots beside. Known
// says the release phase settled it already but for its unpaid seats: only those are released.
func (b *Bookings) settleMeeting(ctx context.Context, m *meeting, slots, known bool) error {
	var slotsErr error
	var wg sync.WaitGroup
	if slots && len(m.in.Slots) > 0 {
		wg.Go(func() {
			if slotsErr = b.store.ReleaseSlots(ctx, m.in.UserID, m.in.BookingID, m.in.Slots); slotsErr == nil {
				b.lapsed.drop(m.in.UserID, m.in.BookingID, m.in.Slots)
				b.slots.seen(m.in.UserID, m.in.Slots, false, b.now())
			}
		})
	}
	ok, logged := true, (<-chan bool)(nil)
	switch {
	case !known:
		ok, logged = b.settleSeats(ctx, m.in.ShowID, m.in.BookingID, m.in.Seats, m.o)
	case m.o.Status != core.BookingPaid:
		ok, logged = b.releaseSeats(ctx, m.in.ShowID, m.in.BookingID, m.in.Seats)
	}
	wg.Wait()
	if !ok {
		return errs.E(errs.Unavailable, "could not release the seats of booking %s; retrying", m.in.BookingID)
	}
	m.logged = logged
	return slotsErr
}

// clearBucket runs the clear phase over a released bucket: the holds of its unpaid bookings
// are deleted (and logged freed) and its bookings' slots deleted, then the bucket is dropped. An intent the release phase did
// not meet (written after it, by a process whose clock is far behind) is met in full here.
// Like the release, it meets the intents by booking (byBooking).
func (b *Bookings) clearBucket(ctx context.Context, bucket string, rel *releasedBucket) (int, error) {
	ins, err := b.store.BucketIntents(ctx, bucket)
	if err != nil {
		return 0, err
	}
	left := make([]core.Intent, 0, len(ins))
	for _, in := range ins {
		if !rel.cleared[in.ID] {
			left = append(left, in)
		}
	}
	var first error
	cleared := 0
	checked := time.Now()
	for page := range slices.Chunk(byBooking(left), DefaultExpiryPage) {
		if time.Since(checked) >= time.Second {
			// Releasing comes first: a bucket that fell due meanwhile stops the clear, which
			// the next step after its release takes up where it stopped.
			checked = time.Now()
			if b.releaseDue(ctx) {
				return max(1, cleared), first
			}
		}
		var known, unknown []*meeting
		ids := make(map[*meeting][]string, len(page))
		for _, g := range page {
			m := &meeting{in: g.in}
			ids[m] = g.ids
			st, ok := core.BookingStatus(""), false
			for _, id := range g.ids {
				if st, ok = rel.met[id]; ok {
					break
				}
			}
			if ok {
				m.o = core.Outcome{BookingID: g.in.BookingID, Status: st}
				known = append(known, m)
			} else {
				unknown = append(unknown, m)
			}
		}
		b.meet(ctx, unknown, true)
		stage(known, func(m *meeting) error { return b.settleMeeting(ctx, m, true, true) })
		first = cmp.Or(first, waitLogged(unknown), waitLogged(known))
		for _, ms := range [][]*meeting{known, unknown} {
			for _, m := range ms {
				if m.err == nil {
					for _, id := range ids[m] {
						rel.cleared[id] = true
					}
					cleared += len(ids[m])
				}
			}
		}
	}
	if first != nil {
		return max(1, cleared), first
	}
	if err := b.store.DropIntentBucket(ctx, bucket); err != nil {
		return max(1, cleared), err
	}
	rel.forget(&b.lapsed)
	delete(b.released, bucket)
	return max(1, cleared), nil
}

// releaseDue reports whether a bucket of the expiry queue is due and not released.
func (b *Bookings) releaseDue(ctx context.Context) bool {
	buckets, err := b.store.IntentBuckets(ctx)
	if err != nil {
		return false
	}
	now := b.now()
	for _, bk := range buckets {
		if _, done := b.released[bk.Name]; !done && !bk.End.After(now) {
			return true
		}
	}
	return false
}

// expiryBudget bounds the time one run of the expirer spends before it yields to the next
// tick, so that a storm of expiries cannot hold the database for long at a stretch.
const expiryBudget = 5 * time.Second

// expiryPause separates two runs of the expirer when the first left work.
const expiryPause = 100 * time.Millisecond

// expireAll runs steps of the expirer until one has nothing to do, the budget is spent, or a
// step fails; more reports that the budget ran out with work left.
func (b *Bookings) expireAll(ctx context.Context) (more bool, err error) {
	deadline := time.Now().Add(expiryBudget)
	for ctx.Err() == nil {
		n, err := b.ExpireDue(ctx)
		if err != nil || n == 0 {
			return false, err
		}
		if time.Now().After(deadline) {
			return true, nil
		}
	}
	return false, nil
}

// projector copies decided fates onto booking, payment and hold documents in the background,
// many per write. Readers never depend on it: they resolve from outcome records.
type projector struct {
	running  atomic.Bool
	mu       sync.Mutex
	bookings map[core.BookingStatus][]string
	payments map[[2]string][]string // status, reason -> ids
	sold     []core.Hold
	pending  int
	wake     chan struct{}
}

// projectionBatch bounds the ids of one write.
const projectionBatch = 500

func newProjector() *projector {
	return &projector{bookings: map[core.BookingStatus][]string{}, payments: map[[2]string][]string{}, wake: make(chan struct{}, 1)}
}

// projectBooking queues (or, with no runner, writes) a booking's decided status.
func (b *Bookings) projectBooking(ctx context.Context, id string, st core.BookingStatus) {
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

func (b *Bookings) projectPayment(ctx context.Context, id string, st core.PaymentStatus, reason string) {
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

func (b *Bookings) projectSold(ctx context.Context, holds []core.Hold) {
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
	p.bookings, p.payments, p.sold, p.pending = map[core.BookingStatus][]string{}, map[[2]string][]string{}, nil, 0
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
			keep(b.store.ProjectPayments(ctx, core.PaymentStatus(k[0]), k[1], chunk))
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
	// A run that spent its budget with work left is followed by another shortly (the flushes
	// between the two keep going), not after a whole interval: a storm of expiries is released
	// as fast as the expirer's own queues go, whatever HOLD_EXPIRY_INTERVAL says.
	var again <-chan time.Time
	expire := func() <-chan time.Time {
		more, err := b.expireAll(ctx)
		report(err)
		now := b.now()
		b.views.prune(now, 2*b.ttl+expiryInterval)
		b.slots.prune(now, b.ttl)
		if more {
			return time.After(expiryPause)
		}
		return nil
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
			again = expire()
		case <-again:
			again = expire()
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
	byShow := map[string][]core.Hold{}
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
		in := core.Intent{ID: core.IntentID(bk.ID, 0), BookingID: bk.ID, ShowID: bk.ShowID, UserID: bk.UserID, Seats: bk.Seats,
			ExpiresAt: bk.ExpiresAt}
		if err := b.store.AddIntent(ctx, in); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return b.store.SetMigrated(ctx)
}
