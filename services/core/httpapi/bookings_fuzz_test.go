package httpapi

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// bookingFuzz is the app with accounts, catalogue, bookings and idempotency on a new
// database, served in memory, with a customer and a show to book.
type bookingFuzz struct {
	srv      *httpx.Server
	cat      *catalogue.Catalogue
	bookings *booking.Bookings
	holds    *mongostore.Bookings
	outbox   *mongostore.Outbox
	admin    *core.User
	customer *core.User
	token    string // the customer's
	other    *core.User
	theatre  *core.Theatre
	movie    *core.Movie

	show  *core.Show                 // the show booked now; a new one once it is full
	shows map[string]*core.Show      // every show created, by id
	known map[string]map[string]bool // show id -> booking ids seen, for the seat checks
}

const (
	fuzzShowSeats = 12
	fuzzShowPrice = 150.25
)

// minimizeOnce bounds the minimization of "interesting" inputs (see boundMinimization).
var minimizeOnce sync.Once

// boundMinimization limits -test.fuzzminimizetime to one run per input, unless it was given
// on the command line. These targets run the database in process, and the coverage the
// fuzzer is guided by then includes the database's own, which varies from run to run: nearly
// every input looks "interesting", and minimizing each for the default 60s leaves no time to
// fuzz (measured: 42 execs in 45s; 850 in 20s with the bound).
func boundMinimization() {
	minimizeOnce.Do(func() {
		given := false
		flag.Visit(func(fl *flag.Flag) { given = given || fl.Name == "test.fuzzminimizetime" })
		if fl := flag.Lookup("test.fuzz"); fl != nil && fl.Value.String() != "" && !given {
			_ = flag.Set("test.fuzzminimizetime", "1x")
		}
	})
}

func newBookingFuzz(tb testing.TB) *bookingFuzz {
	tb.Helper()
	boundMinimization()
	db := devdb.TestDB(tb)
	ctx := context.Background()
	users := mongostore.New(db)
	stores := mongostore.NewCatalogue(db)
	holds := mongostore.NewBookings(db)
	idem := mongostore.NewIdempotency(db)
	outbox := mongostore.NewOutbox(db)
	for _, ensure := range []func(context.Context) error{users.EnsureIndexes, stores.EnsureIndexes, holds.EnsureIndexes, outbox.EnsureIndexes} {
		if err := ensure(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	acc, err := accounts.NewAccounts(users, accounts.AccountsOptions{Secret: []byte("fuzz-secret-0123456789abcdef0123456789"), BcryptCost: 4})
	if err != nil {
		tb.Fatal(err)
	}
	admin, _, err := acc.EnsureAdmin(ctx, "root@example.com", "admin-pass-1234")
	if err != nil {
		tb.Fatal(err)
	}
	customer, err := acc.SignUp(ctx, core.SignUp{Name: "Ann", Email: "ann@example.com", Password: "password-1"})
	if err != nil {
		tb.Fatal(err)
	}
	other, err := acc.SignUp(ctx, core.SignUp{Name: "Bob", Email: "bob@example.com", Password: "password-1"})
	if err != nil {
		tb.Fatal(err)
	}
	token, err := acc.IssueToken(customer)
	if err != nil {
		tb.Fatal(err)
	}
	cat := catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{})
	// The confirmations are stored; nothing relays them here.
	bookings := booking.NewBookings(holds, cat, booking.BookingsOptions{Outbox: outbox})
	srv := New(Services{Accounts: acc, Users: users, Catalogue: cat, Bookings: bookings, Idempotency: idem},
		Options{HTTP: httpx.Options{BodyLimit: 64 << 10}})
	th, err := cat.CreateTheatre(ctx, admin, core.TheatrePatch{Name: ptrTo("Rex"), City: ptrTo("Pune"), PinCode: ptrTo(411001)})
	if err != nil {
		tb.Fatal(err)
	}
	mv, err := cat.CreateMovie(ctx, admin, core.MoviePatch{Name: ptrTo("Heat"), Description: ptrTo("d"), Casts: &[]string{"A"},
		TrailerURL: ptrTo("https://x.example/t"), ReleaseDate: ptrTo("2024-01-15"), Director: ptrTo("D")})
	if err != nil {
		tb.Fatal(err)
	}
	fz := &bookingFuzz{srv: srv, cat: cat, bookings: bookings, holds: holds, outbox: outbox, admin: admin,
		customer: customer, token: token, other: other, theatre: th, movie: mv,
		shows: map[string]*core.Show{}, known: map[string]map[string]bool{}}
	fz.newShow(tb)
	return fz
}

// newShow creates the next show of the movie in the theatre and makes it the one booked.
func (fz *bookingFuzz) newShow(tb testing.TB) {
	tb.Helper()
	timing := time.Date(2031, 1, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(len(fz.shows)) * time.Minute).Format(time.RFC3339)
	sh, err := fz.cat.CreateShow(context.Background(), fz.admin, core.NewShow{TheatreID: fz.theatre.ID, MovieID: fz.movie.ID,
		ShowPatch: core.ShowPatch{Timing: ptrTo(timing), NoOfSeats: ptrTo(fuzzShowSeats), SeatsPerRow: ptrTo(5), Price: ptrTo(fuzzShowPrice)}})
	if err != nil {
		tb.Fatalf("new show: %v", err)
	}
	fz.show = sh
	fz.shows[sh.ID] = sh
	fz.known[sh.ID] = map[string]bool{}
}

// fill puts the show's values in place of the placeholders of a fuzzed body.
func (fz *bookingFuzz) fill(body string, more ...string) string {
	pairs := append([]string{"$T", fz.theatre.ID, "$M", fz.movie.ID, "$W", fz.show.Timing, "$S", fz.show.ID}, more...)
	return strings.NewReplacer(pairs...).Replace(body)
}

type fuzzEnvelope struct {
	Success *bool           `json:"success"`
	Error   json.RawMessage `json:"error"`
	Data    json.RawMessage `json:"data"`
	Message *string         `json:"message"`
}

// post sends body to path as the customer (with key as Idempotency-Key unless empty) and
// checks the answer: never a 5xx, always the envelope, success matching the status.
func (fz *bookingFuzz) post(t *testing.T, path, body, key string) (*http.Response, fuzzEnvelope) {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderAccessToken, fz.token)
	if key != "" {
		r.Header.Set(HeaderIdempotencyKey, key)
	}
	resp, err := fz.srv.App.Test(r, 30_000)
	if err != nil {
		t.Fatalf("%s %q (key %q): %v", path, body, key, err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("%s %q (key %q): %d %.200s", path, body, key, resp.StatusCode, raw)
	if resp.StatusCode >= 500 {
		t.Fatalf("%s: status %d for %q (key %q): %s", path, resp.StatusCode, body, key, raw)
	}
	var env fuzzEnvelope
	if err := json.Unmarshal(raw, &env); err != nil || env.Success == nil || env.Message == nil || env.Error == nil || env.Data == nil {
		t.Fatalf("%s: %d is not an envelope for %q: %s", path, resp.StatusCode, body, raw)
	}
	if *env.Success != (resp.StatusCode < 400) {
		t.Fatalf("%s: success %v with %d for %q: %s", path, *env.Success, resp.StatusCode, body, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: Content-Type %q", path, ct)
	}
	return resp, env
}

// headerSafe drops what cannot travel in a header value at all (a line break would
// make it another header); every other byte goes to the server as it is.
func headerSafe(key string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return -1
		}
		return r
	}, key)
}

// checkSeats checks the show's invariant: the customer's live bookings (IN_PROCESS and not
// expired, or SUCCESSFULL) hold disjoint seats of the show, no more than it has, each one
// held (or sold) for that booking, and the seat map agrees.
func (fz *bookingFuzz) checkSeats(t *testing.T, show *core.Show) {
	t.Helper()
	ctx := context.Background()
	layout := booking.LayoutOf(show)
	holds, err := fz.holds.ShowHolds(ctx, show.ID)
	if err != nil {
		t.Fatal(err)
	}
	holder := map[string]string{}
	for _, h := range holds {
		if !layout.Has(h.Seat) {
			t.Fatalf("a hold on %q, not a seat of the show", h.Seat)
		}
		if prev, ok := holder[h.Seat]; ok {
			t.Fatalf("seat %s held twice: bookings %s and %s", h.Seat, prev, h.BookingID)
		}
		holder[h.Seat] = h.BookingID
	}
	if len(holder) > show.NoOfSeats {
		t.Fatalf("%d seats held or sold of %d", len(holder), show.NoOfSeats)
	}
	m, err := fz.bookings.SeatMap(ctx, show.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Free)+len(m.Held)+len(m.Sold) != show.NoOfSeats || m.NoOfSeats != show.NoOfSeats {
		t.Fatalf("seat map %d free + %d held + %d sold, show has %d", len(m.Free), len(m.Held), len(m.Sold), show.NoOfSeats)
	}
	taken := map[string]string{}
	live := 0
	for id := range fz.known[show.ID] {
		bk, err := fz.bookings.Get(ctx, fz.admin, id)
		if err != nil {
			t.Fatalf("booking %s: %v", id, err)
		}
		if bk.ShowID != show.ID {
			t.Fatalf("booking %s is of show %s, made on %s", id, bk.ShowID, show.ID)
		}
		if bk.Status == core.BookingCancelled || bk.Status == core.BookingExpired {
			delete(fz.known[show.ID], id) // final: never live again
			continue
		}
		if bk.Status != core.BookingPaid && !time.Now().Before(bk.ExpiresAt) {
			continue
		}
		live += len(bk.Seats)
		for _, s := range bk.Seats {
			if prev, ok := taken[s]; ok {
				t.Fatalf("seat %s in two live bookings: %s and %s", s, prev, id)
			}
			taken[s] = id
			if holder[s] != id {
				t.Fatalf("seat %s of live booking %s (%s) is held by %q", s, id, bk.Status, holder[s])
			}
			want := m.Held
			if bk.Status == core.BookingPaid {
				want = m.Sold
			}
			if !slices.Contains(want, s) {
				t.Fatalf("seat %s of booking %s (%s) is not %s on the seat map %+v", s, id, bk.Status,
					map[bool]string{true: "sold", false: "held"}[bk.Status == core.BookingPaid], m)
			}
		}
	}
	if live > show.NoOfSeats {
		t.Fatalf("live bookings hold %d seats of %d", live, show.NoOfSeats)
	}
}

// FuzzBooking posts any body (the placeholders $T, $M, $W stand for the theatre, movie and
// timing of a show with free seats) and any Idempotency-Key to POST /bookings as a customer:
// never a 5xx, always the envelope; a created booking is the caller's, IN_PROCESS, on that
// show, with as many distinct seats as asked at the show's price; and the seats of live
// bookings never exceed the show's, nor overlap.
func FuzzBooking(f *testing.F) {
	seeds := []struct{ body, key string }{
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":2}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, "k1"},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, "k1"}, // a replay
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":3}`, "k1"}, // another body, same key: 422
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":["a1","B2 "]}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":["A1","A1"]}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":["Z99"]}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":["A2"],"noOfSeats":2}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":12}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":13}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":21}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":0}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":-1}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1.5}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1e400}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":9223372036854775808}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":"2"}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"2031-01-01","noOfSeats":1}`, ""},
		{`{"theatreId":"$M","movieId":"$T","timing":"$W","noOfSeats":1}`, ""},
		{`{"theatreId":" $T ","movieId":"$M","timing":" $W ","noOfSeats":1}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1,"status":"SUCCESSFULL","totalCost":0,"userId":"x"}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1,"showId":"$S"}`, ""},
		{`{"theatreId":{"$ne":null},"movieId":["$M"],"timing":5,"noOfSeats":{}}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":[null,5,{}]}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":"A1"}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"` + strings.Repeat("9", 100) + `","noOfSeats":1}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1} {}`, ""},
		{`{"theatreId":"$T","theatreId":"000000000000000000000000","movieId":"$M","timing":"$W","noOfSeats":1}`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","seats":["\u0000"]}`, ""},
		{``, ""}, {`null`, ""}, {`[]`, ""}, {`"x"`, ""}, {"\xff\xfe", ""}, {`{`, ""},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, strings.Repeat("k", 256)},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, "k\x01ey"},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, "clé"},
		{`{"theatreId":"$T","movieId":"$M","timing":"$W","noOfSeats":1}`, " "},
	}
	for _, s := range seeds {
		f.Add(s.body, s.key)
	}
	fz := newBookingFuzz(f)
	f.Fuzz(func(t *testing.T, body, key string) {
		sent := fz.fill(body)
		resp, env := fz.post(t, BasePath+"/bookings", sent, headerSafe(key))
		if resp.StatusCode == http.StatusCreated {
			var bk core.Booking
			if err := json.Unmarshal(env.Data, &bk); err != nil {
				t.Fatalf("booking: %v in %s", err, env.Data)
			}
			replay := resp.Header.Get(HeaderIdempotentReplay) == "true"
			show, ok := fz.shows[bk.ShowID]
			if !ok || bk.TheatreID != fz.theatre.ID || bk.MovieID != fz.movie.ID || bk.Timing != show.Timing {
				t.Fatalf("booked %+v, not one of the shows: %q", bk, sent)
			}
			if bk.UserID != fz.customer.ID || bk.Status != core.BookingInProcess || bk.NoOfSeats < 1 || len(bk.Seats) != bk.NoOfSeats ||
				math.Round(bk.TotalCost*100) != math.Round(fuzzShowPrice*100)*float64(bk.NoOfSeats) || !core.IsID(bk.ID) {
				t.Fatalf("created %+v from %q", bk, sent)
			}
			layout := booking.LayoutOf(show)
			seen := map[string]bool{}
			for _, s := range bk.Seats {
				if !layout.Has(s) || seen[s] {
					t.Fatalf("seats %v of booking %s", bk.Seats, bk.ID)
				}
				seen[s] = true
			}
			if !replay {
				if fz.known[show.ID][bk.ID] {
					t.Fatalf("booking %s created twice", bk.ID)
				}
				fz.known[show.ID][bk.ID] = true
			}
			if show != fz.show {
				fz.checkSeats(t, show)
			}
		}
		fz.checkSeats(t, fz.show)
		if m, err := fz.bookings.SeatMap(context.Background(), fz.show.ID); err == nil && len(m.Free) == 0 {
			fz.newShow(t) // full: book the next one
		}
	})
}

// FuzzPayment posts any body and Idempotency-Key to POST /payments as a customer. Each run
// first books a seat of a show: in the body, $B stands for that booking's id, $A for its
// totalCost, $X for a booking of another customer's, $S for the show. Never a 5xx, always the
// envelope; a payment succeeds only for the caller's open booking at exactly its totalCost,
// and then only once; a failed one leaves the booking open; another's booking is never paid;
// and the seats of live bookings never exceed the show's.
func FuzzPayment(f *testing.F) {
	seeds := []struct{ body, key string }{
		{`{"bookingId":"$B","amount":$A}`, ""},
		{`{"bookingId":"$B","amount":$A}`, "p1"},
		{`{"bookingId":"$B","amount":$A}`, "p1"}, // the same key with another booking: 422
		{`{"bookingId":"$B","amount":"$A"}`, ""},
		{`{"bookingId":"$B","amount":1}`, ""},
		{`{"bookingId":"$B","amount":0}`, ""},
		{`{"bookingId":"$B","amount":-150.25}`, ""},
		{`{"bookingId":"$B","amount":150.249}`, ""},
		{`{"bookingId":"$B","amount":150.2500000001}`, ""},
		{`{"bookingId":"$B","amount":1e308}`, ""},
		{`{"bookingId":"$B","amount":1e400}`, ""},
		{`{"bookingId":"$B","amount":NaN}`, ""},
		{`{"bookingId":"$B"}`, ""},
		{`{"amount":$A}`, ""},
		{`{"bookingId":"$X","amount":$A}`, ""},
		{`{"bookingId":"$S","amount":$A}`, ""},
		{`{"bookingId":"000000000000000000000000","amount":$A}`, ""},
		{`{"bookingId":"$B ","amount":$A}`, ""},
		{`{"bookingId":"not-an-id","amount":$A}`, ""},
		{`{"bookingId":{"$ne":null},"amount":$A}`, ""},
		{`{"bookingId":["$B"],"amount":[$A]}`, ""},
		{`{"bookingId":"$B","amount":$A,"status":"SUCCESS","totalCost":1,"userId":"x"}`, ""},
		{`{"bookingId":"$B","bookingId":"$X","amount":$A}`, ""},
		{`{"bookingId":"$B","amount":$A} {"bookingId":"$X"}`, ""},
		{``, ""}, {`null`, ""}, {`[]`, ""}, {`0`, ""}, {"\xff\xfe", ""}, {`{"bookingId":`, ""},
		{`{"bookingId":"$B","amount":$A}`, strings.Repeat("k", 256)},
		{`{"bookingId":"$B","amount":$A}`, "k\x7fey"},
	}
	for _, s := range seeds {
		f.Add(s.body, s.key)
	}
	fz := newBookingFuzz(f)
	ctx := context.Background()
	// Another customer's booking, on a show of its own so that it never fills the one booked.
	theirs, err := fz.bookings.Book(ctx, fz.other, booking.BookingRequest{TheatreID: fz.theatre.ID, MovieID: fz.movie.ID,
		Timing: fz.show.Timing, NoOfSeats: 1})
	if err != nil {
		f.Fatal(err)
	}
	fz.known[fz.show.ID][theirs.ID] = true
	fz.newShow(f)
	paid := map[string]bool{}
	f.Fuzz(func(t *testing.T, body, key string) {
		mine, err := fz.bookings.Book(ctx, fz.customer, booking.BookingRequest{TheatreID: fz.theatre.ID, MovieID: fz.movie.ID,
			Timing: fz.show.Timing, NoOfSeats: 1})
		if errs.Is(err, errs.Conflict) {
			fz.newShow(t)
			mine, err = fz.bookings.Book(ctx, fz.customer, booking.BookingRequest{TheatreID: fz.theatre.ID, MovieID: fz.movie.ID,
				Timing: fz.show.Timing, NoOfSeats: 1})
		}
		if err != nil {
			t.Fatalf("book: %v", err)
		}
		show := fz.show
		fz.known[show.ID][mine.ID] = true
		amount := strconv.FormatFloat(mine.TotalCost, 'f', -1, 64)
		sent := fz.fill(body, "$B", mine.ID, "$A", amount, "$X", theirs.ID)
		resp, env := fz.post(t, BasePath+"/payments", sent, headerSafe(key))
		replay := resp.Header.Get(HeaderIdempotentReplay) == "true"

		if resp.StatusCode == http.StatusOK {
			var pb struct {
				core.Booking
				Payment core.Payment `json:"payment"`
			}
			if err := json.Unmarshal(env.Data, &pb); err != nil {
				t.Fatalf("paid booking: %v in %s", err, env.Data)
			}
			if pb.UserID != fz.customer.ID || pb.Status != core.BookingPaid || pb.Payment.Status != core.PaymentSuccess ||
				pb.Payment.BookingID != pb.ID || pb.PaymentID != pb.Payment.ID || pb.Payment.UserID != fz.customer.ID ||
				math.Round(pb.Payment.Amount*100) != math.Round(pb.TotalCost*100) {
				t.Fatalf("paid %s from %q", env.Data, sent)
			}
			if !replay {
				if paid[pb.ID] {
					t.Fatalf("booking %s paid twice (%q)", pb.ID, sent)
				}
				if pb.ID != mine.ID {
					t.Fatalf("paid booking %s, not this run's %s (%q)", pb.ID, mine.ID, sent)
				}
				paid[pb.ID] = true
			}
		}
		// The store agrees with the answer.
		got, err := fz.bookings.Get(ctx, fz.admin, mine.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case resp.StatusCode == http.StatusOK && !replay:
			if got.Status != core.BookingPaid {
				t.Fatalf("answered paid, booking is %s", got.Status)
			}
		case got.Status == core.BookingPaid:
			t.Fatalf("booking %s is paid after a %d (replay %v): %q", mine.ID, resp.StatusCode, replay, sent)
		case got.Status != core.BookingInProcess:
			t.Fatalf("booking %s is %s after a %d: %q", mine.ID, got.Status, resp.StatusCode, sent)
		}
		if them, err := fz.bookings.Get(ctx, fz.admin, theirs.ID); err != nil || them.Status == core.BookingPaid {
			t.Fatalf("another customer's booking: %+v, %v after %q", them, err, sent)
		}
		fz.checkSeats(t, show)
		if got.Status == core.BookingInProcess { // free the seat for the next runs
			if _, err := fz.bookings.Cancel(ctx, fz.customer, mine.ID); err != nil {
				t.Fatalf("cancel: %v", err)
			}
		}
	})
}
