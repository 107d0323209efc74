package booking

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// DefaultSeatViewTTL is how long a process trusts its view of a show's seats before it reads
// the show's seat log again. The view only chooses which seats to try: the unique seat keys
// decide, a conflict or a sold-out answer always reads afresh, so a stale view costs a retry,
// never a wrong sale.
const DefaultSeatViewTTL = time.Second

// snapshotEvery is how many seat log entries pass between two snapshots of a show's seats:
// a process that loads a show reads its snapshot and at most about this many entries.
const snapshotEvery = 256

// maxAppendAttempts bounds the attempts at one seat log entry when other processes keep
// taking the next sequence number first.
const maxAppendAttempts = 32

// seatEntry is an occupied seat in a view: held by a booking until expires, or sold.
type seatEntry struct {
	booking string
	expires time.Time
	sold    bool
}

// applySeatOp applies one seat log operation to a show's seat state. The log is written after
// the fact by many processes, so entries about one seat may arrive out of order; the rules
// keep the state right wherever the log can tell, and the unique seat keys decide the rest:
//   - a sold seat stays sold (a paid booking is never released);
//   - a release clears a seat only if the releasing booking is its holder.
func applySeatOp(m map[string]seatEntry, op core.SeatOp) {
	for _, s := range op.Seats {
		cur, ok := m[s]
		switch op.Kind {
		case core.SeatOpHeld:
			if ok && cur.sold {
				continue
			}
			m[s] = seatEntry{booking: op.BookingID, expires: op.ExpiresAt}
		case core.SeatOpFreed:
			if ok && !cur.sold && cur.booking == op.BookingID {
				delete(m, s)
			}
		case core.SeatOpSold:
			e := seatEntry{booking: op.BookingID, expires: op.ExpiresAt, sold: true}
			if ok && cur.booking == op.BookingID && e.expires.IsZero() {
				e.expires = cur.expires
			}
			m[s] = e
		}
	}
}

// seatView is one process's view of a show's seats: the state of the show's seat log up to
// seq, with this process's own operations not yet in the log laid over it, and the seats
// found taken by a holder the log did not name yet (a unique key refused them).
type seatView struct {
	showID string

	mu      sync.Mutex
	loaded  bool
	seq     int64                // log entries applied to log
	readAt  time.Time            // when the last read that reached the log's head began
	log     map[string]seatEntry // the log's state at seq
	local   []core.SeatOp        // this process's operations not yet in the log, in order
	eff     map[string]seatEntry // log with local laid over it
	unknown map[string]time.Time // seats a unique key showed taken although the view had them free, and when
	used    time.Time
	snapSeq int64 // seq of the newest snapshot this process knows of

	// When the compaction of the show's log needs looking at again, as this process last saw
	// its record (see CompactSeatLogs): once seq reaches compactSeq and not before compactNext.
	compactSeq  int64
	compactNext time.Time

	queue   []queuedOp // operations waiting to be written
	writing bool

	snapping atomic.Bool // a snapshot write is under way

	// Kept in step with eff, so that a booking's free seats and a seat map cost the same
	// however full the show is: which seats are occupied and which sold (by layout index),
	// and the unsold holds by the time they end (stale items are skipped when they come up).
	layout *SeatLayout
	occ    []bool
	sold   []bool
	ends   expiryHeap
}

// expiryItem is an unsold hold in the expiry heap.
type expiryItem struct {
	at      time.Time
	seat    string
	booking string
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sync brings occ and ends up to date with eff for the given seats; call with mu held.
func (v *seatView) sync(seats []string) {
	if v.layout == nil {
		return
	}
	for _, s := range seats {
		i, ok := v.layout.index[s]
		if !ok {
			continue
		}
		e, held := v.eff[s]
		v.occ[i], v.sold[i] = held, held && e.sold
		if held && !e.sold {
			heap.Push(&v.ends, expiryItem{at: e.expires, seat: s, booking: e.booking})
		}
	}
}

// useLayout sets the show's layout (the first time, or after the show changed size) and
// computes occ and ends from eff; call with mu held.
func (v *seatView) useLayout(l *SeatLayout) {
	if v.layout == l {
		return
	}
	v.layout = l
	v.syncAll()
}

// syncAll recomputes occ and ends from eff; call with mu held.
func (v *seatView) syncAll() {
	if v.layout == nil {
		return
	}
	v.occ, v.sold = make([]bool, v.layout.Seats), make([]bool, v.layout.Seats)
	v.ends = v.ends[:0]
	for s, e := range v.eff {
		if i, ok := v.layout.index[s]; ok {
			v.occ[i], v.sold[i] = true, e.sold
			if !e.sold {
				v.ends = append(v.ends, expiryItem{at: e.expires, seat: s, booking: e.booking})
			}
		}
	}
	heap.Init(&v.ends)
}

// applyEff lays op over eff; call with mu held.
func (v *seatView) applyEff(op core.SeatOp) {
	applySeatOp(v.eff, op)
	v.sync(op.Seats)
}

// recompute sets eff for the given seats to the log's state with this process's own pending
// operations laid over it; call with mu held.
func (v *seatView) recompute(seats []string) {
	for _, s := range seats {
		if e, ok := v.log[s]; ok {
			v.eff[s] = e
		} else {
			delete(v.eff, s)
		}
		for _, op := range v.local {
			if slices.Contains(op.Seats, s) {
				applySeatOp(v.eff, core.SeatOp{Kind: op.Kind, BookingID: op.BookingID, Seats: []string{s}, ExpiresAt: op.ExpiresAt})
			}
		}
	}
	v.sync(seats)
}

type queuedOp struct {
	op   core.SeatOp
	done chan bool // closed after the write; true if the operation is in the log
}

// rebuild recomputes eff (and occ and ends) from log and local; call with mu held.
func (v *seatView) rebuild() {
	v.eff = make(map[string]seatEntry, len(v.log)+8)
	for s, e := range v.log {
		v.eff[s] = e
	}
	for _, op := range v.local {
		applySeatOp(v.eff, op)
	}
	v.syncAll()
}

// seatViews keeps the views of the shows this process books.
type seatViews struct {
	ttl time.Duration
	// reloadAfter is half the seat log's retention (zero: the log is never compacted): a view
	// whose last read of the log's head is older reloads from the snapshot instead of tailing,
	// and a read of the log that takes more than a quarter of it is not trusted (see
	// CompactSeatLogs).
	reloadAfter time.Duration
	mu          sync.Mutex
	views       map[string]*seatView
	sf          singleflight.Group
}

// behind reports whether the view's last read of the log's head is too old for it to tail the
// log, write after its head or save a snapshot of it: the log may have been compacted past its
// head since; call with v.mu held.
func (vs *seatViews) behind(v *seatView, now time.Time) bool {
	return vs.reloadAfter > 0 && now.Sub(v.readAt) >= vs.reloadAfter
}

// slow reports whether a read of the log begun at start took too long to be trusted (entries
// it had still to read may have been deleted meanwhile).
func (vs *seatViews) slow(start, now time.Time) bool {
	return vs.reloadAfter > 0 && now.Sub(start) >= vs.reloadAfter/4
}

// list returns the views kept.
func (vs *seatViews) list() []*seatView {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	out := make([]*seatView, 0, len(vs.views))
	for _, v := range vs.views {
		out = append(out, v)
	}
	return out
}

func (vs *seatViews) get(showID string) *seatView {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v := vs.views[showID]
	if v == nil {
		v = &seatView{showID: showID, log: map[string]seatEntry{}, eff: map[string]seatEntry{}, unknown: map[string]time.Time{}}
		vs.views[showID] = v
	}
	return v
}

// prune drops views unused for an hour (long after any TTL) and unknown marks older than
// maxUnknown (by then the holder has been named in the log or released by the expirer).
func (vs *seatViews) prune(now time.Time, maxUnknown time.Duration) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for id, v := range vs.views {
		v.mu.Lock()
		old := now.Sub(v.used) > time.Hour && !v.writing && len(v.local) == 0
		for s, at := range v.unknown {
			if now.Sub(at) > maxUnknown {
				delete(v.unknown, s)
			}
		}
		v.mu.Unlock()
		if old {
			delete(vs.views, id)
		}
	}
}

// seatState is a copy of a view's occupied seats, for one decision.
type seatState struct {
	at      time.Time // when the read it rests on began
	seats   map[string]seatEntry
	unknown map[string]bool
}

// freshView returns the show's view. With since zero the view will do: it is used from
// memory, and a view older than the TTL is refreshed in the background (one behind the log's
// compaction is reloaded at once). With since set it rests on a read of the log's head begun
// at or after since: a 409 rests on it.
func (b *Bookings) freshView(ctx context.Context, showID string, since time.Time) (*seatView, error) {
	v := b.views.get(showID)
	now := b.now()
	v.mu.Lock()
	v.used = now
	fresh := v.loaded && (since.IsZero() || !v.readAt.Before(since)) && !b.views.behind(v, now)
	stale := v.loaded && now.Sub(v.readAt) >= b.views.ttl
	v.mu.Unlock()
	if !fresh {
		for range 2 { // a shared read begun before since does not count: read once more
			if err := b.refresh(ctx, v); err != nil {
				return nil, err
			}
			v.mu.Lock()
			fresh = since.IsZero() || !v.readAt.Before(since)
			v.mu.Unlock()
			if fresh {
				break
			}
		}
	} else if stale {
		b.views.sf.DoChan(showID, func() (any, error) { return nil, b.tail(context.WithoutCancel(ctx), v) })
	}
	return v, nil
}

// seatsOf returns a copy of the show's seat state (see freshView for since).
func (b *Bookings) seatsOf(ctx context.Context, showID string, since time.Time) (*seatState, error) {
	v, err := b.freshView(ctx, showID, since)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &seatState{at: v.readAt, seats: make(map[string]seatEntry, len(v.eff)), unknown: make(map[string]bool, len(v.unknown))}
	for s, e := range v.eff {
		st.seats[s] = e
	}
	for s, at := range v.unknown {
		// A decision that must rest on a read made since a time does not take an older
		// refusal's word: the seat is tried again (and marked again if still taken).
		if since.IsZero() || !at.Before(since) {
			st.unknown[s] = true
		}
	}
	return st, nil
}

// refresh reads the show's log up to its head (loading the view first if needed); concurrent
// refreshes of a show are one read.
func (b *Bookings) refresh(ctx context.Context, v *seatView) error {
	_, err, _ := b.views.sf.Do(v.showID, func() (any, error) { return nil, b.tail(context.WithoutCancel(ctx), v) })
	return err
}

// tail loads the view if it is not loaded, then applies the log's entries after seq, reading
// each by its exact id until the first that does not exist yet. A view behind the log's
// compaction (see seatViews.behind) is loaded afresh instead: the entries after its head may be
// deleted, and reading up to the first missing one would stop in the hole.
func (b *Bookings) tail(ctx context.Context, v *seatView) error {
	start := b.now()
	v.mu.Lock()
	if v.loaded && b.views.behind(v, start) {
		v.loaded = false
	}
	loaded, seq := v.loaded, v.seq
	v.mu.Unlock()
	if !loaded {
		return b.load(ctx, v, start)
	}
	var entries []*core.SeatLogEntry
	for {
		e, err := b.store.SeatLog(ctx, v.showID, seq+1)
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		entries = append(entries, e)
		seq++
	}
	if b.views.slow(start, b.now()) {
		return b.untrusted(v)
	}
	v.mu.Lock()
	var touched []string
	for _, e := range entries {
		if e.Seq == v.seq+1 {
			for _, op := range e.Ops {
				applySeatOp(v.log, op)
				for _, s := range op.Seats {
					delete(v.unknown, s) // the log speaks of the seat now: its word replaces the guess
				}
				touched = append(touched, op.Seats...)
			}
			v.seq = e.Seq
		}
	}
	v.recompute(touched)
	if v.readAt.Before(start) {
		v.readAt = start
	}
	needSnap := v.seq-v.snapSeq >= 2*snapshotEvery
	v.mu.Unlock()
	if needSnap {
		b.snapshotSoon(v)
	}
	return nil
}

// load reads the show's snapshot and the log after it. A show without a snapshot has had
// fewer entries than snapshotEvery (MigrateSeatLogs gave every show that had holds before
// seat logs existed a snapshot).
func (b *Bookings) load(ctx context.Context, v *seatView, start time.Time) error {
	snap, err := b.store.SeatSnapshot(ctx, v.showID)
	if err != nil {
		return err
	}
	m := map[string]seatEntry{}
	var seq int64
	if snap != nil {
		seq = snap.Seq
		for _, s := range snap.Seats {
			m[s.Seat] = seatEntry{booking: s.BookingID, expires: s.ExpiresAt, sold: s.Sold}
		}
		for _, s := range snap.Sold {
			m[s] = seatEntry{sold: true}
		}
	}
	for {
		e, err := b.store.SeatLog(ctx, v.showID, seq+1)
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		for _, op := range e.Ops {
			applySeatOp(m, op)
		}
		seq = e.Seq
	}
	if b.views.slow(start, b.now()) {
		return b.untrusted(v)
	}
	v.mu.Lock()
	if !v.loaded {
		v.log, v.seq, v.loaded = m, seq, true
		if snap != nil {
			v.snapSeq = max(v.snapSeq, snap.Seq)
		}
		v.rebuild()
	}
	if v.readAt.Before(start) {
		v.readAt = start
	}
	needSnap := v.seq-v.snapSeq >= 2*snapshotEvery
	v.mu.Unlock()
	if needSnap {
		b.snapshotSoon(v)
	}
	return nil
}

// untrusted answers a read of the log that took too long: the view is loaded afresh next time.
func (b *Bookings) untrusted(v *seatView) error {
	v.mu.Lock()
	v.loaded = false
	v.mu.Unlock()
	return errs.E(errs.Unavailable, "reading the seats took too long; try again")
}

// snapshotSoon writes a snapshot in the background, unless one is being written.
func (b *Bookings) snapshotSoon(v *seatView) {
	if v.snapping.CompareAndSwap(false, true) {
		b.bg.Go(func() {
			defer v.snapping.Store(false)
			b.saveSnapshot(context.Background(), v)
		})
	}
}

// saveSnapshot writes the view's log state as the show's snapshot (failures are harmless: the
// log has everything). A view behind the log's compaction writes none (it could replace a
// snapshot the compaction relies on with an older one), and the write is given up after a
// quarter of the view's trust (see CompactSeatLogs).
func (b *Bookings) saveSnapshot(ctx context.Context, v *seatView) {
	v.mu.Lock()
	if !v.loaded || b.views.behind(v, b.now()) {
		v.mu.Unlock()
		return
	}
	snap := core.SeatSnapshot{ShowID: v.showID, Seq: v.seq}
	for s, e := range v.log {
		if e.sold {
			snap.Sold = append(snap.Sold, s)
		} else {
			snap.Seats = append(snap.Seats, core.SnapSeat{Seat: s, BookingID: e.booking, ExpiresAt: e.expires})
		}
	}
	v.mu.Unlock()
	if b.views.reloadAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.views.reloadAfter/4)
		defer cancel()
	}
	if err := b.store.SaveSeatSnapshot(ctx, snap); err == nil {
		v.mu.Lock()
		v.snapSeq = max(v.snapSeq, snap.Seq)
		v.mu.Unlock()
	}
}

// logOp lays op over this process's view of the show at once and queues it for the show's
// seat log. The returned channel is closed once the write is over; it then yields true if op
// is in the log.
func (b *Bookings) logOp(showID string, op core.SeatOp) <-chan bool {
	v := b.views.get(showID)
	done := make(chan bool, 1)
	if len(op.Seats) == 0 {
		done <- true
		close(done)
		return done
	}
	v.mu.Lock()
	v.local = append(v.local, op)
	v.applyEff(op)
	for _, s := range op.Seats {
		delete(v.unknown, s)
	}
	v.queue = append(v.queue, queuedOp{op: op, done: done})
	start := !v.writing
	v.writing = true
	v.mu.Unlock()
	if start {
		go b.writeLog(v)
	}
	return done
}

// writeLog writes the queued operations of a show, as many as are queued per entry, one
// entry at a time: the next entry's sequence number is the view's head + 1; if another
// process took it first, the view reads up to the new head and tries after it.
func (b *Bookings) writeLog(v *seatView) {
	ctx := context.Background()
	for {
		v.mu.Lock()
		batch := v.queue
		v.queue = nil
		if len(batch) == 0 {
			v.writing = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		ops := make([]core.SeatOp, len(batch))
		for i, q := range batch {
			ops[i] = q.op
		}
		landed := false
		for attempt := 0; attempt < maxAppendAttempts; attempt++ {
			v.mu.Lock()
			seq, ready := v.seq+1, v.loaded && !b.views.behind(v, b.now())
			v.mu.Unlock()
			if !ready {
				// Never write after a head that may be behind the log's compaction: the number
				// after it may be one deleted, free to insert again but never read again.
				if err := b.refresh(ctx, v); err != nil {
					break
				}
				continue
			}
			dup, err := b.store.AppendSeatLog(ctx, core.SeatLogEntry{ShowID: v.showID, Seq: seq, Ops: ops})
			if err != nil {
				break
			}
			if !dup {
				landed = true
				v.mu.Lock()
				if v.seq == seq-1 {
					for _, op := range ops {
						applySeatOp(v.log, op)
					}
					v.seq = seq
				}
				v.mu.Unlock()
				if seq%snapshotEvery == 0 {
					b.snapshotSoon(v)
				}
				break
			}
			if err := b.refresh(ctx, v); err != nil {
				break
			}
		}
		// The operations leave the overlay: they are in the log now, or lost to it (then the
		// view may show their seats wrong until their booking is decided; the unique keys
		// still decide every sale).
		v.mu.Lock()
		v.local = v.local[min(len(ops), len(v.local)):]
		if !landed {
			var seats []string
			for _, op := range ops {
				seats = append(seats, op.Seats...)
			}
			v.recompute(seats)
		}
		v.mu.Unlock()
		if !landed {
			b.events.SeatLogDropped(len(ops))
		}
		for _, q := range batch {
			q.done <- landed
			close(q.done)
		}
	}
}

// markUnknown records seats a unique key showed taken at now although the view had them free
// (no holder, or one known to have released them).
func (b *Bookings) markUnknown(showID string, seats []string, now time.Time) {
	v := b.views.get(showID)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range seats {
		v.unknown[s] = now
	}
}
