package booking

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// validate checks the request against nothing but itself.
func (r *BookingRequest) validate() error {
	f := map[string]string{}
	r.TheatreID, r.MovieID, r.Timing = strings.TrimSpace(r.TheatreID), strings.TrimSpace(r.MovieID), strings.TrimSpace(r.Timing)
	if !core.IsID(r.TheatreID) {
		f["theatreId"] = "must be a 24-character hex id"
	}
	if !core.IsID(r.MovieID) {
		f["movieId"] = "must be a 24-character hex id"
	}
	if r.Timing == "" {
		f["timing"] = "is required: the show's timing, as the show gives it"
	} else if len(r.Timing) > 64 {
		f["timing"] = "must be at most 64 characters"
	}
	if len(r.Seats) > maxNamedSeats {
		f["seats"] = fmt.Sprintf("at most %d seats may be named", maxNamedSeats)
	} else if len(r.Seats) > 0 {
		seen := map[string]bool{}
		for i, s := range r.Seats {
			s = Normalize(s)
			r.Seats[i] = s
			switch {
			case s == "" || len(s) > 8:
				f["seats"] = "each seat is a label such as A1"
			case seen[s]:
				f["seats"] = "seat " + s + " is named twice"
			}
			seen[s] = true
		}
		if r.NoOfSeats != 0 && r.NoOfSeats != len(r.Seats) {
			f["noOfSeats"] = "must equal the number of seats named (or be left out)"
		}
		r.NoOfSeats = len(r.Seats)
	} else if r.NoOfSeats < 1 {
		f["noOfSeats"] = "must be at least 1 (or name the seats)"
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	return nil
}

// Book holds seats for the caller and creates an IN_PROCESS booking that expires after the
// hold TTL. Under contention it retries other free seats a bounded number of rounds, then
// answers errs.Conflict with the seats still free in Data. A booking of more seats than
// MaxSeatsPerBooking, or one that would take the caller past MaxOpenSeatsPerUser seats in
// unpaid bookings, is errs.RateLimited. A booking of a free show (total 0) is confirmed at once,
// SUCCESSFULL (see free.go).
func (b *Bookings) Book(ctx context.Context, caller *core.User, req BookingRequest) (*core.Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	if req.NoOfSeats > b.maxSeats {
		return nil, errs.E(errs.RateLimited, "at most %d seats per booking", b.maxSeats).Because(core.ReasonTooManySeats).After(b.ttl)
	}
	show, err := b.shows.FindShow(ctx, req.TheatreID, req.MovieID, req.Timing)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "no show of this movie in this theatre at this timing")
	}
	if err != nil {
		return nil, err
	}
	layout := LayoutOf(show)
	for _, s := range req.Seats {
		if !layout.Has(s) {
			return nil, errs.Fields(map[string]string{"seats": fmt.Sprintf("%s is not a seat of this show (seats run %s to %s)",
				s, layout.labels[0], layout.labels[len(layout.labels)-1])})
		}
	}
	if req.NoOfSeats > show.NoOfSeats {
		return nil, errs.E(errs.Conflict, "the show has only %d seats", show.NoOfSeats).Because(core.ReasonNotEnoughSeats)
	}
	now := b.clock()
	bk := &core.Booking{ID: b.store.NewID(), UserID: caller.ID, TheatreID: show.TheatreID, MovieID: show.MovieID,
		ShowID: show.ID, Timing: show.Timing, NoOfSeats: req.NoOfSeats, Status: core.BookingInProcess,
		TotalCost: float64(cents(show.Price)*int64(req.NoOfSeats)) / 100,
		ExpiresAt: now.Add(b.ttl), CreatedAt: now, UpdatedAt: now}
	c, err := b.hold(ctx, show, layout, bk, req.Seats)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(c.seats, func(x, y string) int { return layout.index[x] - layout.index[y] })
	slices.Sort(c.slots)
	bk.Seats, bk.Slots, bk.Rounds = c.seats, c.slots, c.rounds
	// A deletion of the show inserts its marker, then looks for holds; a booking wins its
	// holds, then looks for the marker: one of the two sees the other. The look runs beside
	// the booking's insert: a booking written for a show being deleted is decided CANCELLED
	// at once, before anyone learns its id.
	var openErr error
	var wg sync.WaitGroup
	wg.Go(func() { openErr = b.showOpen(ctx, show.ID) })
	err = b.store.CreateBooking(ctx, bk)
	wg.Wait()
	if err != nil {
		return b.failedCreate(context.WithoutCancel(ctx), bk, err)
	}
	if openErr != nil {
		if _, ferr := b.failedCreate(context.WithoutCancel(ctx), bk, openErr); ferr != nil {
			return nil, ferr
		}
		// Paid first: impossible for a booking nobody knows of yet, but the outcome decides.
	}
	b.rememberBooking(bk)
	b.events.Booking("created")
	if cents(bk.TotalCost) == 0 {
		return b.confirmFree(ctx, caller, bk) // a free screening: confirmed at once (free.go)
	}
	return bk, nil
}

// failedCreate handles a booking whose insert failed. The insert may have landed all the
// same (a lost reply, a timeout): the booking's fate is decided CANCELLED first, so that it can
// never be paid, and only then are its seats released. If even that decision cannot be made,
// everything stays held: the booking's intent lets the expirer decide it at the end of its hold.
func (b *Bookings) failedCreate(ctx context.Context, bk *core.Booking, cause error) (*core.Booking, error) {
	o, _, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()})
	if err != nil {
		return nil, cause
	}
	if o.Status == core.BookingPaid { // it had landed, and was paid first: it is a booking after all
		b.rememberBooking(bk)
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
		return bk, nil
	}
	b.settleBooking(ctx, bk, o)
	return nil, cause
}

// claimed is what a booking won while holding: seats, fair-use slots, and the number of
// intents (rounds) written.
type claimed struct {
	seats  []string
	slots  []int
	rounds int
	unsure bool // a claim's insert failed: what landed is unknown (the intents still say)
}

// hold claims seats (and the caller's fair-use slots) for the booking until it has NoOfSeats
// of each or the rounds run out. Each round first writes an intent naming what it will try.
// Seats are chosen from the process's view of the show; a conflict, or too few seats in view,
// reads the seat log afresh before the next round, so a 409 always rests on a read made during
// the request. On failure hold releases what it won and answers the error: errs.Conflict with
// the seats still free, errs.RateLimited for a caller at the open-seat bound.
func (b *Bookings) hold(ctx context.Context, show *core.Show, layout *SeatLayout, bk *core.Booking, named []string) (*claimed, error) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	need := bk.NoOfSeats
	needSlots := 0
	if b.maxOpen > 0 {
		needSlots = need
	}
	start := b.now()
	c := &claimed{}
	var since time.Time // zero: the view will do; else a read at or after since
	var triedSlots []int
	releasesAtStart, retriedSlots := b.slots.releases(bk.UserID), false
	fail := func(err error) (*claimed, error) {
		b.unclaim(context.WithoutCancel(ctx), bk, c)
		return nil, err
	}
	seatRounds := 0
	for len(c.seats) < need || len(c.slots) < needSlots {
		if err := ctx.Err(); err != nil {
			return fail(errs.Wrap(errs.Unavailable, err, "request cancelled"))
		}
		var pick []string
		if want := need - len(c.seats); want > 0 {
			if seatRounds >= b.rounds {
				return fail(b.noSeats(ctx, show, layout, named, need, start))
			}
			free, err := b.freeSeats(ctx, show, layout, since, want, named)
			if err != nil {
				return fail(err)
			}
			for _, s := range c.seats {
				free.Remove(s)
			}
			short := false
			if len(named) > 0 {
				for _, s := range named {
					if slices.Contains(c.seats, s) {
						continue
					}
					if !free.Has(s) {
						short = true
						break
					}
					pick = append(pick, s)
				}
			} else if free.Len() < want {
				short = true
			}
			if short {
				if since.IsZero() {
					since = start // the view may be stale: look again
					continue
				}
				return fail(b.conflict(need, named, free.Labels()))
			}
			if len(named) > 0 {
				b.markInflight(show.ID, pick, 1)
			} else {
				jitter := float64(seatRounds) * 10 // after a conflict, spread over more seats
				pick = b.pickAndMark(show.ID, layout, free, want, jitter, rng)
			}
			seatRounds++
		}
		var slotPick []int
		if want := needSlots - len(c.slots); want > 0 {
			slotPick = b.slots.candidates(bk.UserID, b.maxOpen, want, triedSlots, b.now(), b.ttl, rng)
			if len(slotPick) < want && !retriedSlots && b.slots.waitReleases(ctx, bk.UserID, releasesAtStart) {
				// Slots of the customer's own decided bookings were released meanwhile (in the
				// background, after a payment or a cancellation): try again, once.
				retriedSlots = true
				triedSlots = nil
				slotPick = b.slots.candidates(bk.UserID, b.maxOpen, want, triedSlots, b.now(), b.ttl, rng)
			}
			if len(slotPick) < want {
				b.markInflight(show.ID, pick, -1)
				return fail(errs.E(errs.RateLimited, "you hold seats in unpaid bookings up to the limit of %d: pay or cancel one before booking more", b.maxOpen).
					Because(core.ReasonFairUseExceeded).After(b.ttl))
			}
			triedSlots = append(triedSlots, slotPick...)
		}
		in := core.Intent{ID: core.IntentID(bk.ID, c.rounds), BookingID: bk.ID, ShowID: show.ID, UserID: bk.UserID,
			Seats: pick, Slots: slotPick, ExpiresAt: bk.ExpiresAt}
		if err := b.store.AddIntent(ctx, in); err != nil {
			b.markInflight(show.ID, pick, -1)
			c.rounds++ // it may have landed: keep it for the expirer
			c.unsure = true
			return fail(err)
		}
		c.rounds++
		wonSeats, wonSlots, err := b.claim(ctx, show.ID, bk, pick, slotPick)
		c.seats = append(c.seats, wonSeats...)
		c.slots = append(c.slots, wonSlots...)
		b.markInflight(show.ID, pick, -1)
		if err != nil {
			c.unsure = true
			return fail(err)
		}
		// Every slot tried is taken now: the ones lost by another booking, the ones won by this
		// one until it is settled (which forgets them), so that the customer's next booking
		// tries a free one first.
		b.slots.seen(bk.UserID, slotPick, true, b.now())
		if extra := len(c.slots) - needSlots; extra > 0 { // a last round tried every slot left
			back := slices.Clone(c.slots[needSlots:])
			if err := b.store.ReleaseSlots(context.WithoutCancel(ctx), bk.UserID, bk.ID, back); err == nil {
				c.slots = c.slots[:needSlots]
				b.slots.seen(bk.UserID, back, false, b.now())
			}
		}
		if lost := len(pick) - len(wonSeats); lost > 0 {
			b.events.SeatConflicts(lost)
			var taken []string
			for _, s := range pick {
				if !slices.Contains(wonSeats, s) {
					taken = append(taken, s)
				}
			}
			since = b.now() // someone else holds seats the view thought free
			b.markUnknown(show.ID, taken, since)
			if len(named) > 0 {
				return fail(b.noSeats(ctx, show, layout, named, need, since))
			}
		}
	}
	return c, nil
}

// claim inserts the round's holds and fair-use slots at once.
func (b *Bookings) claim(ctx context.Context, showID string, bk *core.Booking, seats []string, slots []int) ([]string, []int, error) {
	var (
		wg               sync.WaitGroup
		wonSeats         []string
		wonSlots         []int
		seatErr, slotErr error
	)
	if len(seats) > 0 {
		holds := make([]core.Hold, len(seats))
		for i, s := range seats {
			holds[i] = core.Hold{ShowID: showID, Seat: s, BookingID: bk.ID, ExpiresAt: bk.ExpiresAt}
		}
		wg.Go(func() { wonSeats, seatErr = b.store.InsertHolds(ctx, holds) })
	}
	if len(slots) > 0 {
		wg.Go(func() { wonSlots, slotErr = b.claimSlots(ctx, bk, slots) })
	}
	wg.Wait()
	if len(wonSeats) > 0 {
		// Into the view (and the log) before out of inflight: a seat won is always in one of
		// the two, so another request of this process never picks it (see pickAndMark).
		b.logOp(showID, core.SeatOp{Kind: core.SeatOpHeld, BookingID: bk.ID, Seats: wonSeats, ExpiresAt: bk.ExpiresAt})
	}
	if seatErr != nil {
		return wonSeats, wonSlots, seatErr
	}
	return wonSeats, wonSlots, slotErr
}

// claimSlots claims the booking's fair-use slots. A slot still taken by a booking the expirer
// has released (decided, its slot not yet deleted: see ExpireDue) is deleted here, by its exact
// id (never another's), and claimed again: the customer has that room back the moment the
// expirer decides, not when it clears. The expirer's notes are read from this process's memory
// and, for what that does not cover, from the shared notes (when a LapseStore is set: the
// expirer runs on one replica, its customers book on any).
func (b *Bookings) claimSlots(ctx context.Context, bk *core.Booking, slots []int) ([]int, error) {
	won, err := b.store.ClaimSlots(ctx, bk.UserID, bk.ID, slots)
	if err != nil || len(won) == len(slots) {
		return won, err
	}
	lapsed := b.lapsed.of(bk.UserID, slots, won)
	lapsed = b.lapsed.withShared(ctx, bk.UserID, slots, won, lapsed)
	if len(lapsed) == 0 {
		return won, nil
	}
	var again []int
	for holder, ks := range lapsed {
		if err := b.store.ReleaseSlots(ctx, bk.UserID, holder, ks); err != nil {
			continue
		}
		b.lapsed.drop(bk.UserID, holder, ks)
		for _, k := range ks {
			if !slices.Contains(again, k) {
				again = append(again, k)
			}
		}
	}
	if len(again) == 0 {
		return won, nil
	}
	more, err := b.store.ClaimSlots(ctx, bk.UserID, bk.ID, again)
	return append(won, more...), err
}

// unclaim releases what a booking won before its booking was written (so nobody can have paid
// it): its holds, its slots and, when all of that is surely gone, its intents.
func (b *Bookings) unclaim(ctx context.Context, bk *core.Booking, c *claimed) {
	ok := !c.unsure
	if len(c.seats) > 0 {
		if err := b.store.ReleaseHolds(ctx, bk.ShowID, bk.ID, c.seats); err != nil {
			ok = false
		} else {
			b.logOp(bk.ShowID, core.SeatOp{Kind: core.SeatOpFreed, BookingID: bk.ID, Seats: c.seats})
		}
	}
	if len(c.slots) > 0 {
		if err := b.store.ReleaseSlots(ctx, bk.UserID, bk.ID, c.slots); err != nil {
			ok = false
		} else {
			b.slots.seen(bk.UserID, c.slots, false, b.now())
		}
	}
	if ok && c.rounds > 0 {
		_ = b.store.DeleteIntents(ctx, bk.ExpiresAt, intentIDs(bk.ID, c.rounds))
	}
}

func intentIDs(bookingID string, rounds int) []string {
	ids := make([]string, rounds)
	for i := range ids {
		ids[i] = core.IntentID(bookingID, i)
	}
	return ids
}

// noSeats is the 409 of a booking that could not get its seats, with the seats free in a read
// made at or after since.
func (b *Bookings) noSeats(ctx context.Context, show *core.Show, layout *SeatLayout, named []string, need int, since time.Time) error {
	var free []string
	if set, err := b.freeSeats(ctx, show, layout, since, need, named); err == nil {
		free = set.Labels()
	}
	return b.conflict(need, named, free)
}

func (b *Bookings) conflict(need int, named, free []string) error {
	b.events.Booking("conflict")
	msg, reason := fmt.Sprintf("not enough free seats: %d asked, %d free", need, len(free)), core.ReasonNotEnoughSeats
	if len(named) > 0 {
		msg, reason = "some of the seats asked for are taken", core.ReasonSeatTaken
	}
	if free == nil {
		free = []string{}
	}
	e := errs.E(errs.Conflict, "%s", msg).Because(reason)
	e.Data = map[string]any{"freeSeats": free, "noOfFreeSeats": len(free)}
	return e
}

func (b *Bookings) markInflight(showID string, seats []string, d int) {
	if len(seats) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.markInflightLocked(showID, seats, d)
}

func (b *Bookings) markInflightLocked(showID string, seats []string, d int) {
	m := b.inflight[showID]
	if m == nil {
		m = map[string]int{}
		b.inflight[showID] = m
	}
	for _, s := range seats {
		if m[s] += d; m[s] <= 0 {
			delete(m, s)
		}
	}
	if len(m) == 0 {
		delete(b.inflight, showID)
	}
}

// pickAndMark picks want seats of free and marks them in flight, in one step under the
// process's lock, preferring seats that no other request of this process is inserting or has
// won since free was computed (free may predate them). So requests of one process never race
// each other for a seat; only other replicas can, and the unique seat key settles that.
func (b *Bookings) pickAndMark(showID string, layout *SeatLayout, free *SeatSet, want int, jitter float64, rng *rand.Rand) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	others := free.Clone()
	for s := range b.inflight[showID] {
		others.Remove(s)
	}
	v := b.views.get(showID)
	v.mu.Lock()
	if v.layout == layout {
		for i, taken := range v.occ { // won since free was computed
			if taken && others.in[i] {
				others.in[i] = false
				others.size--
			}
		}
	}
	v.mu.Unlock()
	pick := layout.Best(others, want, jitter, rng)
	if pick == nil {
		pick = layout.Best(free, want, jitter, rng)
	}
	b.markInflightLocked(showID, pick, 1)
	return pick
}

// freeSeats returns the show's free seats (see freshView for since). A seat counts as taken if
// it is sold, held and not past its hold, or found taken by a unique key. An unpaid hold past
// its expiry counts as free once it is met: its booking is decided EXPIRED (unless decided
// otherwise first) and its seats are released. Only as many are met as the caller needs (want
// seats, or the named ones): after a storm of expiries a show may have thousands, and the
// expirer releases them in the background. The cost does not grow with how full the show is:
// the view keeps which seats are occupied, and the holds by the time they end.
func (b *Bookings) freeSeats(ctx context.Context, show *core.Show, layout *SeatLayout, since time.Time, want int, named []string) (*SeatSet, error) {
	v, err := b.freshView(ctx, show.ID, since)
	if err != nil {
		return nil, err
	}
	now := b.takeoverNow()
	b.mu.Lock()
	busy := len(b.inflight[show.ID]) // free seats other requests of this process are taking
	b.mu.Unlock()
	v.mu.Lock()
	v.useLayout(layout)
	free := layout.NewSeatSet(false)
	for i, taken := range v.occ {
		if !taken {
			free.in[i] = true
			free.size++
		}
	}
	for s, at := range v.unknown {
		if since.IsZero() || !at.Before(since) {
			free.Remove(s)
		}
	}
	stale := map[string][]string{} // booking id -> seats of expired, unsold holds
	var due []expiryItem
	if len(named) > 0 {
		for _, s := range named {
			if e, ok := v.eff[s]; ok && !e.sold && now.After(e.expires) && !free.Has(s) {
				stale[e.booking] = append(stale[e.booking], s)
			}
		}
	} else {
		for short := want + busy - free.Len(); short > 0 && v.ends.Len() > 0 && now.After(v.ends[0].at); {
			it := heap.Pop(&v.ends).(expiryItem)
			if e, ok := v.eff[it.seat]; ok && !e.sold && e.booking == it.booking && e.expires.Equal(it.at) {
				due = append(due, it)
				stale[it.booking] = append(stale[it.booking], it.seat)
				short--
			}
		}
	}
	v.mu.Unlock()
	for id, seats := range stale {
		o, err := b.expire(ctx, show.ID, id, seats)
		if err != nil {
			v.mu.Lock()
			for _, it := range due { // met again next time
				heap.Push(&v.ends, it)
			}
			v.mu.Unlock()
			return nil, err
		}
		if o.Status != core.BookingPaid {
			for _, s := range seats {
				free.Add(s)
			}
		}
	}
	return free, nil
}
