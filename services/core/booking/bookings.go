package booking

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// Booking engine defaults.
const (
	DefaultHoldTTL            = 5 * time.Minute
	DefaultMaxRounds          = 8
	DefaultMaxSeatsPerBooking = 10
	// PaidEmailKind is the outbox kind of a booking's confirmation email.
	PaidEmailKind = "booking-paid"
	// maxNamedSeats bounds the seats a request may name before any other check.
	maxNamedSeats = 1000
)

// BookingsOptions configure the engine.
type BookingsOptions struct {
	HoldTTL            time.Duration // default DefaultHoldTTL
	MaxRounds          int           // seat-picking rounds under contention; default DefaultMaxRounds
	MaxSeatsPerBooking int           // default DefaultMaxSeatsPerBooking
	// MaxOpenSeatsPerUser bounds the seats one customer holds in unpaid bookings across all
	// shows (default DefaultMaxOpenSeatsPerUser; negative: no bound).
	MaxOpenSeatsPerUser int
	Events              BookingEvents
	// SeatViewTTL is how long the engine trusts its in-memory view of a show's seats when it
	// picks seats (default DefaultSeatViewTTL; negative: always read).
	SeatViewTTL time.Duration
	// SeatLogRetention is how long a stretch of a show's seat log covered by its snapshot is
	// kept before it is deleted, by the database's clock (default DefaultSeatLogRetention;
	// negative: never deleted). A view not read for half of it reloads from the snapshot. See
	// CompactSeatLogs.
	SeatLogRetention time.Duration
	// TraceParent returns the W3C traceparent of the request in ctx, kept with the confirmation
	// email of a free booking (confirmed by Book; see free.go). Nil: none.
	TraceParent func(ctx context.Context) string
	// Project copies each decided fate onto the booking, payment and hold documents (in the
	// background, batched), for readers of the raw collections. The engine never needs it: it
	// resolves bookings from their outcome records.
	Project bool
	// Now is the engine's clock (default time.Now). Hold ends are decided by it: give every
	// replica the same one, the database's (see mongox.Clock).
	Now func() time.Time
	// TakeoverMargin is how long past a hold's end the engine waits before another booking
	// takes its seats or the expirer decides it EXPIRED (default 0). The booking's owner is held
	// to the end itself: a payment after it is errs.Gone. So a payment made just before the end
	// is not beaten by a replica whose clock runs up to the margin ahead, nor by one that meets
	// the hold while the payment is on its way to its outcome insert.
	TakeoverMargin time.Duration
	// Leads, if set, says whether this replica runs the expirer (see ExpireDue) now; nil: it
	// always does. Requests on every replica still meet the expired holds they need.
	Leads func() bool
	// Lapses, if set, shares the expirer's notes of lapsed fair-use slots with every replica
	// (see LapseStore); nil: only the replica whose expirer released them knows them.
	Lapses LapseStore
}

// Bookings is the booking engine: holds seats, takes payments, cancels and expires
// bookings. Held and paid seats never exceed a show's seats, whatever the concurrency and
// the number of replicas: a seat is held by inserting its unique key, and a booking's fate is
// decided by inserting its outcome record (see BookingStore).
//
// Seats are released only once their booking's fate is known not to be paid, or before its
// booking was ever written: so a booking is payable only while it holds every seat. Whatever
// a booking claims (seats, fair-use slots) is named first by an intent, the expiry queue, so
// that nothing stays claimed by a process that died.
type Bookings struct {
	store    BookingStore
	shows    core.ShowFinder
	ttl      time.Duration
	rounds   int
	maxSeats int
	maxOpen  int
	events   BookingEvents
	now      func() time.Time
	margin   time.Duration // see BookingsOptions.TakeoverMargin
	leads    func() bool   // see BookingsOptions.Leads

	outboxMu sync.RWMutex
	outbox   core.Outbox

	mu       sync.Mutex
	inflight map[string]map[string]int // show id -> seats being inserted by requests of this process

	views *seatViews
	slots slotHints
	proj  *projector

	namesMu sync.Mutex
	names   map[string]cachedName // movie and theatre names for emails

	project     bool
	traceParent func(ctx context.Context) string

	retention time.Duration // of the seat log (0: never compacted)

	outcomesMu sync.Mutex
	outcomes   map[string]core.Outcome // decided outcomes never change: safe to keep

	recentMu sync.Mutex
	recent   map[string]*core.Booking // bookings this process created, as created

	expiryMu sync.Mutex
	released map[string]*releasedBucket // buckets of the expiry queue released, to be cleared (under expiryMu)
	lapsed   lapsedSlots                // slots of released bookings not deleted yet
	progress atomic.Pointer[ExpiryProgress]
	bg       sync.WaitGroup // background clean-ups (tests wait for them)
}

// getBooking reads a booking: from memory if this process created it within the last hold
// TTL (its stored fields never change but for the projected status, which resolve replaces),
// else from the store.
func (b *Bookings) getBooking(ctx context.Context, id string) (*core.Booking, error) {
	b.recentMu.Lock()
	bk, ok := b.recent[id]
	b.recentMu.Unlock()
	if ok && b.now().Sub(bk.CreatedAt) < b.ttl {
		c := *bk
		c.Seats, c.Slots = slices.Clone(bk.Seats), slices.Clone(bk.Slots)
		return &c, nil
	}
	return b.store.GetBooking(ctx, id)
}

// maxRecentBookings bounds the bookings kept in memory; a full map starts over.
const maxRecentBookings = 20000

// forgetBooking drops a decided booking from memory (its reads go to the store).
func (b *Bookings) forgetBooking(id string) {
	b.recentMu.Lock()
	delete(b.recent, id)
	b.recentMu.Unlock()
}

func (b *Bookings) rememberBooking(bk *core.Booking) {
	c := *bk
	c.Seats, c.Slots = slices.Clone(bk.Seats), slices.Clone(bk.Slots)
	b.recentMu.Lock()
	defer b.recentMu.Unlock()
	if len(b.recent) >= maxRecentBookings {
		clear(b.recent)
	}
	b.recent[c.ID] = &c
}

// maxCachedOutcomes bounds the outcome cache; a full cache starts over.
const maxCachedOutcomes = 20000

func (b *Bookings) knownOutcome(id string) (core.Outcome, bool) {
	b.outcomesMu.Lock()
	defer b.outcomesMu.Unlock()
	o, ok := b.outcomes[id]
	return o, ok
}

func (b *Bookings) learnOutcome(o core.Outcome) {
	b.outcomesMu.Lock()
	defer b.outcomesMu.Unlock()
	if len(b.outcomes) >= maxCachedOutcomes {
		clear(b.outcomes)
	}
	b.outcomes[o.BookingID] = o
}

// outcome returns the booking's outcome (nil if undecided), from memory when known.
func (b *Bookings) outcome(ctx context.Context, id string) (*core.Outcome, error) {
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
func (b *Bookings) outcomesOf(ctx context.Context, ids []string) (map[string]core.Outcome, error) {
	out := make(map[string]core.Outcome, len(ids))
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
func (b *Bookings) decide(ctx context.Context, o core.Outcome) (core.Outcome, bool, error) {
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
func NewBookings(store BookingStore, shows core.ShowFinder, opts BookingsOptions) *Bookings {
	if opts.HoldTTL <= 0 {
		opts.HoldTTL = DefaultHoldTTL
	}
	if opts.MaxRounds <= 0 {
		opts.MaxRounds = DefaultMaxRounds
	}
	if opts.MaxSeatsPerBooking <= 0 {
		opts.MaxSeatsPerBooking = DefaultMaxSeatsPerBooking
	}
	if opts.MaxOpenSeatsPerUser == 0 {
		opts.MaxOpenSeatsPerUser = DefaultMaxOpenSeatsPerUser
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
	if opts.SeatLogRetention == 0 {
		opts.SeatLogRetention = DefaultSeatLogRetention
	}
	retention := max(opts.SeatLogRetention, 0)
	return &Bookings{views: &seatViews{ttl: opts.SeatViewTTL, reloadAfter: retention / 2, views: map[string]*seatView{}},
		retention: retention, proj: newProjector(),
		slots: slotHints{users: map[string]*slotHint{}},
		names: map[string]cachedName{}, project: opts.Project, traceParent: opts.TraceParent, outcomes: map[string]core.Outcome{}, recent: map[string]*core.Booking{},
		released: map[string]*releasedBucket{}, lapsed: lapsedSlots{users: map[string]map[int][]string{}, store: opts.Lapses},
		margin: max(opts.TakeoverMargin, 0), leads: opts.Leads,
		store: store, shows: shows, ttl: opts.HoldTTL, rounds: opts.MaxRounds,
		maxSeats: opts.MaxSeatsPerBooking, maxOpen: opts.MaxOpenSeatsPerUser, events: opts.Events, now: opts.Now,
		inflight: map[string]map[string]int{}}
}

// SetOutbox sets where confirmation emails go (nil: none are sent).
func (b *Bookings) SetOutbox(o core.Outbox) {
	b.outboxMu.Lock()
	b.outbox = o
	b.outboxMu.Unlock()
}

func (b *Bookings) getOutbox() core.Outbox {
	b.outboxMu.RLock()
	defer b.outboxMu.RUnlock()
	return b.outbox
}

// HoldTTL is how long a booking holds its seats unpaid.
func (b *Bookings) HoldTTL() time.Duration { return b.ttl }

// Settled waits for the background clean-ups begun so far (tests).
func (b *Bookings) Settled() { b.bg.Wait() }

func (b *Bookings) clock() time.Time { return b.now().UTC().Truncate(time.Millisecond) }

// takeoverNow is the time by which another booking's hold is judged ended, to take its seats
// or decide it EXPIRED: the engine's clock less the takeover margin.
func (b *Bookings) takeoverNow() time.Time { return b.now().Add(-b.margin) }

func mustBeApproved(u *core.User) error {
	if u == nil {
		return errs.E(errs.Unauthorized, core.MsgBadToken)
	}
	if u.Status != core.StatusApproved {
		return errs.E(errs.Forbidden, "your account is %s: it has no powers until an admin approves it", strings.ToLower(string(u.Status)))
	}
	return nil
}

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

// cents is a money amount in hundredths.
func cents(v float64) int64 { return int64(math.Round(v * 100)) }

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
		return nil, errs.E(errs.RateLimited, "at most %d seats per booking", b.maxSeats)
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
		return nil, errs.E(errs.Conflict, "the show has only %d seats", show.NoOfSeats)
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

// showOpen answers errs.Conflict if a deletion of the show is under way.
func (b *Bookings) showOpen(ctx context.Context, showID string) error {
	at, ok, err := b.store.ShowDeleting(ctx, showID)
	if err != nil {
		return err
	}
	if ok && b.now().Sub(at) < core.DeletionMarkerStale {
		return errs.E(errs.Conflict, "the show is being deleted")
	}
	return nil
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
				return fail(errs.E(errs.RateLimited, "you hold seats in unpaid bookings up to the limit of %d: pay or cancel one before booking more", b.maxOpen))
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
	msg := fmt.Sprintf("not enough free seats: %d asked, %d free", need, len(free))
	if len(named) > 0 {
		msg = "some of the seats asked for are taken"
	}
	if free == nil {
		free = []string{}
	}
	e := errs.E(errs.Conflict, "%s", msg)
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

// expire decides the booking EXPIRED unless it was decided first, and settles its holds on
// the show's seats by the outcome in force: released unless paid.
func (b *Bookings) expire(ctx context.Context, showID, bookingID string, seats []string) (core.Outcome, error) {
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bookingID, Status: core.BookingExpired, DecidedAt: b.clock()})
	if err != nil {
		return o, err
	}
	if won {
		b.events.Booking("expired")
	}
	b.settleSeats(ctx, showID, bookingID, seats, o)
	return o, nil
}

// settleSeats applies a decided outcome to the booking's seats: releases them or marks them
// sold, and projects the status onto the booking. It returns whether the seats are settled
// and a channel that yields, once the seat log has the operation, whether it has it. Failures
// are left for the next one who meets the booking (the expirer at the latest, from the
// booking's intents): the outcome record already decides, so nothing here can change a fate.
func (b *Bookings) settleSeats(ctx context.Context, showID, bookingID string, seats []string, o core.Outcome) (bool, <-chan bool) {
	ctx = context.WithoutCancel(ctx)
	ok := true
	var logged <-chan bool
	switch o.Status {
	case core.BookingPaid:
		logged = b.logOp(showID, core.SeatOp{Kind: core.SeatOpSold, BookingID: bookingID, Seats: seats})
		holds := make([]core.Hold, len(seats))
		for i, s := range seats {
			holds[i] = core.Hold{ShowID: showID, Seat: s, BookingID: bookingID}
		}
		b.projectSold(ctx, holds)
	case core.BookingCancelled, core.BookingExpired:
		ok, logged = b.releaseSeats(ctx, showID, bookingID, seats)
	}
	b.projectBooking(ctx, bookingID, o.Status)
	if logged == nil {
		logged = loggedAlready()
	}
	return ok, logged
}

// loggedAlready returns the logged channel of a settlement with nothing to log (one of its
// own: each yields true once).
func loggedAlready() <-chan bool {
	c := make(chan bool, 1)
	c <- true
	close(c)
	return c
}

// releaseSeats deletes a decided (unpaid) booking's holds on seats and logs them freed; see
// settleSeats for what it returns.
func (b *Bookings) releaseSeats(ctx context.Context, showID, bookingID string, seats []string) (bool, <-chan bool) {
	if len(seats) == 0 {
		return true, loggedAlready()
	}
	if err := b.store.ReleaseHolds(ctx, showID, bookingID, seats); err != nil {
		return false, loggedAlready()
	}
	return true, b.logOp(showID, core.SeatOp{Kind: core.SeatOpFreed, BookingID: bookingID, Seats: seats})
}

// settleBooking applies a decided outcome to a booking: its seats (settleSeats), its fair-use
// slots (released: a decided booking holds no unpaid seat), and, once both are settled and the
// seat log has the outcome, its intents, which the expirer no longer needs.
func (b *Bookings) settleBooking(ctx context.Context, bk *core.Booking, o core.Outcome) {
	ctx = context.WithoutCancel(ctx)
	b.forgetBooking(bk.ID)
	ok, logged := b.settleSeats(ctx, bk.ShowID, bk.ID, bk.Seats, o)
	if !ok {
		return // the intents stay: the expirer settles what is left
	}
	// The slots and intents are the engine's own bookkeeping: released in the background (a
	// booking of the same customer that meets a slot not yet released tries another).
	b.slots.seen(bk.UserID, bk.Slots, false, b.now())
	released := func() {}
	if len(bk.Slots) > 0 {
		released = b.slots.releaseStarted(bk.UserID)
	}
	b.bg.Go(func() {
		if len(bk.Slots) > 0 {
			err := b.store.ReleaseSlots(ctx, bk.UserID, bk.ID, bk.Slots)
			released()
			if err != nil {
				return
			}
		}
		if <-logged && bk.Rounds > 0 {
			_ = b.store.DeleteIntents(ctx, bk.ExpiresAt, intentIDs(bk.ID, bk.Rounds))
		}
	})
}

// resolve brings a stored booking up to date with its outcome; an undecided booking past its
// hold is decided EXPIRED here (whoever meets it first decides).
func (b *Bookings) resolve(ctx context.Context, bk *core.Booking, o *core.Outcome) error {
	if bk.Status.Final() && (bk.Status != core.BookingPaid || bk.PaymentID != "") {
		return nil
	}
	if o == nil {
		var err error
		if o, err = b.outcome(ctx, bk.ID); err != nil {
			return err
		}
	}
	if o == nil && b.now().After(bk.ExpiresAt) {
		exp, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingExpired, DecidedAt: b.clock()})
		if err != nil {
			return err
		}
		if won {
			b.events.Booking("expired")
		}
		b.settleBooking(ctx, bk, exp)
		o = &exp
	} else if o != nil && !bk.Status.Final() {
		b.projectBooking(ctx, bk.ID, o.Status)
	}
	if o != nil {
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	return nil
}

// owned loads a booking the caller may see: its owner's, or any for an approved admin.
func (b *Bookings) owned(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !core.IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	bk, err := b.getBooking(ctx, id)
	if err != nil {
		return nil, err
	}
	if bk.UserID != caller.ID && !caller.Is(core.RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this booking is not yours")
	}
	return bk, nil
}

// Get returns a booking of the caller's (any, for an admin), with its status up to date.
func (b *Bookings) Get(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return bk, b.resolve(ctx, bk, nil)
}

// List returns a page of the caller's bookings, or of everyone's when all is set (admins
// only), newest first, and the cursor of the next page ("" when there is none).
func (b *Bookings) List(ctx context.Context, caller *core.User, all bool, pg core.ListPage) ([]core.Booking, string, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, "", err
	}
	f := core.BookingFilter{UserID: caller.ID, Limit: pg.Limit, Skip: pg.Skip, Before: pg.Before}
	if all {
		if !caller.Is(core.RoleAdmin) {
			return nil, "", errs.E(errs.Forbidden, "only an approved admin can list every booking")
		}
		f.UserID = ""
	}
	list, next, err := b.store.PageBookings(ctx, f)
	if err != nil {
		return nil, "", err
	}
	var open []string
	for _, bk := range list {
		if !bk.Status.Final() || bk.Status == core.BookingPaid && bk.PaymentID == "" {
			open = append(open, bk.ID)
		}
	}
	if len(open) == 0 {
		return list, next, nil
	}
	outcomes, err := b.outcomesOf(ctx, open)
	if err != nil {
		return nil, "", err
	}
	for i := range list {
		var o *core.Outcome
		if v, ok := outcomes[list[i].ID]; ok {
			o = &v
		}
		if err := b.resolve(ctx, &list[i], o); err != nil {
			return nil, "", err
		}
	}
	return list, next, nil
}

// Cancel cancels an unpaid booking and releases its seats at once. Cancelling a cancelled
// booking again answers it unchanged; a paid one is errs.Conflict, an expired one errs.Gone.
func (b *Bookings) Cancel(ctx context.Context, caller *core.User, id string) (*core.Booking, error) {
	bk, err := b.owned(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := b.resolve(ctx, bk, nil); err != nil {
		return nil, err
	}
	if !bk.Status.Final() {
		o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()})
		if err != nil {
			return nil, err
		}
		if won {
			b.events.Booking("cancelled")
		}
		b.settleBooking(ctx, bk, o)
		bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	}
	switch bk.Status {
	case core.BookingPaid:
		return nil, errs.E(errs.Conflict, "the booking is paid and cannot be cancelled")
	case core.BookingExpired:
		return nil, errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale")
	}
	return bk, nil
}

// Pay pays the caller's booking. The amount must equal its totalCost (else a FAILED payment
// and errs.PaymentFailed); a booking is paid at most once (errs.Conflict); a booking whose hold
// expired is errs.Gone and its seats return to sale; a booking that no longer holds every one
// of its seats cannot be paid (errs.Conflict). A successful payment owes the customer a
// confirmation email, written to the outbox before the payment is decided.
func (b *Bookings) Pay(ctx context.Context, caller *core.User, req PaymentRequest, traceParent string) (*core.Payment, *core.Booking, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, nil, err
	}
	f := map[string]string{}
	req.BookingID = strings.TrimSpace(req.BookingID)
	if !core.IsID(req.BookingID) {
		f["bookingId"] = "must be a 24-character hex id"
	}
	if math.IsNaN(req.Amount) || math.IsInf(req.Amount, 0) || req.Amount < 0 || req.Amount > 1e9 {
		f["amount"] = "must be a positive amount (0 for a free booking)"
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
	if err := paidState(bk.Status); err != nil {
		return nil, nil, err
	}
	now := b.clock()
	p := &core.Payment{ID: b.store.NewID(), BookingID: bk.ID, UserID: caller.ID, Amount: float64(cents(req.Amount)) / 100,
		Status: core.PaymentPending, CreatedAt: now, UpdatedAt: now}
	if cents(req.Amount) != cents(bk.TotalCost) {
		p.Status, p.Reason = core.PaymentFailed, fmt.Sprintf("amount %.2f does not equal the booking's totalCost %.2f", req.Amount, bk.TotalCost)
		if err := b.store.CreatePayment(ctx, p); err != nil {
			return nil, nil, err
		}
		b.events.Booking("payment_failed")
		e := errs.E(errs.PaymentFailed, "payment failed: %s", p.Reason)
		e.Data = p
		return nil, nil, e
	}
	// At once: the payment record, the email (the relay sends it only once the outcome says
	// paid, see PaidGuard, so a crash before the decision loses nothing and sends nothing
	// wrong), and a read of the booking's holds: a booking is paid only while it holds every
	// one of its seats.
	email := b.confirmation(ctx, caller, bk, traceParent)
	outbox := b.getOutbox()
	var (
		wg              sync.WaitGroup
		oweErr, holdErr error
		missing         []string
	)
	if outbox != nil {
		owe := outbox.Enqueue
		if d, ok := outbox.(core.DeferredOutbox); ok {
			owe = d.Owe // the relay's guard would only say "wait" until the outcome below
		}
		wg.Go(func() { oweErr = owe(ctx, email) })
	}
	wg.Go(func() { missing, holdErr = b.store.MissingHolds(ctx, bk.ShowID, bk.ID, bk.Seats) })
	err = b.store.CreatePayment(ctx, p)
	wg.Wait()
	if err == nil && oweErr != nil {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "could not queue the confirmation email")
		err = oweErr
	}
	if err == nil {
		err = holdErr
	}
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		return nil, nil, b.lostSeats(ctx, bk, p, missing)
	}
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingPaid, PaymentID: p.ID, DecidedAt: b.clock()})
	if err != nil {
		return nil, nil, err
	}
	b.settleBooking(ctx, bk, o)
	bk.Status, bk.PaymentID, bk.UpdatedAt = o.Status, o.PaymentID, o.DecidedAt
	if !won {
		b.projectPayment(ctx, p.ID, core.PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first")
		return nil, nil, paidState(o.Status)
	}
	p.Status, p.UpdatedAt = core.PaymentSuccess, o.DecidedAt
	b.projectPayment(ctx, p.ID, core.PaymentSuccess, "")
	b.events.Booking("paid")
	if d, ok := outbox.(core.DeferredOutbox); ok {
		d.Nudge() // decided: the relay may send it now
	} else if outbox != nil {
		// Enqueueing the same key again keeps one email and wakes the relay.
		_ = outbox.Enqueue(context.WithoutCancel(ctx), email)
	}
	return p, bk, nil
}

// lostSeats answers a payment of a booking that no longer holds every seat (a store that lost
// them, or data written before holds were released only after a decision): the booking is
// decided CANCELLED (unless decided first) and its payment fails.
func (b *Bookings) lostSeats(ctx context.Context, bk *core.Booking, p *core.Payment, missing []string) error {
	o, won, err := b.decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingCancelled, DecidedAt: b.clock()})
	if err != nil {
		return err
	}
	if won {
		b.events.Booking("cancelled")
	}
	b.settleBooking(ctx, bk, o)
	b.projectPayment(ctx, p.ID, core.PaymentFailed, "the booking no longer holds its seats")
	if o.Status != core.BookingCancelled || !won {
		return paidState(o.Status)
	}
	return errs.E(errs.Conflict, "the booking no longer holds seats %s: it is cancelled; book again", strings.Join(missing, ", "))
}

func paidState(s core.BookingStatus) error {
	switch s {
	case core.BookingPaid:
		return errs.E(errs.Conflict, "the booking is already paid")
	case core.BookingCancelled:
		return errs.E(errs.Conflict, "the booking is cancelled")
	case core.BookingExpired:
		return errs.E(errs.Gone, "the booking's hold has expired; its seats are back on sale")
	}
	return nil
}

func (b *Bookings) confirmation(ctx context.Context, caller *core.User, bk *core.Booking, traceParent string) core.Email {
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
	return core.Email{Key: PaidEmailKind + ":" + bk.ID, Recipients: []string{caller.Email},
		Subject: "Your tickets for " + movie, Content: content, Kind: PaidEmailKind, Ref: bk.ID, TraceParent: traceParent}
}

// PaidGuard tells the outbox relay whether a booking's confirmation may be sent: only once
// the booking's outcome is paid. An undecided booking waits; one that is past its hold (and
// the takeover margin) is decided EXPIRED here and its email dropped.
func (b *Bookings) PaidGuard(ctx context.Context, bookingID string) (core.GuardVerdict, error) {
	o, err := b.outcome(ctx, bookingID)
	if err != nil {
		return core.GuardWait, err
	}
	if o == nil {
		bk, err := b.getBooking(ctx, bookingID)
		if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
			return core.GuardDrop, nil
		}
		if err != nil {
			return core.GuardWait, err
		}
		if !b.takeoverNow().After(bk.ExpiresAt) {
			return core.GuardWait, nil // a payment may be on its way to its outcome insert
		}
		if err := b.resolve(ctx, bk, nil); err != nil {
			return core.GuardWait, err
		}
		if !bk.Status.Final() {
			return core.GuardWait, nil
		}
		o = &core.Outcome{Status: bk.Status}
	}
	if o.Status == core.BookingPaid {
		return core.GuardSend, nil
	}
	return core.GuardDrop, nil
}

// GetPayment returns a payment of the caller's (any, for an admin), its status resolved from
// its booking's outcome.
func (b *Bookings) GetPayment(ctx context.Context, caller *core.User, id string) (*core.Payment, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, err
	}
	if !core.IsID(id) {
		return nil, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	p, err := b.store.GetPayment(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.UserID != caller.ID && !caller.Is(core.RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "this payment is not yours")
	}
	return p, b.resolvePayment(ctx, p)
}

// ListPayments returns a page of the caller's payments (everyone's for an admin who asks for
// all), newest first, and the cursor of the next page, as List.
func (b *Bookings) ListPayments(ctx context.Context, caller *core.User, all bool, pg core.ListPage) ([]core.Payment, string, error) {
	if err := mustBeApproved(caller); err != nil {
		return nil, "", err
	}
	f := core.PaymentFilter{UserID: caller.ID, Limit: pg.Limit, Skip: pg.Skip, Before: pg.Before}
	if all {
		if !caller.Is(core.RoleAdmin) {
			return nil, "", errs.E(errs.Forbidden, "only an approved admin can list every payment")
		}
		f.UserID = ""
	}
	list, next, err := b.store.PagePayments(ctx, f)
	if err != nil {
		return nil, "", err
	}
	// The pending payments' outcomes at once (a read by id each), then each resolved.
	var pending []string
	for _, p := range list {
		if p.Status == core.PaymentPending {
			pending = append(pending, p.BookingID)
		}
	}
	if len(pending) > 1 {
		if _, err := b.outcomesOf(ctx, pending); err != nil {
			return nil, "", err
		}
	}
	for i := range list {
		if err := b.resolvePayment(ctx, &list[i]); err != nil {
			return nil, "", err
		}
	}
	return list, next, nil
}

func (b *Bookings) resolvePayment(ctx context.Context, p *core.Payment) error {
	if p.Status != core.PaymentPending {
		return nil
	}
	o, err := b.outcome(ctx, p.BookingID)
	if err != nil || o == nil {
		return err
	}
	if o.Status == core.BookingPaid && o.PaymentID == p.ID {
		p.Status = core.PaymentSuccess
	} else {
		p.Status, p.Reason = core.PaymentFailed, "the booking was "+strings.ToLower(string(o.Status))+" first"
	}
	p.UpdatedAt = o.DecidedAt
	b.projectPayment(ctx, p.ID, p.Status, p.Reason)
	return nil
}

// SeatMap lists a show's seats as free, held or sold. Expired holds count as free. It costs the
// same for a full show as for an empty one: the view is read in place, by layout index, and
// only the unsold holds (few in a sold-out show) need more than a glance.
func (b *Bookings) SeatMap(ctx context.Context, showID string) (*core.SeatMap, error) {
	show, err := b.shows.GetShow(ctx, showID)
	if err != nil {
		return nil, err
	}
	v, err := b.freshView(ctx, show.ID, time.Time{})
	if err != nil {
		return nil, err
	}
	layout := LayoutOf(show)
	states := make([]core.SeatState, layout.Seats)
	type hold struct {
		seat    int
		booking string
		expires time.Time
	}
	var holds []hold
	v.mu.Lock()
	v.useLayout(layout)
	for s := range v.unknown {
		if i, ok := layout.index[s]; ok {
			states[i] = core.SeatHeld
		}
	}
	for i, taken := range v.occ {
		switch {
		case !taken:
		case v.sold[i]:
			states[i] = core.SeatSold
		default:
			e := v.eff[layout.labels[i]]
			holds = append(holds, hold{i, e.booking, e.expires})
		}
	}
	v.mu.Unlock()
	now := b.takeoverNow() // a hold counts as held until others may take it
	// A hold past its expiry and not known sold may belong to a booking that was paid (and
	// whose sale the log does not have yet): its outcome, if any, says which.
	var unsure []string
	seen := map[string]bool{}
	for _, h := range holds {
		if _, known := b.knownOutcome(h.booking); !known && now.After(h.expires) && !seen[h.booking] {
			seen[h.booking] = true
			unsure = append(unsure, h.booking)
		}
	}
	outcomes, err := b.outcomesOf(ctx, unsure)
	if err != nil {
		return nil, err
	}
	for _, h := range holds {
		known, decided := b.knownOutcome(h.booking)
		if o, ok := outcomes[h.booking]; ok {
			known, decided = o, true
		}
		switch {
		case decided && known.Status == core.BookingPaid:
			states[h.seat] = core.SeatSold
		case decided:
			states[h.seat] = ""
		case now.Before(h.expires):
			states[h.seat] = core.SeatHeld
		}
	}
	var held, sold int
	for _, st := range states {
		switch st {
		case core.SeatHeld:
			held++
		case core.SeatSold:
			sold++
		}
	}
	m := &core.SeatMap{ShowID: show.ID, NoOfSeats: show.NoOfSeats, SeatsPerRow: layout.PerRow, At: b.now().UTC(),
		Free: make([]string, 0, layout.Seats-held-sold), Held: make([]string, 0, held), Sold: make([]string, 0, sold),
		Seats: make([]core.SeatEntry, layout.Seats)}
	for i, s := range layout.labels {
		st := states[i]
		switch st {
		case core.SeatHeld:
			m.Held = append(m.Held, s)
		case core.SeatSold:
			m.Sold = append(m.Sold, s)
		default:
			st = core.SeatFree
			m.Free = append(m.Free, s)
		}
		m.Seats[i] = core.SeatEntry{Seat: s, State: st}
	}
	return m, nil
}

// ReserveShowDeletion is asked before a show is deleted. It inserts the show's deletion marker
// (from then on, a booking that wins seats of the show sees it and backs off), then looks for
// bookings of the show: seats sold or held in its seat log, read afresh, and bookings whose fate
// is not settled in the expiry queue (a booking writes its intent before it claims a seat). A
// show in use is errs.Conflict, and the marker is removed again. Otherwise the caller deletes
// the show, and calls abort if that fails.
func (b *Bookings) ReserveShowDeletion(ctx context.Context, showID string) (abort func(context.Context), err error) {
	start := b.now()
	won, err := b.store.MarkShowDeleting(ctx, showID)
	if err != nil {
		return nil, err
	}
	if !won {
		at, ok, err := b.store.ShowDeleting(ctx, showID)
		if err != nil {
			return nil, err
		}
		if ok && b.now().Sub(at) < core.DeletionMarkerStale {
			return nil, errs.E(errs.Conflict, "the show is being deleted by another request")
		}
		// A marker left by a deleter that died: take the deletion over.
		if err := b.store.UnmarkShowDeleting(ctx, showID); err != nil {
			return nil, err
		}
		if won, err = b.store.MarkShowDeleting(ctx, showID); err != nil {
			return nil, err
		}
		if !won {
			return nil, errs.E(errs.Conflict, "the show is being deleted by another request")
		}
	}
	abort = func(ctx context.Context) { _ = b.store.UnmarkShowDeleting(context.WithoutCancel(ctx), showID) }
	used, err := b.showInUse(ctx, showID, start)
	if err == nil && b.now().Sub(start) > core.DeletionMarkerStale/2 {
		err = errs.E(errs.Unavailable, "the check for bookings took too long; try again")
	}
	if err != nil || used {
		abort(ctx)
		if err != nil {
			return nil, err
		}
		return nil, errs.E(errs.Conflict, "the show has seats held or sold: cancel its bookings first")
	}
	return abort, nil
}

// showInUse reports whether the show has seats sold or held by bookings whose hold has not
// ended, from reads begun at or after since.
func (b *Bookings) showInUse(ctx context.Context, showID string, since time.Time) (bool, error) {
	st, err := b.seatsOf(ctx, showID, since)
	if err != nil {
		return false, err
	}
	intents, err := b.store.ShowIntents(ctx, showID)
	if err != nil {
		return false, err
	}
	now := b.takeoverNow()
	bookings := map[string][]string{} // undecided-looking booking -> seats
	for s, e := range st.seats {
		if e.sold {
			return true, nil
		}
		bookings[e.booking] = append(bookings[e.booking], s)
	}
	if len(st.unknown) > 0 {
		return true, nil
	}
	expires := map[string]time.Time{}
	for _, e := range st.seats {
		if e.expires.After(expires[e.booking]) {
			expires[e.booking] = e.expires
		}
	}
	for _, in := range intents {
		bookings[in.BookingID] = append(bookings[in.BookingID], in.Seats...)
		if in.ExpiresAt.After(expires[in.BookingID]) {
			expires[in.BookingID] = in.ExpiresAt
		}
	}
	ids := make([]string, 0, len(bookings))
	for id := range bookings {
		ids = append(ids, id)
	}
	outcomes, err := b.outcomesOf(ctx, ids)
	if err != nil {
		return false, err
	}
	for id, seats := range bookings {
		o, decided := outcomes[id]
		if !decided {
			if now.Before(expires[id]) {
				return true, nil
			}
			if o, err = b.expire(ctx, showID, id, seats); err != nil {
				return false, err
			}
		}
		if o.Status == core.BookingPaid {
			return true, nil
		}
	}
	return false, nil
}
