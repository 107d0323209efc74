package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

const replayHeader = "Idempotent-Replayed"

// retryUntil sends r until it answers want (at most 20 times, 50 ms apart: the room freed by a
// cancellation is released in the background). Every answer on the way must be a fresh one:
// a refusal that may pass later is never replayed.
func (s *service) retryUntil(r req, want int) response {
	s.t.Helper()
	var got response
	for range 20 {
		got = s.do(r)
		if got.header.Get(replayHeader) == "true" {
			s.t.Fatalf("%s %s: a stored %d was replayed: %s", r.method, r.path, got.status, got.raw)
		}
		if got.status == want {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s %s: %d, want %d: %s", r.method, r.path, got.status, want, got.raw)
	return got
}

// expectReplay sends r and checks that it gets the first answer again, marked replayed.
func (s *service) expectReplay(r req, first response) {
	s.t.Helper()
	got := s.do(r)
	if got.status != first.status || got.header.Get(replayHeader) != "true" || string(got.env.Data) != string(first.env.Data) {
		s.t.Fatalf("%s %s: %d (replayed %q) %s; want the first answer %d %s again, replayed", r.method, r.path,
			got.status, got.header.Get(replayHeader), got.raw, first.status, first.raw)
	}
}

// TestIdempotencyKeyRetriesRefusals: an Idempotency-Key keeps only answers that cannot change
// for the same body. A booking refused 429 at the fair-use bound, 409 for want of seats, or 404
// for want of a show is not kept: once the customer cancelled a booking, another customer's
// booking was cancelled, or the show was created, the same key and body book (201, not a
// replay), and that 201 is kept. A payment of a wrong amount (400, a FAILED payment recorded)
// is kept: retried, it is replayed and recorded once.
func TestIdempotencyKeyRetriesRefusals(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.BookingConfig.MaxOpenSeatsPerUser = 2 })
	book := func(tok, key string, body map[string]any) req {
		return req{method: "POST", path: base + "/bookings", token: tok, body: body, header: map[string]string{"Idempotency-Key": key}}
	}
	cancel := func(tok, id string) {
		t.Helper()
		s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + id, token: tok, body: map[string]string{"status": "CANCELLED"}}), 200)
	}

	// 429 at the fair-use bound, then room freed by a cancellation.
	f := s.newShow(10, 100)
	tok, _ := s.customer()
	held := id(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201))
	r := book(tok, "fair-use", f.booking(1))
	s.expect(s.do(r), 429)
	if again := s.do(r); again.status != 429 || again.header.Get(replayHeader) == "true" {
		t.Fatalf("the 429 retried before any room was freed: %d, replayed %q", again.status, again.header.Get(replayHeader))
	}
	cancel(tok, held)
	first := s.retryUntil(r, 201)
	s.expectReplay(r, first)

	// 409: no seats left, until another customer cancels.
	g := s.newShow(2, 100)
	holder, _ := s.customer()
	taken := id(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: holder, body: g.booking(2)}), 201))
	waiter, _ := s.customer()
	r = book(waiter, "no-seats", g.booking(1))
	s.expect(s.do(r), 409)
	cancel(holder, taken)
	first = s.retryUntil(r, 201)
	s.expectReplay(r, first)

	// 404: no show at that timing, until an admin creates it.
	later := map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": "2031-01-01T20:00:00Z", "noOfSeats": 1}
	other, _ := s.customer()
	r = book(other, "no-show-yet", later)
	s.expect(s.do(r), 404)
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: f.admin, body: map[string]any{
		"theatreId": f.theatreID, "movieId": f.movieID, "timing": "2031-01-01T20:00:00Z", "noOfSeats": 5, "price": 80}}), 201)
	first = s.retryUntil(r, 201)
	s.expectReplay(r, first)
	bk := bookingOf(t, first)

	// A wrong amount: 400 with the FAILED payment, replayed, recorded once.
	pay := req{method: "POST", path: base + "/payments", token: other, body: map[string]any{"bookingId": bk.ID, "amount": bk.TotalCost - 1},
		header: map[string]string{"Idempotency-Key": "wrong-amount"}}
	failed := s.expect(s.do(pay), 400)
	if p := paymentOf(t, failed); p.Status != core.PaymentFailed {
		t.Fatalf("wrong amount: %s", failed.raw)
	}
	s.expectReplay(pay, failed)
	pays := data[[]core.Payment](t, s.expect(s.do(req{method: "GET", path: base + "/payments", token: other}), 200))
	if len(pays) != 1 || pays[0].Status != core.PaymentFailed {
		t.Fatalf("payments after a replayed wrong amount: %+v; want one FAILED", pays)
	}
	// The right amount under another key pays, and its 200 is kept.
	pay.body, pay.header = map[string]any{"bookingId": bk.ID, "amount": bk.TotalCost}, map[string]string{"Idempotency-Key": "right-amount"}
	paid := s.expect(s.do(pay), 200)
	s.expectReplay(pay, paid)
	t.Log(fmt.Sprintf("booking %s paid after a replayed wrong amount", bk.ID))
}
