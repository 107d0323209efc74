package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

var linkNextRE = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// follow pages through a list from path, following each Link rel="next" (RFC 8288), and
// returns the items' ids page by page. Every link must stay on the route and keep the limit.
func follow[T any](t *testing.T, s *service, token, path string, id func(T) string) [][]string {
	t.Helper()
	route := strings.SplitN(path, "?", 2)[0]
	var pages [][]string
	for range 100 {
		r := s.expect(s.do(req{method: "GET", path: path, token: token}), 200)
		var items []T
		if err := json.Unmarshal(r.env.Data, &items); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, r.raw)
		}
		page := make([]string, len(items))
		for i, it := range items {
			page[i] = id(it)
		}
		pages = append(pages, page)
		link := r.header.Get("Link")
		if link == "" {
			return pages
		}
		m := linkNextRE.FindStringSubmatch(link)
		if m == nil {
			t.Fatalf("GET %s: Link %q is not <uri>; rel=\"next\"", path, link)
		}
		u, err := url.Parse(m[1])
		if err != nil || u.Path != route || (u.Query().Get("before") == "" && u.Query().Get("skip") == "") {
			t.Fatalf("GET %s: next %q is not a page of %s", path, m[1], route)
		}
		if want := url.Values(mustQuery(t, path)).Get("limit"); want != "" && u.Query().Get("limit") != want {
			t.Fatalf("GET %s: next %q lost the limit %s", path, m[1], want)
		}
		path = m[1]
	}
	t.Fatalf("more than 100 pages from %s", path)
	return nil
}

func mustQuery(t *testing.T, path string) url.Values {
	u, err := url.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func bookingID(b core.Booking) string { return b.ID }
func paymentID(p core.Payment) string { return p.ID }

func flat(pages [][]string) []string { return slices.Concat(pages...) }

// TestListsPageWithLinkNext: GET /bookings, /bookings/all and /payments page with a Link
// rel="next" through every item exactly once, newest first: a customer sees only its own, an
// admin all of them (past the default page of 50), and skip still works for old clients.
func TestListsPageWithLinkNext(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.BookingConfig.MaxOpenSeatsPerUser = 1000 })
	if _, err := mongostore.NewBookings(s.m.DB).BackfillLists(t.Context()); err != nil { // the lists read the streams from now on
		t.Fatal(err)
	}
	f := s.newShow(100, 10)
	tokA, uA := s.customer()
	tokB, _ := s.customer()
	tokC, _ := s.customer()
	admin := s.token(adminEmail, adminPassword)
	var mineA, all []string // in the order booked
	var costA []float64
	book := func(tok string) core.Booking {
		bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 201))
		all = append(all, bk.ID)
		return bk
	}
	for i := range 10 {
		if i%3 == 2 {
			book(tokB)
			continue
		}
		bk := book(tokA)
		mineA, costA = append(mineA, bk.ID), append(costA, bk.TotalCost)
	}
	for range 45 {
		book(tokC)
	}
	// A pays three of its bookings, one of them after a wrong amount.
	var paysA []string
	pay := func(i int, amount float64, status int) {
		r := s.expect(s.do(req{method: "POST", path: base + "/payments", token: tokA, body: map[string]any{"bookingId": mineA[i], "amount": amount}}), status)
		var p struct {
			ID      string        `json:"_id"`
			Payment *core.Payment `json:"payment"`
		}
		_ = json.Unmarshal(r.env.Data, &p)
		if p.Payment != nil {
			p.ID = p.Payment.ID
		}
		paysA = append(paysA, p.ID)
	}
	pay(0, costA[0], 200)
	pay(3, costA[3]+1, 400)
	pay(3, costA[3], 200)
	pay(6, costA[6], 200)

	newestFirst := func(ids []string) []string { c := slices.Clone(ids); slices.Reverse(c); return c }
	pages := follow(t, s, tokA, base+"/bookings?limit=3", bookingID)
	if got := flat(pages); !slices.Equal(got, newestFirst(mineA)) {
		t.Fatalf("A's bookings, 3 a page:\n got %v\nwant %v", got, newestFirst(mineA))
	}
	if len(pages) != 3 || len(pages[0]) != 3 || len(pages[2]) != 1 {
		t.Fatalf("A's 7 bookings, 3 a page: pages of %v", pages)
	}
	// The whole list without a limit; an old client's skip.
	if got := flat(follow(t, s, tokA, base+"/bookings", bookingID)); !slices.Equal(got, newestFirst(mineA)) {
		t.Fatalf("A's bookings: %v", got)
	}
	r := s.expect(s.do(req{method: "GET", path: base + "/bookings?limit=2&skip=3", token: tokA}), 200)
	var skipped []core.Booking
	_ = json.Unmarshal(r.env.Data, &skipped)
	if len(skipped) != 2 || skipped[0].ID != newestFirst(mineA)[3] || skipped[1].ID != newestFirst(mineA)[4] || r.header.Get("Link") == "" {
		t.Fatalf("skip 3, limit 2: %s (Link %q)", r.raw, r.header.Get("Link"))
	}
	// Paid bookings show paid in the list.
	for _, bk := range func() []core.Booking {
		var l []core.Booking
		_ = json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/bookings?limit=500", token: tokA}), 200).env.Data, &l)
		return l
	}() {
		if paid := bk.ID == mineA[0] || bk.ID == mineA[3] || bk.ID == mineA[6]; paid != (bk.Status == core.BookingPaid) || bk.UserID != uA.ID {
			t.Fatalf("booking %s: status %s, user %s", bk.ID, bk.Status, bk.UserID)
		}
	}
	// Every booking, for the admin: 55, past the default page of 50.
	pages = follow(t, s, admin, base+"/bookings/all", bookingID)
	if got := flat(pages); !slices.Equal(got, newestFirst(all)) {
		t.Fatalf("all bookings:\n got %v\nwant %v", got, newestFirst(all))
	}
	if len(pages) != 2 || len(pages[0]) != 50 {
		t.Fatalf("55 bookings, 50 a page: pages of %d and %d", len(pages[0]), len(pages[len(pages)-1]))
	}
	s.expect(s.do(req{method: "GET", path: base + "/bookings/all", token: tokB}), 403)
	// Payments: A's four (one FAILED), 2 a page; the admin's list of all keeps all=true.
	if got := flat(follow(t, s, tokA, base+"/payments?limit=2", paymentID)); !slices.Equal(got, newestFirst(paysA)) {
		t.Fatalf("A's payments:\n got %v\nwant %v", got, newestFirst(paysA))
	}
	if got := flat(follow(t, s, tokB, base+"/payments", paymentID)); len(got) != 0 {
		t.Fatalf("B's payments: %v", got)
	}
	if got := flat(follow(t, s, admin, base+"/payments?all=true&limit=3", paymentID)); !slices.Equal(got, newestFirst(paysA)) {
		t.Fatalf("all payments: %v", got)
	}
	s.expect(s.do(req{method: "GET", path: base + "/payments?all=true", token: tokC}), 403)
	// Cursors are checked: 400, never 500.
	for _, bad := range []string{"x", "-5", "o", strings.Repeat("9", 40), "%00", "s-1"} {
		s.expect(s.do(req{method: "GET", path: base + "/bookings?before=" + bad, token: tokA}), 400)
	}
}

// TestListsBeforeAndAfterBackfill: a database an earlier version left (bookings and payments
// without list entries). The core lists them at once from the old query, paging by skip; its
// backfill indexes them in the background; then the lists answer from the streams, the
// bookings made meanwhile first.
func TestListsBeforeAndAfterBackfill(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := startWith(t, cfg)
	tok, u := s.customer()
	admin := s.token(adminEmail, adminPassword)
	// Wait for the backfill of the empty store, then pretend it never ran and write what an
	// earlier version wrote.
	db := s.m.DB
	waitMarker := func(what string) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := db.Collection(mongostore.ListEntriesCollection).CountDocuments(t.Context(), map[string]any{"_id": map[string]any{"$regex": "^!"}})
			if err == nil && n == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no backfill marker after 30 s (%v); logs:\n%s", what, err, s.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMarker("empty store")
	if _, err := db.Collection(mongostore.ListEntriesCollection).DeleteMany(t.Context(), map[string]any{}); err != nil {
		t.Fatal(err)
	}
	const n = 60
	var old []string
	base0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	for i := range n {
		at := base0.Add(time.Duration(i) * time.Second)
		id := fmt.Sprintf("%08x%016x", at.Unix(), i)
		if _, err := db.Collection(mongostore.BookingsCollection).InsertOne(t.Context(), map[string]any{"_id": mustOID(t, id),
			"userId": u.ID, "theatreId": id, "movieId": id, "showId": id, "timing": "2030-06-01T18:30:00Z", "noOfSeats": 1,
			"seats": []string{"A1"}, "totalCost": 100.0, "status": "CANCELLED", "expiresAt": at, "createdAt": at, "updatedAt": at}); err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}
	slices.Reverse(old)
	// The first process stops (it leads the backfill's lease, and would keep it for its catch-up
	// hour); a new process, which has not seen the marker, answers from the old query before its
	// backfill.
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startWith(t, cfg)
	db = s2.m.DB
	got := flat(follow(t, s2, tok, base+"/bookings?limit=25", bookingID))
	if !slices.Equal(got, old) {
		t.Fatalf("before the backfill:\n got %v\nwant %v", got, old)
	}
	waitMarker("earlier version's bookings")
	if !strings.Contains(s2.logs.String(), "indexed existing bookings and payments") {
		t.Errorf("no log line for the backfill:\n%s", s2.logs)
	}
	f := s2.newShow(10, 100)
	bk := bookingOf(t, s2.expect(s2.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 201))
	want := append([]string{bk.ID}, old...)
	s3 := startWith(t, cfg) // a process that reads the lists only from their streams
	for _, srv := range []*service{s2, s3} {
		if got := flat(follow(t, srv, tok, base+"/bookings?limit=7", bookingID)); !slices.Equal(got, want) {
			t.Fatalf("after the backfill:\n got %v\nwant %v", got, want)
		}
		if got := flat(follow(t, srv, admin, base+"/bookings/all?limit=50", bookingID)); !slices.Equal(got, want) {
			t.Fatalf("all, after the backfill:\n got %v\nwant %v", got, want)
		}
	}
}

func mustOID(t *testing.T, hex string) bson.ObjectID {
	t.Helper()
	oid, err := bson.ObjectIDFromHex(hex)
	if err != nil {
		t.Fatal(err)
	}
	return oid
}
