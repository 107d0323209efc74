package booking_test

import (
	"context"
	"testing"

	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// TestFaultsListEachOnce fails the list entries' inserts (and the bookings' and payments'
// own) of one replica in turn, the reply dropped after the write landed or the connection cut
// before it, while customers book (again, when a booking fails), pay what their lists show
// on both replicas, and pay wrongly once. Whatever the fault: every booking stored appears
// exactly once in its customer's list and once in the list of all, paid or not, and the same
// for payments; no list shows anything else.
func TestFaultsListEachOnce(t *testing.T) {
	t.Parallel()
	var cases []faultCase
	for _, coll := range []string{mongostore.ListEntriesCollection, mongostore.BookingsCollection, mongostore.PaymentsCollection} {
		for _, f := range []faultproxy.Fault{faultproxy.DropReply, faultproxy.CutBefore} {
			for skip := range 3 {
				cases = append(cases, faultCase{command: "insert", coll: coll, fault: f, skip: skip})
			}
		}
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			runListFaultCase(t, c)
		})
	}
}

func runListFaultCase(t *testing.T, c faultCase) {
	r := newFaultRig(t, newShow(16, 4))
	ctx := context.Background()
	if _, err := r.store.BackfillLists(ctx); err != nil { // lists from the streams from now on
		t.Fatal(err)
	}
	rule := r.proxy.Add(&faultproxy.Rule{Command: c.command, Collection: c.coll, Fault: c.fault, Skip: c.skip, Times: 2})
	users := []*core.User{customer(1), customer(2), customer(3)}
	for i, u := range users {
		// Two bookings on the faulty replica (each tried again once), one on the healthy one.
		for range 2 {
			for range 2 {
				_, err := r.a.Book(ctx, u, r.req(1))
				checkErr(t, "book", err)
				if err == nil {
					break
				}
			}
		}
		_, err := r.b.Book(ctx, u, r.req(1))
		checkErr(t, "book", err)
		// Pay what the list shows, on the faulty replica, then on the other; once wrongly.
		for j, eng := range []*booking.Bookings{r.a, r.b} {
			list, _, err := eng.List(ctx, u, false, core.ListPage{Limit: 50})
			checkErr(t, "list", err)
			for k, bk := range list {
				amount := bk.TotalCost
				if i == 0 && j == 0 && k == 0 {
					amount++
				}
				_, _, err := eng.Pay(ctx, u, booking.PaymentRequest{BookingID: bk.ID, Amount: amount}, "")
				if err != nil && amount != bk.TotalCost {
					continue // the wrong amount's FAILED payment
				}
				checkErr(t, "pay", err)
			}
		}
	}
	if rule.Fired() == 0 && c.skip == 0 {
		t.Fatalf("the fault never fired: the case tests nothing")
	}
	r.proxy.Clear()
	r.a.Settled()
	r.b.Settled()
	checkListed(t, r.rig, users)
}

// checkListed asserts that each stored booking and payment is in its customer's list and in
// the list of all exactly once, and nothing else is, paging 2 at a time from a process that
// has seen none of them.
func checkListed(t *testing.T, r *rig, users []*core.User) {
	t.Helper()
	ctx := context.Background()
	store := newStore(r.db)
	bookings, err := r.store.ListBookings(ctx, core.BookingFilter{}) // the truth: a scan
	if err != nil {
		t.Fatal(err)
	}
	payments, err := r.store.ListPayments(ctx, core.PaymentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]bool{}
	for _, bk := range bookings {
		if o, err := r.store.Outcome(ctx, bk.ID); err == nil && o != nil && o.Status == core.BookingPaid {
			outcomes[bk.ID] = true
		}
	}
	if len(outcomes) == 0 {
		t.Fatal("no booking was paid: the case tests nothing")
	}
	want := map[string][]string{} // list -> ids
	for _, bk := range bookings {
		want["b:"+bk.UserID] = append(want["b:"+bk.UserID], bk.ID)
		want["b:"] = append(want["b:"], bk.ID)
	}
	for _, p := range payments {
		want["p:"+p.UserID] = append(want["p:"+p.UserID], p.ID)
		want["p:"] = append(want["p:"], p.ID)
	}
	lists := []string{"b:", "p:"}
	for _, u := range users {
		lists = append(lists, "b:"+u.ID, "p:"+u.ID)
	}
	for _, l := range lists {
		var got []string
		before := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatalf("%s: more than 100 pages", l)
			}
			var next string
			if l[0] == 'b' {
				var page []core.Booking
				page, next, err = store.PageBookings(ctx, core.BookingFilter{UserID: l[2:], Limit: 2, Before: before})
				for _, bk := range page {
					got = append(got, bk.ID)
				}
			} else {
				var page []core.Payment
				page, next, err = store.PagePayments(ctx, core.PaymentFilter{UserID: l[2:], Limit: 2, Before: before})
				for _, p := range page {
					got = append(got, p.ID)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if next == "" {
				break
			}
			before = next
		}
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for _, id := range want[l] {
			switch n := seen[id]; {
			case n == 0 && outcomes[id]:
				t.Errorf("list %s: paid booking %s is not listed", l, id)
			case n == 0:
				t.Errorf("list %s: %s is not listed", l, id)
			case n > 1:
				t.Errorf("list %s: %s listed %d times", l, id, n)
			}
			delete(seen, id)
		}
		for id := range seen {
			t.Errorf("list %s: %s listed, but not stored", l, id)
		}
	}
}
