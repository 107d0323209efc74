package booking

import (
	"context"
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
	// Outbox receives the confirmation emails (nil: none are sent). The wiring gives the
	// outbox relay, built before the engine and started after it.
	Outbox core.Outbox
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

	outbox core.Outbox // see BookingsOptions.Outbox

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
		margin: max(opts.TakeoverMargin, 0), leads: opts.Leads, outbox: opts.Outbox,
		store: store, shows: shows, ttl: opts.HoldTTL, rounds: opts.MaxRounds,
		maxSeats: opts.MaxSeatsPerBooking, maxOpen: opts.MaxOpenSeatsPerUser, events: opts.Events, now: opts.Now,
		inflight: map[string]map[string]int{}}
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
