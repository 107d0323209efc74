package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// TestFreeShowBookedAtOnce: a booking of a show whose price is 0 is confirmed at once, as a box
// office confirms a free screening: 201 SUCCESSFULL, its seats sold, a payment of 0 that
// succeeded, and its confirmation email sent once (with the booking request's trace). Paying
// it is 409. A booking of a priced show is unchanged: IN_PROCESS until paid, no email before.
func TestFreeShowBookedAtOnce(t *testing.T) {
	t.Parallel()
	n := newNotiService(t)
	n.start()
	s := startPayRelaying(t, n)
	f := s.newShow(10, 0)
	nm := s.showNames(f)
	tok, u := s.customer()
	const traceID = "5bf92f3577b34da6a3ce929d0e0e4737"
	r := s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2),
		header: map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b8-01"}}), 201)
	bk := bookingOf(t, r)
	if bk.Status != core.BookingPaid || bk.TotalCost != 0 || len(bk.Seats) != 2 || bk.PaymentID == "" {
		t.Fatalf("free booking answered %s", r.raw)
	}
	if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: tok}), 200)); got.Status != core.BookingPaid {
		t.Fatalf("GET /bookings/:id: %s", got.Status)
	}
	m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200))
	if len(m.Sold) != 2 || len(m.Held) != 0 || !strings.Contains(strings.Join(m.Sold, ","), bk.Seats[0]) {
		t.Fatalf("seat map: sold %v, held %v; want the booking's seats %v sold", m.Sold, m.Held, bk.Seats)
	}
	var payments []core.Payment
	if err := json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/payments", token: tok}), 200).env.Data, &payments); err != nil {
		t.Fatal(err)
	}
	if len(payments) != 1 || payments[0].Amount != 0 || payments[0].Status != core.PaymentSuccess ||
		payments[0].BookingID != bk.ID || payments[0].ID != bk.PaymentID {
		t.Fatalf("GET /payments: %+v; want one payment of 0, SUCCESS, for %s", payments, bk.ID)
	}
	if p := paymentOf(t, s.expect(s.do(req{method: "GET", path: base + "/payments/" + bk.PaymentID, token: tok}), 200)); p.Status != core.PaymentSuccess {
		t.Fatalf("GET /payments/:id: %+v", p)
	}
	// Paying it: 409 already paid, with the amount it costs or any other.
	for _, amount := range []float64{0, 1} {
		p := s.expect(s.pay(tok, bk.ID, amount, nil), 409)
		if !strings.Contains(p.errorText(), "already paid") {
			t.Fatalf("paying a free booking (%v): %s", amount, p.raw)
		}
	}
	// Cancelling it: 409, as for any paid booking.
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: tok, body: map[string]string{"status": "CANCELLED"}}), 409)

	var got []ticket
	eventually(t, 15*time.Second, "the confirmation ticket is created", func() bool {
		got = ticketsFor(n, u.Email)
		return len(got) >= 1
	})
	time.Sleep(3 * payRelayInterval) // more relay passes: nothing else may come
	if got = ticketsFor(n, u.Email); len(got) != 1 {
		t.Fatalf("%d tickets for %s, want 1", len(got), u.Email)
	}
	checkConfirmation(t, got[0], u.Email, bk, nm)
	var tk ticket
	if err := json.Unmarshal(n.get("/"+got[0].ID).Data, &tk); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tk.TraceParent, traceID) {
		t.Fatalf("ticket traceparent %q, want the booking request's trace %s", tk.TraceParent, traceID)
	}

	// A priced show: unchanged.
	g := s.newShow(10, 50)
	priced := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: g.booking(2)}), 201))
	if priced.Status != core.BookingInProcess || priced.TotalCost != 100 || priced.PaymentID != "" {
		t.Fatalf("priced booking: %+v", priced)
	}
	if m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + g.showID + "/seats"}), 200)); len(m.Held) != 2 || len(m.Sold) != 0 {
		t.Fatalf("priced show's seat map: held %v, sold %v", m.Held, m.Sold)
	}
	s.expect(s.pay(tok, priced.ID, 0, nil), 400)
	time.Sleep(3 * payRelayInterval)
	if got = ticketsFor(n, u.Email); len(got) != 1 {
		t.Fatalf("%d tickets before the priced booking is paid, want 1", len(got))
	}
	s.expect(s.pay(tok, priced.ID, 100, nil), 200)
	eventually(t, 15*time.Second, "the priced booking's confirmation", func() bool { return len(ticketsFor(n, u.Email)) == 2 })
}
