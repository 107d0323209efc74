package core

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Booking engine defaults.
const (
	DefaultHoldTTL            = 5 * time.Minute
	DefaultMaxRounds          = 8
	DefaultMaxSeatsPerBooking = 20
	// PaidEmailKind is the outbox kind of a booking's confirmation email.
	PaidEmailKind = "booking-paid"
)

// BookingsOptions configure the engine.
type BookingsOptions struct {
	HoldTTL            time.Duration // default DefaultHoldTTL
	MaxRounds          int           // seat-picking rounds under contention; default DefaultMaxRounds
	MaxSeatsPerBooking int           // default DefaultMaxSeatsPerBooking
	Events             BookingEvents
	// SeatViewTTL is how long the engine trusts its in-memory view of a show's holds when it
	// picks seats (default DefaultSeatViewTTL; negative: always read).
	SeatViewTTL time.Duration
	// Project copies each decided fate onto the booking, payment and hold documents (in the
	// background, batched), for readers of the raw collections. The engine never needs it: it
	// resolves bookings from their outcome records. Cheap on MongoDB; on the embedded dev
	// database every update scans its collection, so make run leaves it off.
	Project bool
	Now     func() time.Time
}

// Bookings is the booking engine: holds seats, takes payments, cancels and expires
// bookings. Held and paid seats never exceed a show's seats, whatever the concurrency and
// the number of replicas: a seat is held by inserting its unique key, and a booking's fate is
// decided by inserting its outcome record (see BookingStore).
type Bookings struct {
	store    BookingStore
	shows    ShowFinder
	ttl      time.Duration
	rounds   int
	maxSeats int
	events   BookingEvents
	now      func() time.Time

	outboxMu sync.RWMutex
	outbox   Outbox

	mu       sync.Mutex
	inflight map[string]map[string]int // show id -> seats being inserted by requests of this process

	views *seatViews
	proj  *projector

	namesMu sync.Mutex
	names   map[string]cachedName // movie and theatre names for emails

	project bool

	outcomesMu sync.Mutex
	outcomes   map[string]Outcome // decided outcomes never change: safe to keep

	recentMu sync.Mutex
	recent   map[string]*Booking // bookings this process created, as created

	expiryMu  sync.Mutex
	watermark time.Time // the expirer has met every booking whose hold ended before this
}

// getBooking reads a booking: from memory if this process created it within the last hold
// TTL (its stored fields never change but for the projected status, which resolve replaces),
// else from the store.
func (b *Bookings) getBooking(ctx context.Context, id string) (*Booking, error) {
	b.recentMu.Lock()
	bk, ok := b.recent[id]
	b.recentMu.Unlock()
	if ok && b.now().Sub(bk.CreatedAt) < b.ttl {
		c := *bk
		c.Seats = slices.Clone(bk.Seats)
		return &c, nil
	}
	return b.store.GetBooking(ctx, id)
}

// maxRecentBookings bounds the bookings kept in memory; a full map starts over.
const maxRecentBookings = 50000

func (b *Bookings) rememberBooking(bk *Booking) {
	c := *bk
	c.Seats = slices.Clone(bk.Seats)
	b.recentMu.Lock()
	defer b.recentMu.Unlock()
	if len(b.recent) >= maxRecentBookings {
		clear(b.recent)
	}
	b.recent[c.ID] = &c
}

// maxCachedOutcomes bounds the outcome cache; a full cache starts over.
const maxCachedOutcomes = 50000

func (b *Bookings) knownOutcome(id string) (Outcome, bool) {
	b.outcomesMu.Lock()
	defer b.outcomesMu.Unlock()
	o, ok := b.outcomes[id]
	return o, ok
}

func (b *Bookings) learnOutcome(o Outcome) {
	b.outcomesMu.Lock()
	defer b.outcomesMu.Unlock()
	if len(b.outcomes) >= maxCachedOutcomes {
		clear(b.outcomes)
	}
	b.outcomes[o.BookingID] = o
}

// outcome returns the booking's outcome (nil if undecided), from memory when known.
func (b *Bookings) outcome(ctx context.Context, id string) (*Outcome, error) {
	if o, ok := b.knownOutcome(id); ok {
		return &o, nil
	}
	o, err := b.store.Outcome(ctx, id)
	if o != nil {
		b.learnOutcome(*o)
	}
	return o, err
}

// outcomesOf returns the outcomes of the bookings, from memory when known.
func (b *Bookings) outcomesOf(ctx context.Context, ids []string) (map[string]Outcome, error) {
	out := make(map[string]Outcome, len(ids))
	var unknown []string
	for _, id := range ids {
		if o, ok := b.knownOutcome(id); ok {
			out[id] = o
		} else {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) == 0 {
		return out, nil
	}
	got, err := b.store.Outcomes(ctx, unknown)
	if err != nil {
		return nil, err
	}
	for id, o := range got {
		b.learnOutcome(o)
		out[id] = o
	}
	return out, nil
}

// decide inserts o unless the booking is decided already; it returns the outcome in force.
func (b *Bookings) decide(ctx context.Context, o Outcome) (Outcome, bool, error) {
	if known, ok := b.knownOutcome(o.BookingID); ok {
		return known, false, nil
	}
	got, won, err := b.store.Decide(ctx, o)
	if err == nil {
		b.learnOutcome(got)
	}
	return got, won, err
}

type cachedName struct {
	name string
	at   time.Time
}

// namesTTL bounds how stale a movie or theatre name in a confirmation email may be.
const namesTTL = time.Minute

// name returns the cached name of id, or loads it.
func (b *Bookings) name(id string, load func() (string, error)) string {
	now := b.now()
	b.namesMu.Lock()
	c, ok := b.names[id]
	b.namesMu.Unlock()
	if ok && now.Sub(c.at) < namesTTL {
		return c.name
	}
	n, err := load()
	if err != nil {
		return id
	}
	b.namesMu.Lock()
	if len(b.names) >= 10000 {
		clear(b.names)
	}
	b.names[id] = cachedName{name: n, at: now}
	b.namesMu.Unlock()
	return n
}

// NewBookings returns the engine.
func NewBookings(store BookingStore, shows ShowFinder, opts BookingsOptions) *Bookings {
	if opts.HoldTTL <= 0 {
		opts.HoldTTL = DefaultHoldTTL
	}
	if opts.MaxRounds <= 0 {
		opts.MaxRounds = DefaultMaxRounds
	}
	if opts.MaxSeatsPerBooking <= 0 {
		opts.MaxSeatsPerBooking = DefaultMaxSeatsPerBooking
	}
	if opts.Events == nil {
		opts.Events = noEvents{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SeatViewTTL == 0 {
		opts.SeatViewTTL = DefaultSeatViewTTL
	}
	return &Bookings{views: &seatViews{ttl: opts.SeatViewTTL, views: map[string]*seatView{}}, proj: newProjector(),
		names: map[string]cachedName{}, project: opts.Project, outcomes: map[string]Outcome{}, recent: map[string]*Booking{},
		watermark: opts.Now().Add(-24 * time.Hour),
		store:     store, shows: shows, ttl: opts.HoldTTL, rounds: opts.MaxRounds,
		maxSeats: opts.MaxSeatsPerBooking, events: opts.Events, now: opts.Now,
		inflight: map[string]map[string]int{}}
}

// SetOutbox sets where confirmation emails go (nil: none are sent).
func (b *Bookings) SetOutbox(o Outbox) {
	b.outboxMu.Lock()
	b.outbox = o
	b.outboxMu.Unlock()
}

func (b *Bookings) getOutbox() Outbox {
	b.outboxMu.RLock()
	defer b.outboxMu.RUnlock()
	return b.outbox
}

// HoldTTL is how long a booking holds its seats unpaid.
func (b *Bookings) HoldTTL() time.Duration { return b.ttl }

func (b *Bookings) clock() time.Time { return b.now().UTC().Truncate(time.Millisecond) }

func mustBeApproved(u *User) error {
	if u == nil {
		return errs.E(errs.Unauthorized, MsgBadToken)
	}
	if u.Status != StatusApproved {
		return errs.E(errs.Forbidden, "your account is %s: it has no powers until an admin approves it", strings.ToLower(string(u.Status)))
	}
	return nil
}

// validate checks the request against nothing but itself.
func (r *BookingRequest) validate(maxSeats int) error {
	f := map[string]string{}
	r.TheatreID, r.MovieID, r.Timing = strings.TrimSpace(r.TheatreID), strings.TrimSpace(r.MovieID), strings.TrimSpace(r.Timing)
	if !IsID(r.TheatreID) {
		f["theatreId"] = "must be a 24-character hex id"
	}
	if !IsID(r.MovieID) {
		f["movieId"] = "must be a 24-character hex id"
	}
	if r.Timing == "" {
		f["timing"] = "is required: the show's timing, as the show gives it"
	} else if len(r.Timing) > 64 {
		f["timing"] = "must be at most 64 characters"
	}
	if len(r.Seats) > 0 {
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
		if len(r.Seats) > maxSeats {
			f["seats"] = fmt.Sprintf("at most %d seats per booking", maxSeats)
		}
		if r.NoOfSeats != 0 && r.NoOfSeats != len(r.Seats) {
			f["noOfSeats"] = "must equal the number of seats named (or be left out)"
		}
		r.NoOfSeats = len(r.Seats)
	} else if r.NoOfSeats < 1 || r.NoOfSeats > maxSeats {
		f["noOfSeats"] = fmt.Sprintf("must be from 1 to %d (or name the seats)", maxSeats)
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	return nil
}

// cents is a money amount in hundredths.
func cents(v float64) int64 { return int64(math.Round(v * 100)) }

// Book holds seats for the caller and creates an IN_PROCESS booking that expires after the
// hold TTL. Under contention it retries other free seats a bounded number of rounds, then
// answers errs.Conflict with the seats still free in Data.
func (b *Bookings) Book(ctx context.Context, caller *User, req BookingRequest) (*Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if err := req.validate(b.maxSeats); err != nil {
		return nil, err
	}
	show, err := b.shows.FindShow(ctx, req.TheatreID, req.MovieID, req.Timing)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "no show of this movie in this theatre at this timing")
	}
	if err != nil {
		return nil, err
	}
	layout := show.Layout()
	for _, s := range req.Seats {
		if !layout.Has(s) {
			return nil, errs.Fields(map[string]string{"seats": fmt.Sprintf("%s is not a seat of this show (seats run %s to %s)",
				s, layout.labels[0], layout.labels[len(layout.labels)-1])})
		}
	}
	if req.NoOfSeats > show.NoOfSeats {
		return nil, errs.E(errs.Conflict, "the show has only %d seats", show.NoOfSeats)
	}
	now := b.clock()
	bk := &Booking{ID: b.store.NewID(), UserID: caller.ID, TheatreID: show.TheatreID, MovieID: show.MovieID,
		ShowID: show.ID, Timing: show.Timing, NoOfSeats: req.NoOfSeats, Status: BookingInProcess,
		TotalCost: float64(cents(show.Price)*int64(req.NoOfSeats)) / 100,
		ExpiresAt: now.Add(b.ttl), CreatedAt: now, UpdatedAt: now}
	mine, free, err := b.hold(ctx, show, layout, bk, req.Seats)
	if err != nil {
		return nil, err
	}
	if len(mine) < req.NoOfSeats {
		b.release(ctx, show.ID, bk.ID, mine)
		b.events.Booking("conflict")
		msg := fmt.Sprintf("not enough free seats: %d asked, %d free", req.NoOfSeats, len(free))
		if len(req.Seats) > 0 {
			msg = "some of the seats asked for are taken"
		}
		e := errs.E(errs.Conflict, "%s", msg)
		e.Data = map[string]any{"freeSeats": free, "noOfFreeSeats": len(free)}
		return nil, e
	}
	slices.SortFunc(mine, func(x, y string) int { return layout.index[x] - layout.index[y] })
	bk.Seats = mine
	if err := b.store.CreateBooking(ctx, bk); err != nil {
		b.release(context.WithoutCancel(ctx), show.ID, bk.ID, mine)
		return nil, err
	}
	b.rememberBooking(bk)
	b.events.Booking("created")
	return bk, nil
}

// hold inserts holds for the booking until it has NoOfSeats seats or the rounds run out. It
// returns the seats won and, on failure, the seats still free. Seats are chosen from the
// process's view of the show; a conflict, or too few seats in view, reads the holds afresh
// before the next round, so a 409 always rests on a read made during the request.
func (b *Bookings) hold(ctx context.Context, show *Show, layout *SeatLayout, bk *Booking, named []string) (mine, free []string, err error) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	need := bk.NoOfSeats
	start := b.now()
	var since time.Time // zero: the view will do; else a read at or after since
	fail := func(err error) ([]string, []string, error) {
		b.release(context.WithoutCancel(ctx), show.ID, bk.ID, mine)
		return nil, nil, err
	}
	for round := 0; round < b.rounds && len(mine) < need; round++ {
		if err := ctx.Err(); err != nil {
			return fail(errs.Wrap(errs.Unavailable, err, "request cancelled"))
		}
		freeSet, err := b.freeSeats(ctx, show, layout, since)
		if err != nil {
			return fail(err)
		}
		for _, s := range mine {
			freeSet.Remove(s)
		}
		var pick []string
		short := false
		if len(named) > 0 {
			for _, s := range named {
				if slices.Contains(mine, s) {
					continue
				}
				if !freeSet.Has(s) {
					short = true
					break
				}
				pick = append(pick, s)
			}
		} else if want := need - len(mine); freeSet.Len() < want {
			short = true
		} else {
			jitter := float64(round) * 10 // after a conflict, spread over more seats
			pick = b.pickAndMark(show.ID, layout, freeSet, want, jitter, rng)
		}
		if short {
			if since.IsZero() {
				since = start // the view may be stale: look again
				continue
			}
			return mine, freeSet.Labels(), nil
		}
		holds := make([]Hold, len(pick))
		for i, s := range pick {
			holds[i] = Hold{ShowID: show.ID, Seat: s, BookingID: bk.ID, ExpiresAt: bk.ExpiresAt}
		}
		if len(named) > 0 {
			b.markInflight(show.ID, pick, 1)
		}
		won, err := b.store.InsertHolds(ctx, holds)
		if err != nil {
			b.markInflight(show.ID, pick, -1)
			return fail(err)
		}
		mine = append(mine, won...)
		wonHolds := holds[:0]
		for _, h := range holds {
			if slices.Contains(won, h.Seat) {
				wonHolds = append(wonHolds, h)
			}
		}
		// Into the view before out of inflight: a seat won is always in one of the two, so
		// another request of this process never picks it (see othersInflight).
		b.viewAdd(show.ID, wonHolds)
		b.markInflight(show.ID, pick, -1)
		if lost := len(pick) - len(won); lost > 0 {
			b.events.SeatConflicts(lost)
			since = b.now() // someone else holds seats the view thought free
			if len(named) > 0 {
				freeSet, err := b.freeSeats(ctx, show, layout, since)
				if err != nil {
					return mine, nil, nil
				}
				return mine, freeSet.Labels(), nil
			}
		}
	}
	if len(mine) < need {
		if freeSet, err := b.freeSeats(ctx, show, layout, start); err == nil {
			free = freeSet.Labels()
		}
	}
	return mine, free, nil
}

func (b *Bookings) markInflight(showID string, seats []string, d int) {
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
	for s := range v.holds {
		others.Remove(s)
	}
	v.mu.Unlock()
	pick := layout.Best(others, want, jitter, rng)
	if pick == nil {
		pick = layout.Best(free, want, jitter, rng)
	}
	b.markInflightLocked(showID, pick, 1)
	return pick
}

// freeSeats returns the show's free seats from its holds (see showHolds for since). An unpaid
// hold past its expiry is met here: its booking is decided EXPIRED (unless decided otherwise
// first) and its seats are released.
func (b *Bookings) freeSeats(ctx context.Context, show *Show, layout *SeatLayout, since time.Time) (*SeatSet, error) {
	holds, err := b.showHolds(ctx, show.ID, since)
	if err != nil {
		return nil, err
	}
	now := b.now()
	taken := make(map[string]bool, len(holds))
	stale := map[string][]string{} // booking id -> seats of expired, unsold holds
	for _, h := range holds {
		if !h.Sold && now.After(h.ExpiresAt) {
			stale[h.BookingID] = append(stale[h.BookingID], h.Seat)
			continue
		}
		taken[h.Seat] = true
	}
	for id, seats := range stale {
		o, err := b.expire(ctx, show.ID, id, seats)
		if err != nil {
			return nil, err
		}
		if o.Status == BookingPaid {
			for _, s := range seats {
				taken[s] = true
			}
		}
	}
	free := layout.NewSeatSet(true)
	for s := range taken {
		free.Remove(s)
	}
	return free, nil
}

// expire decides the booking EXPIRED unless it was decided first, and settles its holds on
// the show's seats by the outcome in force: released unless paid.
func (b *Bookings) expire(ctx context.Context, showID, bookingID string, seats []string) (Outcome, error) {
	o, won, err := b.decide(ctx, Outcome{BookingID: bookingID, Status: BookingExpired, DecidedAt: b.clock()})
	if err != nil {
		return o, err
	}
	if won {
		b.events.Booking("expired")
	}
	b.settle(ctx, showID, bookingID, seats, o)
	return o, nil
}

// settle applies a decided outcome: releases or marks sold the seats, and projects the status
// onto the booking. Failures are left for the next one who meets the booking: the outcome
// record already decides, so nothing here can change a fate.
func (b *Bookings) settle(ctx context.Context, showID, bookingID string, seats []string, o Outcome) {
	ctx = context.WithoutCancel(ctx)
	switch o.Status {
	case BookingPaid:
		b.viewSold(showID, bookingID, seats)
		holds := make([]Hold, len(seats))
		for i, s := range seats {
			holds[i] = Hold{ShowID: showID, Seat: s, BookingID: bookingID}
		}
		b.projectSold(ctx, holds)
	case BookingCancelled, BookingExpired:
		b.release(ctx, showID, bookingID, seats)
	}
	b.projectBooking(ctx, bookingID, o.Status)
}

// release deletes the booking's holds on seats at once (seats back on sale).
func (b *Bookings) release(ctx context.Context, showID, bookingID string, seats []string) {
	if len(seats) > 0 {
		_ = b.store.ReleaseHolds(ctx, showID, bookingID, seats)
		b.viewRemove(showID, bookingID, seats)
	}
}

// resolve brings a stored booking up to date with its outcome; an undecided booking past its
// hold is decided EXPIRED here (whoever meets it first decides).
func (b *Bookings) resolve(ctx context.Context, bk *Booking, o *Outcome) error {
	if bk.Status.Final() && (bk.Status != BookingPaid || bk.PaymentID != "") {
		return nil
	}
	if o == nil {
		var err error
		if o, err = b.outcome(ctx, bk.ID); err != nil {
			return err
		}
	}
	if o == nil && b.now().After(bk.ExpiresAt) {
		exp, err := b.expire(ctx, bk.ShowID, bk.ID, bk.Seats)
		if err != nil {
			return err
		}
		o = &exp
	} else if o != nil && !bk.Status.Final() {
		b.settle(ctx, bk.ShowID, bk.ID, bk.Seats, *o)
	}
	if o != nil {
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	return nil
}

// owned loads a booking the caller may see: its owner's, or any for an approved admin.
func (b *Bookings) owned(ctx context.Context, caller *User, id string) (*Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	bk, err := b.getBooking(ctx, id)
	if err != nil {
		return nil, err
	}
	if bk.UserID != caller.ID && !caller.Is(RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this booking is not yours")
	}
	return bk, nil
}

// Get returns a booking of the caller's (any, for an admin), with its status up to date.
func (b *Bookings) Get(ctx context.Context, caller *User, id string) (*Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return bk, b.resolve(ctx, bk, nil)
}

// List returns the caller's bookings, or everyone's when all is set (admins only).
func (b *Bookings) List(ctx context.Context, caller *User, all bool, limit, skip int) ([]Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	f := BookingFilter{UserID: caller.ID, Limit: limit, Skip: skip}
	if all {
		if !caller.Is(RoleAdmin) {
			return nil, errs.E(errs.Forbidden, "only an approved admin can list every booking")
		}
		f.UserID = ""
	}
	list, err := b.store.ListBookings(ctx, f)
	if err != nil {
		return nil, err
	}
	var open []string
	for _, bk := range list {
		if !bk.Status.Final() || bk.Status == BookingPaid && bk.PaymentID == "" {
			open = append(open, bk.ID)
		}
	}
	if len(open) == 0 {
		return list, nil
	}
	outcomes, err := b.outcomesOf(ctx, open)
	if err != nil {
		return nil, err
	}
	for i := range list {
		var o *Outcome
		if v, ok := outcomes[list[i].ID]; ok {
			o = &v
		}
		if err := b.resolve(ctx, &list[i], o); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// Cancel cancels an unpaid booking and releases its seats at once. Cancelling a cancelled
// booking again answers it unchanged; a paid one is errs.Conflict, an expired one errs.Gone.
func (b *Bookings) Cancel(ctx context.Context, caller *User, id string) (*Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := b.resolve(ctx, bk, nil); err != nil {
		return nil, err
	}
	if !bk.Status.Final() {
		o, won, err := b.decide(ctx, Outcome{BookingID: bk.ID, Status: BookingCancelled, DecidedAt: b.clock()})
		if err != nil {
			return nil, err
		}
		if won {
			b.events.Booking("cancelled")
		}
		b.settle(ctx, bk.ShowID, bk.ID, bk.Seats, o)
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	switch bk.Status {
	case BookingPaid:
		return nil, errs.E(errs.Conflict, "the booking is paid and cannot be cancelled")
	case BookingExpired:
		return nil, errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale")
	}
	return bk, nil
}

// Pay pays the caller's booking. The amount must equal its totalCost (else a FAILED payment
// and errs.PaymentFailed); a booking is paid at most once (errs.Conflict); a booking whose hold
// expired is errs.Gone and its seats return to sale. A successful payment owes the customer a
// confirmation email, written to the outbox before the payment is decided.
func (b *Bookings) Pay(ctx context.Context, caller *User, req PaymentRequest, traceParent string) (*Payment, *Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, nil, err
	}
	f := map[string]string{}
	req.BookingID = strings.TrimSpace(req.BookingID)
	if !IsID(req.BookingID) {
		f["bookingId"] = "must be a 24-character hex id"
	}
	if math.IsNaN(req.Amount) || math.IsInf(req.Amount, 0) || req.Amount <= 0 || req.Amount > 1e9 {
		f["amount"] = "must be a positive amount"
	} else if math.Abs(req.Amount*100-math.Round(req.Amount*100)) > 1e-6 {
		f["amount"] = "must have at most 2 decimals"
	}
	if len(f) > 0 {
		return nil, nil, errs.Fields(f)
	}
	bk, err := b.getBooking(ctx, req.BookingID)
	if err != nil {
		return nil, nil, err
	}
	if bk.UserID != caller.ID {
		return nil, nil, errs.E(errs.Forbidden, "only the booking's owner can pay it")
	}
	// A fate known to this process answers at once; an unknown one is not read here: the
	// outcome insert below decides, and tells a late payment who won.
	o0, known := b.knownOutcome(bk.ID)
	if known {
		if err := b.resolve(ctx, bk, &o0); err != nil {
			return nil, nil, err
		}
	} else if b.now().After(bk.ExpiresAt) {
		if err := b.resolve(ctx, bk, nil); err != nil {
			return nil, nil, err
		}
	}
	var wg sync.WaitGroup
	if err := paidState(bk.Status); err != nil {
		return nil, nil, err
	}
	now := b.clock()
	p := &Payment{ID: b.store.NewID(), BookingID: bk.ID, UserID: caller.ID, Amount: float64(cents(req.Amount)) / 100,
		Status: PaymentPending, CreatedAt: now, UpdatedAt: now}
	if cents(req.Amount) != cents(bk.TotalCost) {
		p.Status, p.Reason = PaymentFailed, fmt.Sprintf("amount %.2f does not equal the booking's totalCost %.2f", req.Amount, bk.TotalCost)
		if err := b.store.CreatePayment(ctx, p); err != nil {
			return nil, nil, err
		}
		b.events.Booking("payment_failed")
		e := errs.E(errs.PaymentFailed, "payment failed: %s", p.Reason)
		e.Data = p
		return nil, nil, e
	}
	// The payment record and the email are written (at once) before the decision: the relay
	// sends the email only once the outcome says paid (see PaidGuard), so a crash between the
	// two loses nothing and sends nothing wrong.
	email := b.confirmation(ctx, caller, bk, traceParent)
	outbox := b.getOutbox()
	var oweErr error
	if outbox != nil {
		owe := outbox.Enqueue
		if d, ok := outbox.(DeferredOutbox); ok {
			owe = d.Owe // the relay's guard would only say "wait" until the outcome below
		}
		wg.Go(func() { oweErr = owe(ctx, email) })
	}
	err = b.store.CreatePayment(ctx, p)
	wg.Wait()
	if err == nil && oweErr != nil {
		b.projectPayment(ctx, p.ID, PaymentFailed, "could not queue the confirmation email")
		err = oweErr
	}
	if err != nil {
		return nil, nil, err
	}
	o, won, err := b.decide(ctx, Outcome{BookingID: bk.ID, Status: BookingPaid, PaymentID: p.ID, DecidedAt: b.clock()})
	if err != nil {
		return nil, nil, err
	}
	b.settle(ctx, bk.ShowID, bk.ID, bk.Seats, o)
	bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	if !won {
		b.projectPayment(ctx, p.ID, PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first")
		return nil, nil, paidState(o.Status)
	}
	p.Status, p.UpdatedAt = PaymentSuccess, o.DecidedAt
	b.projectPayment(ctx, p.ID, PaymentSuccess, "")
	b.events.Booking("paid")
	if d, ok := outbox.(DeferredOutbox); ok {
		d.Nudge() // decided: the relay may send it now
	} else if outbox != nil {
		// Enqueueing the same key again keeps one email and wakes the relay.
		_ = outbox.Enqueue(context.WithoutCancel(ctx), email)
	}
	return p, bk, nil
}

func paidState(s BookingStatus) error {
	switch s {
	case BookingPaid:
		return errs.E(errs.Conflict, "the booking is already paid")
	case BookingCancelled:
		return errs.E(errs.Conflict, "the booking is cancelled")
	case BookingExpired:
		return errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale")
	}
	return nil
}

func (b *Bookings) confirmation(ctx context.Context, caller *User, bk *Booking, traceParent string) Email {
	movie := b.name(bk.MovieID, func() (string, error) {
		m, err := b.shows.GetMovie(ctx, bk.MovieID)
		if err != nil {
			return "", err
		}
		return m.Name, nil
	})
	place := b.name(bk.TheatreID, func() (string, error) {
		t, err := b.shows.GetTheatre(ctx, bk.TheatreID)
		if err != nil {
			return "", err
		}
		if t.City != "" {
			return t.Name + ", " + t.City, nil
		}
		return t.Name, nil
	})
	content := fmt.Sprintf("Hello %s,\n\nyour booking is confirmed.\n\nMovie: %s\nTheatre: %s\nTiming: %s\nSeats: %s\nTotal paid: %.2f\nBooking id: %s\n\nEnjoy the show!\nCineFlow\n",
		caller.Name, movie, place, bk.Timing, strings.Join(bk.Seats, ", "), bk.TotalCost, bk.ID)
	return Email{Key: PaidEmailKind + ":" + bk.ID, Recipients: []string{caller.Email},
		Subject: "Your tickets for " + movie, Content: content, Kind: PaidEmailKind, Ref: bk.ID, TraceParent: traceParent}
}

// PaidGuard tells the outbox relay whether a booking's confirmation may be sent: only once
// the booking's outcome is paid. An undecided booking waits; one that is past its hold is
// decided EXPIRED here and its email dropped.
func (b *Bookings) PaidGuard(ctx context.Context, bookingID string) (GuardVerdict, error) {
	o, err := b.outcome(ctx, bookingID)
	if err != nil {
		return GuardWait, err
	}
	if o == nil {
		bk, err := b.getBooking(ctx, bookingID)
		if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
			return GuardDrop, nil
		}
		if err != nil {
			return GuardWait, err
		}
		if err := b.resolve(ctx, bk, nil); err != nil {
			return GuardWait, err
		}
		if !bk.Status.Final() {
			return GuardWait, nil
		}
		o = &Outcome{Status: bk.Status}
	}
	if o.Status == BookingPaid {
		return GuardSend, nil
	}
	return GuardDrop, nil
}

// GetPayment returns a payment of the caller's (any, for an admin), its status resolved from
// its booking's outcome.
func (b *Bookings) GetPayment(ctx context.Context, caller *User, id string) (*Payment, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	p, err := b.store.GetPayment(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.UserID != caller.ID && !caller.Is(RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this payment is not yours")
	}
	return p, b.resolvePayment(ctx, p)
}

// ListPayments returns the caller's payments (everyone's for an admin who asks for all).
func (b *Bookings) ListPayments(ctx context.Context, caller *User, all bool, limit, skip int) ([]Payment, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	f := PaymentFilter{UserID: caller.ID, Limit: limit, Skip: skip}
	if all {
		if !caller.Is(RoleAdmin) {
			return nil, errs.E(errs.Forbidden, "only an approved admin can list every payment")
		}
		f.UserID = ""
	}
	list, err := b.store.ListPayments(ctx, f)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if err := b.resolvePayment(ctx, &list[i]); err != nil {
			return nil, err
		}
	}
	return list, nil
}

func (b *Bookings) resolvePayment(ctx context.Context, p *Payment) error {
	if p.Status != PaymentPending {
		return nil
	}
	o, err := b.outcome(ctx, p.BookingID)
	if err != nil || o == nil {
		return err
	}
	if o.Status == BookingPaid && o.PaymentID == p.ID {
		p.Status = PaymentSuccess
	} else {
		p.Status, p.Reason = PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first"
	}
	p.UpdatedAt = o.DecidedAt
	b.projectPayment(ctx, p.ID, p.Status, p.Reason)
	return nil
}

// SeatMap lists a show's seats as free, held or sold. Expired holds count as free.
func (b *Bookings) SeatMap(ctx context.Context, showID string) (*SeatMap, error) {
	show, err := b.shows.GetShow(ctx, showID)
	if err != nil {
		return nil, err
	}
	holds, err := b.showHolds(ctx, show.ID, time.Time{})
	if err != nil {
		return nil, err
	}
	now := b.now()
	layout := show.Layout()
	// A hold not yet marked sold may belong to a booking that is paid, cancelled or expired:
	// its outcome, if any, says which.
	var unsure []string
	seen := map[string]bool{}
	for _, h := range holds {
		if !h.Sold && !seen[h.BookingID] {
			seen[h.BookingID] = true
			unsure = append(unsure, h.BookingID)
		}
	}
	outcomes, err := b.outcomesOf(ctx, unsure)
	if err != nil {
		return nil, err
	}
	state := make(map[string]SeatState, len(holds))
	for _, h := range holds {
		o, decided := outcomes[h.BookingID]
		switch {
		case h.Sold, decided && o.Status == BookingPaid:
			state[h.Seat] = SeatSold
		case !decided && now.Before(h.ExpiresAt):
			state[h.Seat] = SeatHeld
		}
	}
	m := &SeatMap{ShowID: show.ID, NoOfSeats: show.NoOfSeats, SeatsPerRow: layout.PerRow, At: now.UTC(),
		Free: []string{}, Held: []string{}, Sold: []string{}, Seats: make([]SeatEntry, 0, layout.Seats)}
	for _, s := range layout.labels {
		st := state[s]
		if st == "" {
			st = SeatFree
		}
		switch st {
		case SeatFree:
			m.Free = append(m.Free, s)
		case SeatHeld:
			m.Held = append(m.Held, s)
		case SeatSold:
			m.Sold = append(m.Sold, s)
		}
		m.Seats = append(m.Seats, SeatEntry{Seat: s, State: st})
	}
	return m, nil
}

// ShowInUse reports whether the show has seats held (unexpired) or sold, from a read made
// now. The catalogue refuses to delete such a show.
func (b *Bookings) ShowInUse(ctx context.Context, showID string) (bool, error) {
	holds, err := b.showHolds(ctx, showID, b.now())
	if err != nil {
		return false, err
	}
	now := b.now()
	var unsure []string
	for _, h := range holds {
		if h.Sold || now.Before(h.ExpiresAt) {
			return true, nil
		}
		unsure = append(unsure, h.BookingID)
	}
	outcomes, err := b.outcomesOf(ctx, unsure)
	if err != nil {
		return false, err
	}
	for _, o := range outcomes {
		if o.Status == BookingPaid {
			return true, nil
		}
	}
	return false, nil
}

// ExpireDue meets every booking whose hold ended since the last call (the first call looks
// back a day): an undecided one is decided EXPIRED and its seats are released, so that a hold
// nobody pays returns to sale without anyone asking. It reads at most limit bookings per
// call and returns how many it met.
func (b *Bookings) ExpireDue(ctx context.Context, limit int) (int, error) {
	b.expiryMu.Lock()
	defer b.expiryMu.Unlock()
	now := b.now()
	due, err := b.store.ExpiringBetween(ctx, b.watermark, now, limit)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(due))
	for i := range due {
		ids[i] = due[i].ID
	}
	outcomes, err := b.outcomesOf(ctx, ids)
	if err != nil {
		return 0, err
	}
	for i := range due {
		var o *Outcome
		if v, ok := outcomes[due[i].ID]; ok {
			o = &v
		}
		if err := b.resolve(ctx, &due[i], o); err != nil {
			return i, err
		}
	}
	if limit > 0 && len(due) == limit {
		b.watermark = due[len(due)-1].ExpiresAt // more to meet: the next call goes on from here
	} else {
		b.watermark = now
	}
	return len(due), nil
}
