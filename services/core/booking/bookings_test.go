package booking_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// shows is a hand-written ShowFinder.
type shows struct{ show *core.Show }

func (s shows) GetShow(_ context.Context, id string) (*core.Show, error) {
	if id != s.show.ID {
		return nil, errs.E(errs.NotFound, "show not found")
	}
	return s.show, nil
}

func (s shows) FindShow(_ context.Context, theatreID, movieID, timing string) (*core.Show, error) {
	if theatreID != s.show.TheatreID || movieID != s.show.MovieID || timing != s.show.Timing {
		return nil, errs.E(errs.NotFound, "show not found")
	}
	return s.show, nil
}

func (s shows) GetMovie(context.Context, string) (*core.Movie, error) {
	return &core.Movie{Name: "Heat"}, nil
}

func (s shows) GetTheatre(context.Context, string) (*core.Theatre, error) {
	return &core.Theatre{Name: "Odeon", City: "Pune"}, nil
}

// outbox records emails in memory.
type outbox struct {
	mu     sync.Mutex
	emails map[string]core.Email
}

func (o *outbox) Enqueue(_ context.Context, e core.Email) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.emails == nil {
		o.emails = map[string]core.Email{}
	}
	o.emails[e.Key] = e
	return nil
}

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration)   { c.ns.Add(int64(d)) }
func newShow(seats, perRow int) *core.Show { return newShowPriced(seats, perRow, 250) }

func newShowPriced(seats, perRow int, price float64) *core.Show {
	return &core.Show{ID: bson.NewObjectID().Hex(), TheatreID: bson.NewObjectID().Hex(), MovieID: bson.NewObjectID().Hex(),
		Timing: "2030-06-01T18:30:00Z", NoOfSeats: seats, SeatsPerRow: perRow, Price: price}
}

type rig struct {
	db    *mongo.Database
	store *mongostore.Bookings
	eng   *booking.Bookings
	show  *core.Show
	clock *clock
	mail  *outbox
}

func newRig(t testing.TB, show *core.Show) *rig {
	t.Helper()
	db := devdb.TestDB(t)
	r := &rig{db: db, show: show, clock: newClock(), mail: &outbox{}}
	r.store = newStore(db)
	if err := r.store.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.eng = r.engine(r.store)
	return r
}

// newStore is a booking store on db as the rig's engines use it: with the bucket width that
// suits their hold TTL of a minute.
func newStore(db *mongo.Database) *mongostore.Bookings {
	return mongostore.NewBookings(db).SetIntentBucketWidth(mongostore.IntentBucketWidthFor(time.Minute))
}

// engine is another engine (a replica) on the rig's show and clock.
func (r *rig) engine(store booking.BookingStore) *booking.Bookings {
	return r.engineWith(store, r.mail)
}

// engineWith is an engine whose confirmation emails go to outbox.
func (r *rig) engineWith(store booking.BookingStore, outbox core.Outbox) *booking.Bookings {
	return booking.NewBookings(store, shows{r.show}, booking.BookingsOptions{HoldTTL: time.Minute, Now: r.clock.Now, Outbox: outbox})
}

func customer(i int) *core.User {
	return &core.User{ID: bson.NewObjectID().Hex(), Name: fmt.Sprintf("C%d", i), Email: fmt.Sprintf("c%d@example.com", i),
		Role: core.RoleCustomer, Status: core.StatusApproved}
}

func (r *rig) req(n int, seats ...string) booking.BookingRequest {
	return booking.BookingRequest{TheatreID: r.show.TheatreID, MovieID: r.show.MovieID, Timing: r.show.Timing, NoOfSeats: n, Seats: seats}
}

// checkSeats asserts the invariant: no seat held twice, at most NoOfSeats held, and every
// hold belongs to a booking that is IN_PROCESS or paid.
func (r *rig) checkSeats(t *testing.T) (held int) {
	t.Helper()
	ctx := context.Background()
	holds, err := r.store.ShowHolds(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, h := range holds {
		if other, ok := seen[h.Seat]; ok {
			t.Fatalf("seat %s held by %s and %s", h.Seat, other, h.BookingID)
		}
		seen[h.Seat] = h.BookingID
	}
	if len(holds) > r.show.NoOfSeats {
		t.Fatalf("%d holds on a %d-seat show", len(holds), r.show.NoOfSeats)
	}
	return len(holds)
}

func TestSeatLayout(t *testing.T) {
	l := booking.NewSeatLayout(25, 10)
	if got := l.Labels(); len(got) != 25 || got[0] != "A1" || got[9] != "A10" || got[10] != "B1" || got[24] != "C5" {
		t.Fatalf("labels %v", got)
	}
	if booking.RowName(25) != "Z" || booking.RowName(26) != "AA" || booking.RowName(27) != "AB" {
		t.Fatal("row names")
	}
	free := l.NewSeatSet(true)
	best := l.Best(free, 3, 0, nil)
	if len(best) != 3 || best[0][0] != best[2][0] {
		t.Fatalf("3 best seats should be a run in one row: %v", best)
	}
	if l.Best(free, 26, 0, nil) != nil {
		t.Fatal("26 of 25 seats")
	}
	// Only scattered seats free: n singles, the best ones.
	scattered := l.NewSeatSet(true)
	for _, s := range l.Labels() {
		if s != "A1" && s != "B5" && s != "C2" && s != "B6" {
			scattered.Remove(s)
		}
	}
	if got := l.Best(scattered, 3, 0, nil); !slices.Equal(got, []string{"B5", "B6", "C2"}) {
		t.Fatalf("scattered: %v, want B5 B6 C2", got)
	}
	if got := l.Best(scattered, 3, 1, rand.New(rand.NewPCG(1, 2))); len(got) != 3 {
		t.Fatalf("scattered with jitter: %v", got)
	}
	// A run of 2 exists (B5 B6): it is taken.
	if got := l.Best(scattered, 2, 0, nil); !slices.Equal(got, []string{"B5", "B6"}) {
		t.Fatalf("run of 2: %v", got)
	}
}

func TestBookPayAndEmail(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShowPriced(20, 10, 12.5))
	ctx := context.Background()
	c := customer(1)
	bk, err := r.eng.Book(ctx, c, r.req(3))
	if err != nil {
		t.Fatal(err)
	}
	if bk.Status != core.BookingInProcess || len(bk.Seats) != 3 || bk.TotalCost != 37.5 || bk.UserID != c.ID {
		t.Fatalf("booking %+v", bk)
	}
	if _, _, err := r.eng.Pay(ctx, c, booking.PaymentRequest{BookingID: bk.ID, Amount: 37.49}, ""); !errs.Is(err, errs.PaymentFailed) {
		t.Fatalf("wrong amount: %v", err)
	}
	if len(r.mail.emails) != 0 {
		t.Fatal("an email was owed for a failed payment")
	}
	p, paid, err := r.eng.Pay(ctx, c, booking.PaymentRequest{BookingID: bk.ID, Amount: 37.5}, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != core.PaymentSuccess || paid.Status != core.BookingPaid || paid.PaymentID != p.ID {
		t.Fatalf("payment %+v booking %+v", p, paid)
	}
	if _, _, err := r.eng.Pay(ctx, c, booking.PaymentRequest{BookingID: bk.ID, Amount: 37.5}, ""); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second payment: %v", err)
	}
	e, ok := r.mail.emails[booking.PaidEmailKind+":"+bk.ID]
	if !ok || e.Recipients[0] != c.Email || e.Kind != booking.PaidEmailKind || e.Ref != bk.ID {
		t.Fatalf("email %+v", r.mail.emails)
	}
	for _, want := range append([]string{"Heat", "Odeon", bk.Timing, bk.ID}, bk.Seats...) {
		if !strings.Contains(e.Content, want) {
			t.Fatalf("email lacks %q: %s", want, e.Content)
		}
	}
	if v, _ := r.eng.PaidGuard(ctx, bk.ID); v != core.GuardSend {
		t.Fatalf("guard of a paid booking: %v", v)
	}
	// Paid seats stay sold past the hold TTL.
	r.clock.Advance(2 * time.Minute)
	m, err := r.eng.SeatMap(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Sold, bk.Seats) || len(m.Free) != 17 || len(m.Held) != 0 {
		t.Fatalf("seat map %+v", m)
	}
	got, err := r.eng.Get(ctx, c, bk.ID)
	if err != nil || got.Status != core.BookingPaid {
		t.Fatalf("get %+v %v", got, err)
	}
	// Payments resolve: one SUCCESS, one FAILED.
	list, _, err := r.eng.ListPayments(ctx, c, false, core.ListPage{Limit: 10})
	if err != nil || len(list) != 2 {
		t.Fatalf("payments %+v %v", list, err)
	}
}

func TestNamedSeats(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(20, 10))
	ctx := context.Background()
	a, b := customer(1), customer(2)
	bk, err := r.eng.Book(ctx, a, r.req(0, "a1", "A2"))
	if err != nil || !slices.Equal(bk.Seats, []string{"A1", "A2"}) {
		t.Fatalf("%+v %v", bk, err)
	}
	_, err = r.eng.Book(ctx, b, r.req(0, "A2", "A3"))
	var e *errs.Error
	if !errs.Is(err, errs.Conflict) || !asErr(err, &e) || e.Data == nil {
		t.Fatalf("taken seat: %v", err)
	}
	free := e.Data.(map[string]any)["freeSeats"].([]string)
	if slices.Contains(free, "A2") || slices.Contains(free, "A1") || !slices.Contains(free, "A3") || len(free) != 18 {
		t.Fatalf("free seats %v", free)
	}
	// The loser holds nothing: A3 is still free.
	if _, err := r.eng.Book(ctx, b, r.req(0, "A3")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"Z9"}, {"A1", "a1"}} {
		if _, err := r.eng.Book(ctx, b, r.req(0, bad...)); !errs.Is(err, errs.Invalid) {
			t.Fatalf("%v: %v", bad, err)
		}
	}
	if r.checkSeats(t) != 3 {
		t.Fatal("3 seats should be held")
	}
}

func asErr(err error, target **errs.Error) bool {
	e, ok := err.(*errs.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestCancelReleasesAtOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(2, 10))
	ctx := context.Background()
	a, b := customer(1), customer(2)
	bk, err := r.eng.Book(ctx, a, r.req(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Book(ctx, b, r.req(1)); !errs.Is(err, errs.Conflict) {
		t.Fatalf("full show: %v", err)
	}
	if _, err := r.eng.Cancel(ctx, b, bk.ID); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("another's cancel: %v", err)
	}
	if _, _, err := r.eng.Pay(ctx, b, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("another's payment: %v", err)
	}
	got, err := r.eng.Cancel(ctx, a, bk.ID)
	if err != nil || got.Status != core.BookingCancelled {
		t.Fatalf("cancel %+v %v", got, err)
	}
	if again, err := r.eng.Cancel(ctx, a, bk.ID); err != nil || again.Status != core.BookingCancelled {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, _, err := r.eng.Pay(ctx, a, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); !errs.Is(err, errs.Conflict) {
		t.Fatalf("pay a cancelled booking: %v", err)
	}
	if _, err := r.eng.Book(ctx, b, r.req(2)); err != nil {
		t.Fatalf("seats not back on sale: %v", err)
	}
	if v, _ := r.eng.PaidGuard(ctx, bk.ID); v != core.GuardDrop {
		t.Fatalf("guard of a cancelled booking: %v", v)
	}
}

func TestHoldExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(3, 10))
	ctx := context.Background()
	a, b := customer(1), customer(2)
	bk, err := r.eng.Book(ctx, a, r.req(3))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.eng.PaidGuard(ctx, bk.ID); v != core.GuardWait {
		t.Fatalf("guard of an open booking: %v", v)
	}
	r.clock.Advance(time.Minute + time.Second)
	// Nobody asks: the expirer releases the seats, then clears their holds.
	n, err := r.eng.ExpireDue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("expired %d %v", n, err)
	}
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 1 {
		t.Fatalf("cleared %d %v", n, err)
	}
	if held := r.checkSeats(t); held != 0 {
		t.Fatalf("%d seats still held after expiry", held)
	}
	if _, _, err := r.eng.Pay(ctx, a, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); !errs.Is(err, errs.Gone) {
		t.Fatalf("paying an expired booking: %v", err)
	}
	if got, _ := r.eng.Get(ctx, a, bk.ID); got.Status != core.BookingExpired {
		t.Fatalf("status %s", got.Status)
	}
	if _, err := r.eng.Book(ctx, b, r.req(3)); err != nil {
		t.Fatal(err)
	}
	// A booking that meets an expired hold releases it itself.
	r.clock.Advance(2 * time.Minute)
	if _, err := r.eng.Book(ctx, a, r.req(3)); err != nil {
		t.Fatalf("expired hold not reclaimed by a booking: %v", err)
	}
}

// TestExpirerSettlesAPageTogether: the expirer meets a bucket of bookings in every state at
// once (its stages write the outcomes and slots in batches): the unpaid ones end EXPIRED, the
// paid ones stay PAID with their seats sold, the cancelled ones stay CANCELLED. Released, every
// customer has their fair-use slots back and the seat map shows the unpaid seats free; cleared,
// only the sold seats keep holds, the rest are on sale, and nothing is left to do.
func TestExpirerSettlesAPageTogether(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(60, 10))
	ctx := context.Background()
	type made struct {
		u  *core.User
		bk *core.Booking
	}
	var all []made
	for i := range 30 {
		u := customer(i)
		bk, err := r.eng.Book(ctx, u, r.req(2))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, made{u, bk})
	}
	want := map[string]core.BookingStatus{}
	for i, m := range all {
		switch i % 3 {
		case 0:
			if _, _, err := r.eng.Pay(ctx, m.u, booking.PaymentRequest{BookingID: m.bk.ID, Amount: m.bk.TotalCost}, ""); err != nil {
				t.Fatal(err)
			}
			want[m.bk.ID] = core.BookingPaid
		case 1:
			if _, err := r.eng.Cancel(ctx, m.u, m.bk.ID); err != nil {
				t.Fatal(err)
			}
			want[m.bk.ID] = core.BookingCancelled
		default:
			want[m.bk.ID] = core.BookingExpired
		}
	}
	r.eng.Settled()
	r.clock.Advance(time.Minute + time.Second)
	// A fresh replica, so that nothing is known from memory.
	eng := r.engine(newStore(devdb.TestDBNamed(t, r.db.Name())))
	if n, err := eng.ExpireDue(ctx); err != nil || n != 10 {
		t.Fatalf("released %d (%v), want the 10 unpaid bookings", n, err)
	}
	for _, m := range all {
		got, err := eng.Get(ctx, m.u, m.bk.ID)
		if err != nil || got.Status != want[m.bk.ID] {
			t.Fatalf("booking %s: %v %v, want %s", m.bk.ID, got, err, want[m.bk.ID])
		}
	}
	if m, err := eng.SeatMap(ctx, r.show.ID); err != nil || len(m.Free) != 40 || len(m.Sold) != 20 {
		t.Fatalf("seat map after the release: %d free, %d sold (%v); want 40 and 20", len(m.Free), len(m.Sold), err)
	}
	if n, err := eng.ExpireDue(ctx); err != nil || n != 10 {
		t.Fatalf("cleared %d (%v), want the 10 unpaid bookings' intents", n, err)
	}
	if n, err := eng.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("a third step met %d (%v): the first two left work", n, err)
	}
	if b, err := r.store.IntentBuckets(ctx); err != nil || len(b) != 0 {
		t.Fatalf("buckets left: %+v %v", b, err)
	}
	// 10 paid bookings of 2 seats: 20 holds, all sold; the other 40 seats free to book.
	if held := r.checkSeats(t); held != 20 {
		t.Fatalf("%d holds after the expirer, want the 20 sold", held)
	}
	// Every customer's fair-use slots came back (a decided booking holds no unpaid seat).
	for _, m := range all {
		won, err := r.store.ClaimSlots(ctx, m.u.ID, "probe", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		if err != nil || len(won) != 10 {
			t.Fatalf("customer of %s (%s) has slots still taken: won %v %v", m.bk.ID, want[m.bk.ID], won, err)
		}
	}
	for i := range 4 {
		if _, err := r.eng.Book(ctx, customer(100+i), r.req(10)); err != nil {
			t.Fatalf("the released seats are not on sale: %v", err)
		}
	}
}

// TestReleasedSeatsSellBeforeTheClear: between the expirer's release and its clear, the seats
// of expired bookings still have their holds, yet they sell: a booking meets the old holds it
// needs (and only those) and releases them itself. The clear that follows deletes only the old
// bookings' holds, never the new one's.
func TestReleasedSeatsSellBeforeTheClear(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(20, 10))
	ctx := context.Background()
	a, a2, b := customer(1), customer(2), customer(3)
	for _, u := range []*core.User{a, a2} {
		if _, err := r.eng.Book(ctx, u, r.req(10)); err != nil {
			t.Fatal(err)
		}
	}
	r.clock.Advance(time.Minute + time.Second)
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 2 {
		t.Fatalf("released %d (%v)", n, err)
	}
	if held := r.checkSeats(t); held != 20 {
		t.Fatalf("%d holds after the release, want the 20 old ones still there", held)
	}
	bk, err := r.eng.Book(ctx, b, r.req(5))
	if err != nil {
		t.Fatalf("a released seat does not sell before the clear: %v", err)
	}
	if held := r.checkSeats(t); held != 20 {
		t.Fatalf("%d holds: the booking of 5 met more old holds than it needed", held)
	}
	// The customer whose bookings expired has all ten slots again: a booking of ten seats.
	if _, err := r.eng.Book(ctx, a, r.req(10)); err != nil {
		t.Fatalf("slots not back after the release: %v", err)
	}
	for {
		n, err := r.eng.ExpireDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	r.eng.Settled()
	if held := r.checkSeats(t); held != 15 {
		t.Fatalf("%d holds after the clear, want the 15 of the new bookings", held)
	}
	if _, _, err := r.eng.Pay(ctx, b, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); err != nil {
		t.Fatalf("the new booking lost its seats to the clear: %v", err)
	}
}

// TestExpirerMeetsAnEarlierBucket: an intent that ends before one written earlier (a hold TTL
// shortened between two versions) is met once its own bucket has passed, while the other's is
// still open; the open one stays until it ends.
func TestExpirerMeetsAnEarlierBucket(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 10))
	ctx := context.Background()
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("empty queue: %d %v", n, err)
	}
	if _, err := r.eng.Book(ctx, customer(1), r.req(1)); err != nil {
		t.Fatal(err)
	}
	// Two early intents, neither with seats (rounds that claimed only fair-use slots).
	var early core.Intent
	for range 2 {
		id := bson.NewObjectID().Hex()
		early = core.Intent{ID: core.IntentID(id, 0), BookingID: id, ShowID: r.show.ID, UserID: customer(2).ID,
			ExpiresAt: r.clock.Now().Add(-2 * time.Second)}
		if err := r.store.AddIntent(ctx, early); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 2 {
		t.Fatalf("met %d (%v), want the early intents", n, err)
	}
	if o, err := r.store.Outcome(ctx, early.BookingID); err != nil || o == nil || o.Status != core.BookingExpired {
		t.Fatalf("early booking's outcome %+v %v", o, err)
	}
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 2 {
		t.Fatalf("cleared %d (%v), want the early intents' bucket", n, err)
	}
	if n, err := r.eng.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("met %d (%v) with only an open booking left", n, err)
	}
	if b, err := r.store.IntentBuckets(ctx); err != nil || len(b) != 1 {
		t.Fatalf("buckets %+v %v, want the open booking's", b, err)
	}
}

// TestRaceLastSeats: 30 customers book the last 10 seats at once, then all pay at once (the
// winners twice each): exactly 10 bookings, 10 payments, 20 conflicts, nothing else.
func TestRaceLastSeats(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 10))
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []*core.Booking
	var owners []*core.User
	conflicts := 0
	for i := range 30 {
		wg.Go(func() {
			c := customer(i)
			bk, err := r.eng.Book(ctx, c, r.req(1))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won, owners = append(won, bk), append(owners, c)
			case errs.Is(err, errs.Conflict):
				conflicts++
			default:
				t.Errorf("book: %v", err)
			}
		})
	}
	wg.Wait()
	if len(won) != 10 || conflicts != 20 {
		t.Fatalf("%d booked, %d conflicts; want 10 and 20", len(won), conflicts)
	}
	r.checkSeats(t)
	var paid, dup atomic.Int32
	for i, bk := range won {
		for range 2 {
			wg.Go(func() {
				_, _, err := r.eng.Pay(ctx, owners[i], booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, "")
				switch {
				case err == nil:
					paid.Add(1)
				case errs.Is(err, errs.Conflict):
					dup.Add(1)
				default:
					t.Errorf("pay: %v", err)
				}
			})
		}
	}
	wg.Wait()
	if paid.Load() != 10 || dup.Load() != 10 {
		t.Fatalf("%d paid, %d refused as already paid; want 10 and 10", paid.Load(), dup.Load())
	}
	m, err := r.eng.SeatMap(ctx, r.show.ID)
	if err != nil || len(m.Sold) != 10 {
		t.Fatalf("sold %v %v", m, err)
	}
	if len(r.mail.emails) != 10 {
		t.Fatalf("%d emails owed, want 10", len(r.mail.emails))
	}
}

// TestRaceThreeSeatsEach: 8 customers ask for 3 seats each of 10: at most 3 succeed, never
// more than 10 seats held, and every failure is a conflict.
func TestRaceThreeSeatsEach(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(10, 5))
	ctx := context.Background()
	var wg sync.WaitGroup
	var ok, conflict atomic.Int32
	for i := range 8 {
		wg.Go(func() {
			_, err := r.eng.Book(ctx, customer(i), r.req(3))
			switch {
			case err == nil:
				ok.Add(1)
			case errs.Is(err, errs.Conflict):
				conflict.Add(1)
			default:
				t.Errorf("book: %v", err)
			}
		})
	}
	wg.Wait()
	held := r.checkSeats(t)
	if ok.Load() != 3 || conflict.Load() != 5 || held != 9 {
		t.Fatalf("%d booked, %d conflicts, %d seats held; want 3, 5, 9", ok.Load(), conflict.Load(), held)
	}
}

// TestPaymentRacesExpiry: at the instant the hold ends, payments, the expirer, bookings of the
// same seats and cancels race. Each booking ends with exactly one fate; paid seats are never
// resold; the seat count never exceeds capacity.
func TestPaymentRacesExpiry(t *testing.T) {
	t.Parallel()
	for round := range 5 {
		r := newRig(t, newShow(4, 4))
		ctx := context.Background()
		a := customer(round)
		bk, err := r.eng.Book(ctx, a, r.req(4))
		if err != nil {
			t.Fatal(err)
		}
		r.clock.Advance(time.Minute) // exactly at expiry: both sides can still think they are in time
		other := r.engine(r.store)
		var wg sync.WaitGroup
		var paid, gone, rebooked atomic.Int32
		for range 3 {
			wg.Go(func() {
				_, _, err := r.eng.Pay(ctx, a, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, "")
				switch {
				case err == nil:
					paid.Add(1)
				case errs.Is(err, errs.Gone), errs.Is(err, errs.Conflict):
					gone.Add(1)
				default:
					t.Errorf("pay: %v", err)
				}
			})
			wg.Go(func() {
				r.clock.Advance(time.Millisecond)
				if _, err := other.ExpireDue(ctx); err != nil {
					t.Errorf("expire: %v", err)
				}
			})
			wg.Go(func() {
				if _, err := other.Book(ctx, customer(99), r.req(4)); err == nil {
					rebooked.Add(1)
				} else if !errs.Is(err, errs.Conflict) {
					t.Errorf("rebook: %v", err)
				}
			})
		}
		wg.Wait()
		o, err := r.store.Outcome(ctx, bk.ID)
		if err != nil || o == nil {
			t.Fatalf("no outcome: %v", err)
		}
		r.checkSeats(t)
		switch o.Status {
		case core.BookingPaid:
			if paid.Load() != 1 || rebooked.Load() != 0 {
				t.Fatalf("paid: %d payments succeeded, %d rebookings", paid.Load(), rebooked.Load())
			}
		case core.BookingExpired:
			if paid.Load() != 0 {
				t.Fatalf("expired but %d payments succeeded", paid.Load())
			}
			if rebooked.Load() > 1 {
				t.Fatalf("%d rebookings of 4 seats of 4", rebooked.Load())
			}
		default:
			t.Fatalf("outcome %s", o.Status)
		}
	}
}

// TestTwoReplicas: two engines with their own database clients on one database, 40
// customers each, one seat each, on a 50-seat show: exactly 50 bookings, no seat twice.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(50, 10))
	other := r.engine(newStore(devdb.TestDBNamed(t, r.db.Name())))
	ctx := context.Background()
	var wg sync.WaitGroup
	var ok, conflict atomic.Int32
	for i := range 80 {
		eng := r.eng
		if i%2 == 1 {
			eng = other
		}
		wg.Go(func() {
			_, err := eng.Book(ctx, customer(i), r.req(1))
			switch {
			case err == nil:
				ok.Add(1)
			case errs.Is(err, errs.Conflict):
				conflict.Add(1)
			default:
				t.Errorf("book: %v", err)
			}
		})
	}
	wg.Wait()
	if held := r.checkSeats(t); ok.Load() != 50 || conflict.Load() != 30 || held != 50 {
		t.Fatalf("%d booked, %d conflicts, %d held; want 50, 30, 50", ok.Load(), conflict.Load(), held)
	}
}
