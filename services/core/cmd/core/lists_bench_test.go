package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// listWindow is one window's figures of BenchmarkListGrowth.
type listWindow struct {
	bookings             int
	one, many, all, pays loadStats
	deep, fresh          loadStats
	postQuiet, postBusy  loadStats
	seed                 time.Duration
	busyGets             int64
}

// BenchmarkListGrowth grows the bookings to BENCH_LISTS_TOTAL (default 100,000, each paid) in
// windows of BENCH_LISTS_WINDOW (10,000), seeded through the store as replicas write them
// (entries, then the booking; its payment likewise; then its outcome), a tenth of them one
// customer's. The lists resolve each booking's and payment's status from its outcome (read
// once per process, then kept), as without the projection. After
// each window, over HTTP at concurrency 4: GET /bookings of a customer with one booking and of
// the one with many, GET /bookings/all, GET /payments of the one with many (each the first
// page of 50, which the service reads again and again: from its cache but for the head), GET
// /bookings/all?skip=<random> (deep pages, mostly never read before), then the first page of
// all read by a store that has read nothing yet (no hint, no cache: a process just started),
// and POST /bookings p50 quiet and while a client loops GET /bookings on 4 more connections.
// Target: each GET's p99 in the last window at most 1.5x the first's.
func BenchmarkListGrowth(b *testing.B) {
	total, size := envInt("BENCH_LISTS_TOTAL", 100000), envInt("BENCH_LISTS_WINDOW", 10000)
	for b.Loop() {
		listGrowth(b, total, size)
	}
}

func listGrowth(b *testing.B, total, size int) {
	s := startBench(b, func(c *Config) { c.BookingConfig.HoldTTL = 2 * time.Hour })
	ctx := context.Background()
	if _, err := mongostore.NewBookings(s.m.DB).BackfillLists(ctx); err != nil {
		b.Fatal(err)
	}
	user := func() (string, string) {
		email := fmt.Sprintf("lists%d-%d@example.com", fixtureSeq.Add(1), time.Now().UnixNano()%1e6)
		s.call(b, "POST", base+"/auth/signup", "", map[string]string{"name": "Bench", "email": email, "password": "bench-password"}, 201)
		u, err := s.m.Users.GetByEmail(ctx, email)
		if err != nil {
			b.Fatal(err)
		}
		return s.signIn(b, email, "bench-password"), u.ID
	}
	oneTok, _ := user()
	manyTok, manyID := user()
	posterToks := []string{}
	for range 4 {
		t, _ := user()
		posterToks = append(posterToks, t)
	}
	f := s.show(b, 5000, 50)
	s.call(b, "POST", base+"/bookings", oneTok, f.booking(1), 201)

	// The seed: another store on the database, as another replica writes.
	seeder := mongostore.NewBookings(s.m.DB)
	others := make([]string, 1000)
	for i := range others {
		others[i] = bson.NewObjectID().Hex()
	}
	seed := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 64 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					u := others[i%len(others)]
					if i%10 == 0 {
						u = manyID
					}
					// Stored as a paid booking is without the projection (make run): the booking
					// IN_PROCESS, its payment PENDING, the outcome PAID.
					now := time.Now().UTC().Truncate(time.Millisecond)
					bk := &core.Booking{ID: seeder.NewID(), UserID: u, TheatreID: f.theatreID, MovieID: f.movieID, ShowID: f.showID,
						Timing: f.timing, NoOfSeats: 1, Seats: []string{"A1"}, TotalCost: 100, Status: core.BookingInProcess,
						ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
					p := &core.Payment{ID: seeder.NewID(), BookingID: bk.ID, UserID: u, Amount: 100, Status: core.PaymentPending,
						CreatedAt: now, UpdatedAt: now}
					if err := seeder.CreateBooking(ctx, bk); err != nil {
						b.Error(err)
						return
					}
					if err := seeder.CreatePayment(ctx, p); err != nil {
						b.Error(err)
						return
					}
					if _, _, err := seeder.Decide(ctx, core.Outcome{BookingID: bk.ID, Status: core.BookingPaid, PaymentID: p.ID, DecidedAt: now}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	get := func(tok, path string, want int) func(int) int {
		return func(int) int {
			code, raw := s.rc.do("GET", path, tok, nil, nil)
			if code == 200 && want > 0 && strings.Count(string(raw), `"_id"`) < want {
				return 0 // a short page
			}
			return code
		}
	}
	post := func(i int) int {
		code, _ := s.rc.do("POST", base+"/bookings", posterToks[i%len(posterToks)], f.booking(1), nil)
		return code
	}
	const reqs = 300
	var windows []listWindow
	for done := 0; done+size <= total; done += size {
		t0 := time.Now()
		seed(size)
		if b.Failed() {
			return
		}
		w := listWindow{bookings: done + size, seed: time.Since(t0)}
		w.one = runLoad(reqs, 4, get(oneTok, base+"/bookings", 1))
		w.many = runLoad(reqs, 4, get(manyTok, base+"/bookings", 50))
		w.all = runLoad(reqs, 4, get(s.admin, base+"/bookings/all", 50))
		w.pays = runLoad(reqs, 4, get(manyTok, base+"/payments", 50))
		w.deep = runLoad(200, 4, func(i int) int {
			skip := rand.IntN(w.bookings - 50)
			return get(s.admin, fmt.Sprintf("%s/bookings/all?skip=%d", base, skip), 50)(i)
		})
		w.fresh = runLoad(50, 1, func(int) int {
			page, _, err := mongostore.NewBookings(s.m.DB).PageBookings(ctx, core.BookingFilter{Limit: 50})
			if err != nil || len(page) != 50 {
				return 0
			}
			return 200
		})
		w.postQuiet = runLoad(200, 4, post)
		var stop atomic.Bool
		var gets atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					s.rc.do("GET", base+"/bookings", manyTok, nil, nil)
					gets.Add(1)
				}
			})
		}
		w.postBusy = runLoad(200, 4, post)
		stop.Store(true)
		wg.Wait()
		w.busyGets = gets.Load()
		for what, st := range map[string]loadStats{"one": w.one, "many": w.many, "all": w.all, "payments": w.pays,
			"deep": w.deep, "fresh": w.fresh, "post quiet": w.postQuiet, "post busy": w.postBusy} {
			want := 200
			if strings.HasPrefix(what, "post") {
				want = 201
			}
			if st.statuses[want] != st.n {
				b.Fatalf("window at %d bookings, %s: %v", w.bookings, what, st)
			}
		}
		windows = append(windows, w)
		b.Logf("%7d bookings (seeded in %5.1f s) | GET /bookings one p50 %5.1f p99 %5.1f | many p50 %5.1f p99 %5.1f | /bookings/all p50 %5.1f p99 %5.1f | GET /payments p50 %5.1f p99 %5.1f | all, deep page p50 %5.1f p99 %5.1f | fresh process p50 %5.1f p99 %5.1f | POST /bookings p50 quiet %5.1f, under 4 GET loops %5.1f (%d GETs) ms",
			w.bookings, w.seed.Seconds(), ms(w.one.p50), ms(w.one.p99), ms(w.many.p50), ms(w.many.p99), ms(w.all.p50), ms(w.all.p99),
			ms(w.pays.p50), ms(w.pays.p99), ms(w.deep.p50), ms(w.deep.p99), ms(w.fresh.p50), ms(w.fresh.p99),
			ms(w.postQuiet.p50), ms(w.postBusy.p50), w.busyGets)
	}
	if len(windows) == 0 {
		b.Fatal("no window: BENCH_LISTS_TOTAL below BENCH_LISTS_WINDOW")
	}
	first, last := windows[0], windows[len(windows)-1]
	b.ReportMetric(ms(last.one.p99), "one-last-p99-ms")
	b.ReportMetric(ms(last.many.p99), "many-last-p99-ms")
	b.ReportMetric(ms(last.all.p99), "all-last-p99-ms")
	b.ReportMetric(ms(last.pays.p99), "payments-last-p99-ms")
	b.ReportMetric(ms(last.postBusy.p50), "post-busy-last-p50-ms")
	for _, c := range []struct {
		what        string
		first, last loadStats
	}{{"GET /bookings (one booking)", first.one, last.one}, {"GET /bookings (many)", first.many, last.many},
		{"GET /bookings/all", first.all, last.all}, {"GET /payments", first.pays, last.pays},
		{"GET /bookings/all?skip=<random>", first.deep, last.deep}, {"first page of all, fresh store", first.fresh, last.fresh}} {
		ratio := ms(c.last.p99) / ms(c.first.p99)
		b.Logf("%s: p99 %.1f ms at %d bookings, %.1f ms at %d: %.2fx", c.what, ms(c.first.p99), first.bookings,
			ms(c.last.p99), last.bookings, ratio)
		if ratio > 1.5 {
			b.Errorf("%s slowed down with the data: p99 %.2fx the first window's (target <= 1.5x)", c.what, ratio)
		}
	}
}
