package booking_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// faultRig is two replicas on one database: a (faulty) reaches it through a fault proxy, b
// directly.
type faultRig struct {
	*rig
	proxy *faultproxy.Proxy
	a, b  *booking.Bookings
	aDB   *mongo.Database // a's database, through the proxy
}

func newFaultRig(t *testing.T, show *core.Show) *faultRig {
	t.Helper()
	r := newRig(t, show)
	p, db := faultproxy.StartTest(t, r.db.Name(), 4)
	return &faultRig{rig: r, proxy: p, a: r.engine(newStore(db)), b: r.eng, aDB: db}
}

// faultCase is one write of the booking path failed one way.
type faultCase struct {
	command, coll string
	fault         faultproxy.Fault
	skip          int
}

func (c faultCase) String() string {
	return fmt.Sprintf("%s_%s_%s_skip%d", c.command, c.coll, c.fault, c.skip)
}

// TestFaultsNeverSellTwice fails each write of the book, pay, cancel and expire paths of one
// replica in turn (the reply dropped after the write landed, or the connection cut before
// it), while customers book, retry, pay whatever they find in their bookings, cancel, and let
// holds expire on both replicas. Whatever the fault: no seat is in two paid bookings, no
// booking is paid twice, every paid booking still holds its seats, and once the faults stop
// and the expirer has run, every seat not sold is free again.
func TestFaultsNeverSellTwice(t *testing.T) {
	t.Parallel()
	var cases []faultCase
	writes := [][2]string{
		{"insert", mongostore.IntentsCollection + "_*"}, {"insert", mongostore.HoldsCollection},
		{"insert", mongostore.SlotsCollection}, {"insert", mongostore.BookingsCollection},
		{"insert", mongostore.OutcomesCollection}, {"insert", mongostore.PaymentsCollection},
		{"insert", mongostore.SeatLogCollection}, {"delete", mongostore.HoldsCollection},
		{"delete", mongostore.SlotsCollection}, {"delete", mongostore.IntentsCollection + "_*"},
		{"drop", mongostore.IntentsCollection + "_*"},
		{"find", mongostore.HoldsCollection}, {"find", mongostore.OutcomesCollection},
		{"find", mongostore.DeletionsCollection},
	}
	for _, w := range writes {
		for _, f := range []faultproxy.Fault{faultproxy.DropReply, faultproxy.CutBefore} {
			for skip := range 3 {
				cases = append(cases, faultCase{command: w[0], coll: w[1], fault: f, skip: skip})
			}
		}
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			runFaultCase(t, c)
		})
	}
}

func runFaultCase(t *testing.T, c faultCase) {
	r := newFaultRig(t, newShow(4, 4))
	ctx := context.Background()
	rule := r.proxy.Add(&faultproxy.Rule{Command: c.command, Collection: c.coll, Fault: c.fault, Skip: c.skip, Times: 2})
	c1, c2, c3, c4 := customer(1), customer(2), customer(3), customer(4)
	payAll := func(eng *booking.Bookings, u *core.User) {
		list, err := r.store.ListBookings(ctx, core.BookingFilter{UserID: u.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, bk := range list {
			_, _, err := eng.Pay(ctx, u, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, "")
			checkErr(t, "pay", err)
		}
	}
	// c1 books A1 on the faulty replica, and again if that failed; then pays every booking it
	// can find, on both replicas (a client that retried, and a client that lists its bookings).
	for range 2 {
		_, err := r.a.Book(ctx, c1, r.req(0, "A1"))
		checkErr(t, "book", err)
		if err == nil {
			break
		}
	}
	payAll(r.a, c1)
	payAll(r.b, c1)
	// c2 wants A1 too, on the healthy replica.
	_, err := r.b.Book(ctx, c2, r.req(0, "A1"))
	checkErr(t, "book", err)
	payAll(r.b, c2)
	// c3 books A2 and cancels on the faulty replica; c4 then books it on the other and pays.
	if bk, err := r.a.Book(ctx, c3, r.req(0, "A2")); err == nil {
		_, err := r.a.Cancel(ctx, c3, bk.ID)
		checkErr(t, "cancel", err)
	} else {
		checkErr(t, "book", err)
	}
	_, err = r.b.Book(ctx, c4, r.req(0, "A2"))
	checkErr(t, "book", err)
	payAll(r.a, c4)
	// c3 books A3 and lets it expire; the faulty replica's expirer meets it; c4 books A3.
	if _, err := r.b.Book(ctx, c3, r.req(0, "A3")); err != nil {
		checkErr(t, "book", err)
	}
	// The expirer releases it, c4 books the seat before the clear (meeting the old hold
	// itself), and the expirer clears what is left.
	r.clock.Advance(2 * time.Minute)
	if _, err := r.a.ExpireDue(ctx); err != nil {
		checkErr(t, "expire", err)
	}
	_, err = r.a.Book(ctx, c4, r.req(0, "A3"))
	checkErr(t, "book", err)
	for range 3 {
		n, err := r.a.ExpireDue(ctx)
		if err != nil {
			checkErr(t, "expire", err)
			break
		}
		if n == 0 {
			break
		}
	}
	payAll(r.a, c4)
	payAll(r.b, c1)
	if rule.Fired() == 0 && c.skip == 0 {
		t.Fatalf("the fault never fired: the case tests nothing")
	}

	// The faults stop; every hold ends; both expirers run until nothing is due.
	r.proxy.Clear()
	r.a.Settled()
	r.b.Settled()
	r.clock.Advance(2 * time.Minute)
	// A step may still fail on a connection the faults broke (the driver finds out on its
	// next use): the expirer retries what failed at its next step, as it would in service.
	for _, eng := range []*booking.Bookings{r.a, r.b, r.a} {
		var err error
		for range 10 {
			var n int
			if n, err = eng.ExpireDue(ctx); err == nil && n == 0 {
				break
			}
		}
		if err != nil {
			t.Fatalf("expire after the faults, ten steps on: %v", err)
		}
		eng.Settled()
	}
	checkSold(t, r.rig)
}

// checkErr accepts the answers a faulty database may cause, and fails on any other.
func checkErr(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || errs.Is(err, errs.Unavailable) || errs.Is(err, errs.Conflict) || errs.Is(err, errs.Gone) {
		return
	}
	t.Errorf("%s: %v", what, err)
}

// checkSold asserts the invariants after the dust settles: no seat in two paid bookings, no
// booking paid by two payments, every paid booking holding all its seats, and no hold left on a
// seat that is not sold.
func checkSold(t *testing.T, r *rig) {
	t.Helper()
	ctx := context.Background()
	bookings, err := r.store.ListBookings(ctx, core.BookingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	holds, err := r.store.ShowHolds(ctx, r.show.ID)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]string{} // seat -> booking
	for _, h := range holds {
		if other, ok := held[h.Seat]; ok {
			t.Fatalf("seat %s held twice: %s and %s", h.Seat, other, h.BookingID)
		}
		held[h.Seat] = h.BookingID
	}
	ids := make([]string, len(bookings))
	for i, bk := range bookings {
		ids[i] = bk.ID
	}
	outcomes, err := r.store.Outcomes(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	soldTo := map[string]string{}
	for _, bk := range bookings {
		o, ok := outcomes[bk.ID]
		if !ok {
			t.Errorf("booking %s is undecided after every hold ended and the expirer ran", bk.ID)
			continue
		}
		if o.Status != core.BookingPaid {
			continue
		}
		for _, s := range bk.Seats {
			if other, ok := soldTo[s]; ok {
				t.Fatalf("seat %s sold twice: bookings %s and %s", s, other, bk.ID)
			}
			soldTo[s] = bk.ID
			if held[s] != bk.ID {
				t.Fatalf("paid booking %s does not hold its seat %s (held by %q)", bk.ID, s, held[s])
			}
		}
	}
	for s, id := range held {
		if soldTo[s] != id {
			t.Errorf("seat %s still held by %s, which is not paid", s, id)
		}
	}
	payments, err := r.store.ListPayments(ctx, core.PaymentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	paidBy := map[string][]string{}
	for _, p := range payments {
		if o, ok := outcomes[p.BookingID]; ok && o.Status == core.BookingPaid && o.PaymentID == p.ID {
			paidBy[p.BookingID] = append(paidBy[p.BookingID], p.ID)
		}
	}
	for id, ps := range paidBy {
		if len(ps) != 1 {
			t.Fatalf("booking %s paid by %d payments", id, len(ps))
		}
	}
	if len(soldTo) > r.show.NoOfSeats {
		t.Fatalf("%d seats sold of %d", len(soldTo), r.show.NoOfSeats)
	}
	// Every outcome marked paid names a payment that exists.
	for id, o := range outcomes {
		if o.Status == core.BookingPaid && !slices.ContainsFunc(payments, func(p core.Payment) bool { return p.ID == o.PaymentID }) {
			t.Fatalf("booking %s paid by payment %s, which does not exist", id, o.PaymentID)
		}
	}
}

// TestLostBookingReplyIsCancelled: the booking's insert lands but its reply is lost. The booking
// is decided CANCELLED before its seat is released, so the stored booking (which its customer
// finds in the list) can never be paid, and the seat goes to the next customer.
func TestLostBookingReplyIsCancelled(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t, newShow(4, 4))
	ctx := context.Background()
	r.proxy.Add(&faultproxy.Rule{Command: "insert", Collection: mongostore.BookingsCollection, Fault: faultproxy.DropReply, Times: 1})
	c1 := customer(1)
	if _, err := r.a.Book(ctx, c1, r.req(0, "A1")); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("book with its reply lost: %v; want unavailable", err)
	}
	list, err := r.store.ListBookings(ctx, core.BookingFilter{UserID: c1.ID})
	if err != nil || len(list) != 1 {
		t.Fatalf("the booking should have landed: %v, %v", list, err)
	}
	o, err := r.store.Outcome(ctx, list[0].ID)
	if err != nil || o == nil || o.Status != core.BookingCancelled {
		t.Fatalf("outcome of the lost booking: %+v, %v; want CANCELLED", o, err)
	}
	if _, _, err := r.b.Pay(ctx, c1, booking.PaymentRequest{BookingID: list[0].ID, Amount: list[0].TotalCost}, ""); !errs.Is(err, errs.Conflict) {
		t.Fatalf("paying the lost booking: %v; want conflict", err)
	}
	c2 := customer(2)
	bk, err := r.b.Book(ctx, c2, r.req(0, "A1"))
	if err != nil {
		t.Fatalf("A1 after the lost booking: %v", err)
	}
	if _, _, err := r.b.Pay(ctx, c2, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, ""); err != nil {
		t.Fatal(err)
	}
}

// TestPaymentNeedsEverySeat: a booking whose holds are gone (written by an older version that
// released them after a failed insert, or lost by the store) cannot be paid: the payment fails,
// the booking is cancelled, and its seats stay free for others.
func TestPaymentNeedsEverySeat(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShow(4, 4))
	ctx := context.Background()
	c1 := customer(1)
	bk, err := r.eng.Book(ctx, c1, r.req(0, "A1", "A2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.ReleaseHolds(ctx, r.show.ID, bk.ID, []string{"A2"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = r.eng.Pay(ctx, c1, booking.PaymentRequest{BookingID: bk.ID, Amount: bk.TotalCost}, "")
	if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "A2") {
		t.Fatalf("paying a booking without A2: %v; want a conflict naming A2", err)
	}
	if o, _ := r.store.Outcome(ctx, bk.ID); o == nil || o.Status != core.BookingCancelled {
		t.Fatalf("outcome %+v; want CANCELLED", o)
	}
	r.eng.Settled()
	if held := r.checkSeats(t); held != 0 {
		t.Fatalf("%d seats still held by the cancelled booking", held)
	}
	bk2, err := r.eng.Book(ctx, customer(2), r.req(0, "A1", "A2"))
	if err != nil {
		t.Fatalf("A1, A2 after the cancellation: %v", err)
	}
	_ = bk2
}
