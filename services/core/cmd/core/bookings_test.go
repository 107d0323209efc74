package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// showFixture is a movie, a theatre running it and a show, created over HTTP by the admin.
type showFixture struct {
	admin                      string // admin token
	theatreID, movieID, showID string
	timing                     string
	seats                      int
	price                      float64
}

var fixtureSeq atomic.Int64

func (s *service) newShow(seats int, price float64) showFixture {
	s.t.Helper()
	admin := s.token(adminEmail, adminPassword)
	n := fixtureSeq.Add(1)
	mv := s.expect(s.do(req{method: "POST", path: base + "/movies", token: admin, body: map[string]any{
		"name": fmt.Sprintf("Movie %d", n), "description": "A film", "casts": []string{"A", "B"},
		"trailerUrl": "https://example.com/trailer", "language": []string{"English"}, "releaseDate": "2024-01-15",
		"director": "D", "releaseStatus": "RELEASED"}}), 201)
	th := s.expect(s.do(req{method: "POST", path: base + "/theatres", token: admin, body: map[string]any{
		"name": fmt.Sprintf("Theatre %d", n), "description": "A cinema", "city": "Pune", "pinCode": 411001,
		"address": "1 Main Road"}}), 201)
	f := showFixture{admin: admin, movieID: id(s.t, mv), theatreID: id(s.t, th), seats: seats, price: price,
		timing: fmt.Sprintf("2030-06-%02dT18:30:00Z", 1+n%28)}
	s.expect(s.do(req{method: "PATCH", path: base + "/theatres/" + f.theatreID + "/movies", token: admin,
		body: map[string]any{"movieIds": []string{f.movieID}, "insert": true}}), 200)
	sh := s.expect(s.do(req{method: "POST", path: base + "/shows", token: admin, body: map[string]any{
		"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": seats, "price": price}}), 201)
	f.showID = id(s.t, sh)
	return f
}

func id(t testing.TB, r response) string {
	t.Helper()
	var v struct {
		ID string `json:"_id"`
	}
	if err := json.Unmarshal(r.env.Data, &v); err != nil || v.ID == "" {
		t.Fatalf("no _id in %s", r.raw)
	}
	return v.ID
}

func (f showFixture) booking(n int, seats ...string) map[string]any {
	b := map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing}
	if n > 0 {
		b["noOfSeats"] = n
	}
	if len(seats) > 0 {
		b["seats"] = seats
	}
	return b
}

// customer signs up a new customer and returns its token.
func (s *service) customer() (token string, u core.User) {
	s.t.Helper()
	email := fmt.Sprintf("cust%d-%d@example.com", fixtureSeq.Add(1), time.Now().UnixNano()%1e6)
	u = s.expect(s.signUp("Customer", email, "customer-pass", ""), 201).user()
	return s.token(email, "customer-pass"), u
}

func bookingOf(t testing.TB, r response) core.Booking {
	t.Helper()
	var b core.Booking
	if err := json.Unmarshal(r.env.Data, &b); err != nil {
		t.Fatalf("booking: %v in %s", err, r.raw)
	}
	return b
}

func seatMap(t testing.TB, r response) core.SeatMap {
	t.Helper()
	var m core.SeatMap
	if err := json.Unmarshal(r.env.Data, &m); err != nil {
		t.Fatalf("seat map: %v in %s", err, r.raw)
	}
	return m
}

func TestBookAndPayOverHTTP(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(20, 150)
	tok, u := s.customer()
	r := s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201)
	bk := bookingOf(t, r)
	if bk.Status != core.BookingInProcess || bk.TotalCost != 300 || len(bk.Seats) != 2 || bk.UserID != u.ID ||
		bk.TheatreID != f.theatreID || bk.MovieID != f.movieID || bk.Timing != f.timing || bk.NoOfSeats != 2 {
		t.Fatalf("booking %s", r.raw)
	}
	if time.Until(bk.ExpiresAt) < 4*time.Minute {
		t.Fatalf("hold ends %v: default TTL is 5m", bk.ExpiresAt)
	}
	m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200))
	if !slices.Equal(m.Held, bk.Seats) || len(m.Free) != 18 || len(m.Sold) != 0 {
		t.Fatalf("seat map %+v", m)
	}
	// Wrong amount: 400 (the original's status, never 402), a FAILED payment in data, the booking still open.
	r = s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bk.ID, "amount": 299}}), 400)
	var failed core.Payment
	_ = json.Unmarshal(r.env.Data, &failed)
	if failed.Status != core.PaymentFailed || failed.BookingID != bk.ID || r.env.Success {
		t.Fatalf("failed payment %s", r.raw)
	}
	// ... and recorded: the customer reads it back.
	r = s.expect(s.do(req{method: "GET", path: base + "/payments/" + failed.ID, token: tok}), 200)
	var stored core.Payment
	if err := json.Unmarshal(r.env.Data, &stored); err != nil || stored.ID != failed.ID || stored.Status != core.PaymentFailed {
		t.Fatalf("stored failed payment %s", r.raw)
	}
	r = s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bk.ID, "amount": 300}}), 200)
	var paid struct {
		core.Booking
		Payment core.Payment `json:"payment"`
	}
	if err := json.Unmarshal(r.env.Data, &paid); err != nil || paid.Status != core.BookingPaid ||
		paid.Payment.Status != core.PaymentSuccess || paid.Payment.Amount != 300 || paid.PaymentID != paid.Payment.ID {
		t.Fatalf("paid %s", r.raw)
	}
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bk.ID, "amount": 300}}), 409)
	if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: tok}), 200)); got.Status != core.BookingPaid {
		t.Fatalf("status %s", got.Status)
	}
	var list []core.Booking
	_ = json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/bookings", token: tok}), 200).env.Data, &list)
	if len(list) != 1 || list[0].ID != bk.ID || list[0].Status != core.BookingPaid {
		t.Fatalf("my bookings %+v", list)
	}
	var pays []core.Payment
	_ = json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/payments", token: tok}), 200).env.Data, &pays)
	if len(pays) != 2 {
		t.Fatalf("my payments %+v", pays)
	}
	p := s.expect(s.do(req{method: "GET", path: base + "/payments/" + paid.Payment.ID, token: tok}), 200)
	if !json.Valid(p.env.Data) || !slices.Contains([]string{string(core.PaymentSuccess)}, string(paymentOf(t, p).Status)) {
		t.Fatalf("payment %s", p.raw)
	}
	m = seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200))
	if !slices.Equal(m.Sold, bk.Seats) || len(m.Held) != 0 {
		t.Fatalf("seat map after payment %+v", m)
	}
	// Named seats, taken: 409 with the seats still free.
	r = s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(0, bk.Seats[0], "A1")}), 409)
	var free struct {
		FreeSeats []string `json:"freeSeats"`
	}
	if err := json.Unmarshal(r.env.Data, &free); err != nil || len(free.FreeSeats) != 18 || slices.Contains(free.FreeSeats, bk.Seats[0]) {
		t.Fatalf("conflict data %s", r.raw)
	}
}

func paymentOf(t testing.TB, r response) core.Payment {
	t.Helper()
	var p core.Payment
	if err := json.Unmarshal(r.env.Data, &p); err != nil {
		t.Fatalf("payment: %v", err)
	}
	return p
}

func TestBookingAuthorization(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(10, 100)
	owner, _ := s.customer()
	other, _ := s.customer()
	bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: owner, body: f.booking(1)}), 201))
	// Nobody signed in.
	for _, r := range []req{
		{method: "POST", path: base + "/bookings", body: f.booking(1)},
		{method: "GET", path: base + "/bookings"},
		{method: "GET", path: base + "/bookings/" + bk.ID},
		{method: "PATCH", path: base + "/bookings/" + bk.ID, body: map[string]string{"status": "CANCELLED"}},
		{method: "POST", path: base + "/payments", body: map[string]any{"bookingId": bk.ID, "amount": 100}},
		{method: "GET", path: base + "/payments"},
	} {
		s.expect(s.do(r), 401)
	}
	// Another customer: refused, nothing changed.
	s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: other}), 403)
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: other, body: map[string]string{"status": "CANCELLED"}}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: other, body: map[string]any{"bookingId": bk.ID, "amount": 100}}), 403)
	s.expect(s.do(req{method: "GET", path: base + "/bookings/all", token: other}), 403)
	if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: owner}), 200)); got.Status != core.BookingInProcess {
		t.Fatalf("another's attempts changed the booking: %s", got.Status)
	}
	// Mass assignment and status changes other than a cancel.
	r := s.expect(s.do(req{method: "POST", path: base + "/bookings", token: owner, body: map[string]any{
		"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": 1, "totalCost": 0, "status": "SUCCESSFULL", "userId": "x"}}), 400)
	if fl := r.fields(); fl["totalCost"] == "" || fl["status"] == "" || fl["userId"] == "" {
		t.Fatalf("mass assignment: %s", r.raw)
	}
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: owner, body: map[string]string{"status": "SUCCESSFULL"}}), 403)
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: owner, body: map[string]any{"status": "CANCELLED", "totalCost": 1}}), 400)
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: f.admin, body: map[string]string{"status": "SUCCESSFULL"}}), 403)
	// The admin reads anyone's; lists everyone's.
	s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: f.admin}), 200)
	var all []core.Booking
	_ = json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/bookings/all", token: f.admin}), 200).env.Data, &all)
	if len(all) != 1 {
		t.Fatalf("all bookings %d", len(all))
	}
	// The owner cancels: the seat is back on sale at once.
	got := bookingOf(t, s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: owner, body: map[string]string{"status": "CANCELLED"}}), 200))
	if got.Status != core.BookingCancelled {
		t.Fatalf("cancel: %s", got.Status)
	}
	if m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200)); len(m.Free) != 10 {
		t.Fatalf("seats after cancel %+v", m)
	}
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: owner, body: map[string]any{"bookingId": bk.ID, "amount": 100}}), 409)
	// A pending CLIENT has no powers, not even to book.
	s.expect(s.signUp("Owner", "pending-client@example.com", "client-pass", core.RoleClient), 201)
	pending := s.token("pending-client@example.com", "client-pass")
	s.expect(s.do(req{method: "POST", path: base + "/bookings", token: pending, body: f.booking(1)}), 403)
}

func TestBookingValidation(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(8, 100)
	tok, _ := s.customer()
	cases := []struct {
		body   any
		status int
		field  string
		code   string // the envelope's code, when the case is about one
	}{
		{map[string]any{}, 400, "theatreId", "invalid"},
		{map[string]any{"theatreId": "x", "movieId": f.movieID, "timing": f.timing, "noOfSeats": 1}, 400, "theatreId", ""},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": 0}, 400, "noOfSeats", ""},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": 11}, 429, "", "too_many_seats"}, // MAX_SEATS_PER_BOOKING
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": "two"}, 400, "noOfSeats", ""},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "seats": []string{"Q99"}}, 400, "seats", ""},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": 2, "seats": []string{"A1"}}, 400, "noOfSeats", ""},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": "2031-01-01T00:00:00Z", "noOfSeats": 1}, 404, "", "not_found"},
		{map[string]any{"theatreId": f.theatreID, "movieId": f.movieID, "timing": f.timing, "noOfSeats": 9}, 409, "", "not_enough_seats"}, // more than the show has
		{"[1,2]", 400, "", ""},
		{"{", 400, "", ""},
	}
	for _, c := range cases {
		r := s.do(req{method: "POST", path: base + "/bookings", token: tok, body: c.body})
		if r.status != c.status || (c.field != "" && r.fields()[c.field] == "") {
			t.Errorf("%v: %d %s; want %d naming %q", c.body, r.status, r.raw, c.status, c.field)
		}
		if c.code != "" && !strings.Contains(string(r.raw), `"code":"`+c.code+`"`) {
			t.Errorf("%v: %s; want code %q", c.body, r.raw, c.code)
		}
		if r.status == 429 && r.header.Get("Retry-After") == "" {
			t.Errorf("%v: 429 without Retry-After", c.body)
		}
	}
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"bookingId": "nope", "amount": 1}, "bookingId"},
		{map[string]any{"bookingId": bson.NewObjectID().Hex(), "amount": -1}, "amount"},
		{map[string]any{"bookingId": bson.NewObjectID().Hex(), "amount": 1.005}, "amount"},
	} {
		r := s.do(req{method: "POST", path: base + "/payments", token: tok, body: c.body})
		if r.status != 400 || r.fields()[c.field] == "" {
			t.Errorf("payment %v: %d %s", c.body, r.status, r.raw)
		}
	}
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bson.NewObjectID().Hex(), "amount": 1}}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/bookings/nope", token: tok}), 400)
	s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bson.NewObjectID().Hex(), token: tok}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/payments/" + bson.NewObjectID().Hex(), token: tok}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/shows/nope/seats"}), 400)
	s.expect(s.do(req{method: "GET", path: base + "/shows/" + bson.NewObjectID().Hex() + "/seats"}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/bookings?limit=0", token: tok}), 400)
}

// TestRaceLastTenSeatsOverHTTP: 30 customers book the last 10 seats at once, then pay at once:
// exactly 10 paid, the rest 409, no 5xx.
func TestRaceLastTenSeatsOverHTTP(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(10, 120)
	tokens := make([]string, 30)
	for i := range tokens {
		tokens[i], _ = s.customer()
	}
	var wg sync.WaitGroup
	statuses := make([]int, 30)
	bookings := make([]core.Booking, 30)
	for i := range tokens {
		wg.Go(func() {
			r := s.do(req{method: "POST", path: base + "/bookings", token: tokens[i], body: f.booking(1)})
			statuses[i] = r.status
			if r.status == 201 {
				bookings[i] = bookingOf(t, r)
			}
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[201] != 10 || count[409] != 20 {
		t.Fatalf("statuses %v; want 10x201 and 20x409", count)
	}
	pay := map[int]int{}
	var mu sync.Mutex
	for i := range tokens {
		wg.Go(func() {
			bk := bookings[i]
			if bk.ID == "" {
				return
			}
			for range 2 {
				r := s.do(req{method: "POST", path: base + "/payments", token: tokens[i], body: map[string]any{"bookingId": bk.ID, "amount": bk.TotalCost}})
				mu.Lock()
				pay[r.status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if pay[200] != 10 || pay[409] != 10 || len(pay) != 2 {
		t.Fatalf("payments %v; want 10x200 and 10x409", pay)
	}
	m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200))
	if len(m.Sold) != 10 || len(m.Free) != 0 {
		t.Fatalf("seat map %+v", m)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(10, 100)
	tok, _ := s.customer()
	other, _ := s.customer()
	h := map[string]string{"Idempotency-Key": "book-1"}
	r1 := s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2), header: h}), 201)
	r2 := s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2), header: h}), 201)
	if id(t, r1) != id(t, r2) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %s vs %s", r1.raw, r2.raw)
	}
	s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(3), header: h}), 422)
	// Keys are per caller: another customer's same key is a new booking.
	if id(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: other, body: f.booking(2), header: h}), 201)) == id(t, r1) {
		t.Fatal("another caller got my booking")
	}
	if m := seatMap(t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200)); len(m.Held) != 4 {
		t.Fatalf("%d seats held; want 4 (the replay held none)", len(m.Held))
	}
	ph := map[string]string{"Idempotency-Key": "pay-1"}
	body := map[string]any{"bookingId": id(t, r1), "amount": 200}
	p1 := s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: body, header: ph}), 200)
	p2 := s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: body, header: ph}), 200)
	if string(p1.env.Data) != string(p2.env.Data) {
		t.Fatalf("payment replay differs:\n%s\n%s", p1.raw, p2.raw)
	}
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: body}), 409)
	s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1), header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}}), 400)
}

// TestTwoCoreInstances: two core processes on one database; 40 customers book one seat each
// on a 25-seat show through both: exactly 25 booked, no seat twice.
func TestTwoCoreInstances(t *testing.T) {
	t.Parallel()
	a := startService(t, nil)
	b := startService(t, func(c *Config) { c.DBURL = a.cfg.DBURL; c.AdminEmail, c.AdminPassword = "", "" })
	f := a.newShow(25, 100)
	var wg sync.WaitGroup
	var ok, conflict, other atomic.Int32
	for i := range 40 {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		tok, _ := svc.customer()
		wg.Go(func() {
			switch r := svc.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}); r.status {
			case 201:
				ok.Add(1)
			case 409:
				conflict.Add(1)
			default:
				other.Add(1)
				t.Errorf("status %d: %s", r.status, r.raw)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 25 || conflict.Load() != 15 {
		t.Fatalf("%d booked, %d conflicts; want 25 and 15", ok.Load(), conflict.Load())
	}
	holds, err := mongostore.NewBookings(a.m.DB).ShowHolds(context.Background(), f.showID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range holds {
		if seen[h.Seat] {
			t.Fatalf("seat %s held twice", h.Seat)
		}
		seen[h.Seat] = true
	}
	if len(holds) != 25 {
		t.Fatalf("%d holds", len(holds))
	}
}

// TestHoldReleasedWithoutAsking: a hold nobody pays is released by the expirer; paying after
// the TTL is 410.
func TestHoldReleasedWithoutAsking(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.HoldTTL, c.ExpiryInterval = time.Second, 100*time.Millisecond })
	f := s.newShow(3, 100)
	tok, _ := s.customer()
	bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(3)}), 201))
	store := mongostore.NewBookings(s.m.DB)
	deadline := time.Now().Add(10 * time.Second)
	for {
		holds, err := store.ShowHolds(context.Background(), f.showID)
		if err != nil {
			t.Fatal(err)
		}
		if len(holds) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d holds remain 10s after a 1s TTL", len(holds))
		}
		time.Sleep(100 * time.Millisecond)
	}
	o, err := store.Outcome(context.Background(), bk.ID)
	if err != nil || o == nil || o.Status != core.BookingExpired {
		t.Fatalf("outcome %+v %v", o, err)
	}
	s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bk.ID, "amount": 300}}), 410)
	if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: tok}), 200)); got.Status != core.BookingExpired {
		t.Fatalf("status %s", got.Status)
	}
}

// TestProjectionCopiesFates: with BOOKING_PROJECTION on (the default outside make run), the
// stored booking, payment and hold documents come to carry each decided fate.
func TestProjectionCopiesFates(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.Projection = true })
	f := s.newShow(10, 100)
	tok, _ := s.customer()
	paid := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201))
	cancelled := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 201))
	r := s.expect(s.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": paid.ID, "amount": 200}}), 200)
	var pb struct {
		Payment core.Payment `json:"payment"`
	}
	_ = json.Unmarshal(r.env.Data, &pb)
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + cancelled.ID, token: tok, body: map[string]string{"status": "CANCELLED"}}), 200)
	store := mongostore.NewBookings(s.m.DB)
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := store.GetBooking(ctx, paid.ID)
		c, _ := store.GetBooking(ctx, cancelled.ID)
		pay, _ := store.GetPayment(ctx, pb.Payment.ID)
		holds, _ := store.ShowHolds(ctx, f.showID)
		sold := 0
		for _, h := range holds {
			if h.Sold {
				sold++
			}
		}
		if p != nil && c != nil && pay != nil && p.Status == core.BookingPaid && c.Status == core.BookingCancelled &&
			pay.Status == core.PaymentSuccess && sold == 2 && len(holds) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not projected after 10s: paid %+v, cancelled %+v, payment %+v, %d holds (%d sold)", p, c, pay, len(holds), sold)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShowWithSeatsSoldCannotBeDeleted: a show with a held or sold seat is 409 on DELETE; once
// its only booking is cancelled it can be deleted.
func TestShowWithSeatsSoldCannotBeDeleted(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	f := s.newShow(5, 100)
	tok, _ := s.customer()
	bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 201))
	s.expect(s.do(req{method: "DELETE", path: base + "/shows/" + f.showID, token: f.admin}), 409)
	s.expect(s.do(req{method: "PATCH", path: base + "/bookings/" + bk.ID, token: tok, body: map[string]string{"status": "CANCELLED"}}), 200)
	s.expect(s.do(req{method: "DELETE", path: base + "/shows/" + f.showID, token: f.admin}), 200)
}
