package booking_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// failingOutbox refuses every email.
type failingOutbox struct{}

func (failingOutbox) Enqueue(context.Context, core.Email) error {
	return errs.E(errs.Unavailable, "outbox down")
}

// TestFreeBookingConfirmedAtOnce: a booking of a show whose price is 0 is SUCCESSFULL when
// booked, decided by its outcome with a payment of 0 that succeeded, its seats sold and its
// confirmation owed; paying it is a conflict. A show with a price keeps IN_PROCESS.
func TestFreeBookingConfirmedAtOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, newShowPriced(4, 4, 0))
	ctx := context.Background()
	c1 := customer(1)
	bk, err := r.eng.Book(ctx, c1, r.req(0, "A1", "A2"))
	if err != nil {
		t.Fatal(err)
	}
	if bk.Status != core.BookingPaid || bk.TotalCost != 0 || bk.PaymentID == "" {
		t.Fatalf("free booking %+v", bk)
	}
	o, err := r.store.Outcome(ctx, bk.ID)
	if err != nil || o == nil || o.Status != core.BookingPaid || o.PaymentID != bk.PaymentID {
		t.Fatalf("outcome %+v %v", o, err)
	}
	p, err := r.eng.GetPayment(ctx, c1, bk.PaymentID)
	if err != nil || p.Amount != 0 || p.Status != core.PaymentSuccess || p.BookingID != bk.ID {
		t.Fatalf("payment %+v %v", p, err)
	}
	if e, ok := r.mail.emails[booking.PaidEmailKind+":"+bk.ID]; !ok || e.Ref != bk.ID || e.Recipients[0] != c1.Email {
		t.Fatalf("confirmation owed: %+v (%v)", e, ok)
	}
	for _, amount := range []float64{0, 1} {
		if _, _, err := r.eng.Pay(ctx, c1, booking.PaymentRequest{BookingID: bk.ID, Amount: amount}, ""); !errs.Is(err, errs.Conflict) {
			t.Fatalf("paying a free booking (%v): %v; want conflict", amount, err)
		}
	}
	m, err := r.eng.SeatMap(ctx, r.show.ID)
	if err != nil || len(m.Sold) != 2 || len(m.Held) != 0 {
		t.Fatalf("seat map %+v %v", m, err)
	}
	r.eng.Settled()
	checkSold(t, r)

	pr := newRig(t, newShowPriced(4, 4, 10))
	bk, err = pr.eng.Book(ctx, c1, pr.req(0, "A1"))
	if err != nil || bk.Status != core.BookingInProcess || bk.TotalCost != 10 || len(pr.mail.emails) != 0 {
		t.Fatalf("priced booking %+v %v (emails %d)", bk, err, len(pr.mail.emails))
	}
}

// TestFreeBookingEndsDecided fails each write of a free booking's confirmation in turn (the
// payment, the outcome: the reply dropped after the write landed, or the connection cut
// before it; and the outbox refusing the email). Whatever fails, the booking Book wrote ends
// decided at once: SUCCESSFULL if it answered it, else CANCELLED with its seats back on sale
// (the next customer books them without waiting for the expirer); never a free booking
// holding seats unpaid.
func TestFreeBookingEndsDecided(t *testing.T) {
	t.Parallel()
	type fcase struct {
		coll   string
		fault  faultproxy.Fault
		outbox bool
	}
	var cases []fcase
	for _, coll := range []string{mongostore.PaymentsCollection, mongostore.OutcomesCollection} {
		for _, f := range []faultproxy.Fault{faultproxy.DropReply, faultproxy.CutBefore} {
			cases = append(cases, fcase{coll: coll, fault: f})
		}
	}
	cases = append(cases, fcase{outbox: true})
	for _, c := range cases {
		name := fmt.Sprintf("insert_%s_%s", c.coll, c.fault)
		if c.outbox {
			name = "outbox_refuses"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t, newShowPriced(4, 4, 0))
			ctx := context.Background()
			var rule *faultproxy.Rule
			if c.outbox {
				r.a = r.engineWith(newStore(r.aDB), failingOutbox{})
			} else {
				rule = r.proxy.Add(&faultproxy.Rule{Command: "insert", Collection: c.coll, Fault: c.fault, Times: 1})
			}
			c1 := customer(1)
			bk, err := r.a.Book(ctx, c1, r.req(0, "A1", "A2"))
			if rule != nil && rule.Fired() == 0 {
				t.Fatal("the fault never fired: the case tests nothing")
			}
			checkErr(t, "book", err)
			r.a.Settled()
			list, lerr := r.store.ListBookings(ctx, core.BookingFilter{UserID: c1.ID})
			if lerr != nil || len(list) != 1 {
				t.Fatalf("the booking should have been written: %v %v", list, lerr)
			}
			o, oerr := r.store.Outcome(ctx, list[0].ID)
			if oerr != nil || o == nil {
				t.Fatalf("the free booking is undecided after Book answered (%v): %+v %v", err, o, oerr)
			}
			switch {
			case err == nil && (bk.Status != core.BookingPaid || o.Status != core.BookingPaid || o.PaymentID != bk.PaymentID):
				t.Fatalf("answered %+v, outcome %+v; want both SUCCESSFULL by one payment", bk, o)
			case err != nil && o.Status != core.BookingCancelled:
				t.Fatalf("answered %v, outcome %+v; want CANCELLED", err, o)
			}
			t.Logf("answered %v; outcome %s", err, o.Status)
			// The seats: sold to it, or back on sale at once.
			c2 := customer(2)
			_, err2 := r.b.Book(ctx, c2, r.req(0, "A1", "A2"))
			if (err == nil) != errs.Is(err2, errs.Conflict) {
				t.Fatalf("another customer's booking of the same seats: %v (the first answered %v)", err2, err)
			}
			r.a.Settled()
			r.b.Settled()
			checkSold(t, r.rig)
		})
	}
}
