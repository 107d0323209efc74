package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// Growth benchmarks: the booking path's speed as the data grows, which a benchmark on a fresh
// database never sees. Sizes come from the environment so that a quick look is possible:
// BENCH_GROWTH_TOTAL (default 100,000 bookings) in windows of BENCH_GROWTH_WINDOW (10,000),
// BENCH_STORM_HOLDS (100,000 holds ending at once).

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var (
	coreBinOnce sync.Once
	coreBin     string
	coreBinErr  error
)

// buildCore builds the core binary once per test binary.
func buildCore(b *testing.B) string {
	coreBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cineflow-core-bench-")
		if err != nil {
			coreBinErr = err
			return
		}
		coreBin = filepath.Join(dir, "core")
		build := exec.Command("go", "build", "-o", coreBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			coreBinErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if coreBinErr != nil {
		b.Fatal(coreBinErr)
	}
	return coreBin
}

// coreProcess is the core binary run against the test database as make run runs it, so that
// its memory is its own.
type coreProcess struct {
	*benchService
	cmd *exec.Cmd
}

func startCoreProcess(b *testing.B, extraEnv ...string) *coreProcess {
	b.Helper()
	bin := buildCore(b)
	port := freePort(b)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL="+testDBURL(b)+"?maxPoolSize=4",
		"APP_ENV=development", "JWT_SECRET="+testSecret, "ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword,
		"BCRYPT_COST=4", "LOG_LEVEL=error", "SIGNIN_RATE_PER_MINUTE=60000", "SIGNIN_BURST=1000", "SIGNUP_RATE_PER_MINUTE=60000", "SIGNUP_BURST=1000", "BOOKING_PROJECTION=false",
		"NOTIFICATION_API_TOKEN=bench-token-0123456789", "NOTIFICATION_SERVICE_URL="+benchNotifier(b))
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &coreProcess{cmd: cmd, benchService: &benchService{rc: newRawClient(fmt.Sprintf("http://127.0.0.1:%d", port))}}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, _ := p.rc.do("GET", "/readyz", "", nil, nil); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("core not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.admin = p.signIn(b, adminEmail, adminPassword)
	return p
}

func (p *coreProcess) rssMiB() (now, peak float64) {
	return float64(procKiB(p.cmd.Process.Pid, "VmRSS")) / 1024, float64(procKiB(p.cmd.Process.Pid, "VmHWM")) / 1024
}

// window is one window's figures.
type window struct {
	bookings      int
	book, pay, sm loadStats
	rss           float64
}

// BenchmarkBookingGrowth books BENCH_GROWTH_TOTAL seats (one per booking, on 20 shows of 5,000
// seats) in windows of BENCH_GROWTH_WINDOW, paying each window's bookings and reading seat maps
// after it: POST /bookings, POST /payments and GET /shows/:id/seats throughput and p99 per
// window, the core's RSS, and the database's own insert and read-by-_id rates before and after.
// Targets: the last window reaches 80% of the first's throughput, with a p99 at most 1.5x.
// One customer (16 connections) and 64 customers (64 connections).
func BenchmarkBookingGrowth(b *testing.B) {
	total, size := envInt("BENCH_GROWTH_TOTAL", 100000), envInt("BENCH_GROWTH_WINDOW", 10000)
	for _, customers := range []int{1, 64} {
		b.Run(fmt.Sprintf("customers=%d", customers), func(b *testing.B) {
			for b.Loop() {
				growth(b, customers, total, size)
			}
		})
	}
}

func growth(b *testing.B, customers, total, size int) {
	const seatsPerShow = 5000
	p := startCoreProcess(b, "BOOKING_HOLD_TTL=2h", "MAX_OPEN_SEATS_PER_USER=100000")
	conc := 16
	if customers > 1 {
		conc = 64
	}
	toks := p.customers(b, customers)
	nShows := (total + seatsPerShow - 1) / seatsPerShow
	shows := make([]showFixture, nShows)
	for i := range shows {
		shows[i] = p.show(b, seatsPerShow, 50)
	}
	db := connectBench(b, testDBURLOf(p))
	driver := func(label string) {
		coll := db.Collection("bench_driver")
		ids := make([]bson.ObjectID, 2000)
		ins := driverRate(b, len(ids), func(ctx context.Context, i int) error {
			ids[i] = bson.NewObjectID()
			_, err := coll.InsertOne(ctx, bson.M{"_id": ids[i], "userId": "u", "seats": []string{"A1"}, "createdAt": time.Now()})
			return err
		})
		get := driverRate(b, len(ids), func(ctx context.Context, i int) error {
			return coll.FindOne(ctx, bson.M{"_id": ids[i]}).Err()
		})
		b.Logf("database %s: insertOne %s; findOne by _id %s", label, ins, get)
	}
	driver("before")
	var windows []window
	next := 0
	for done := 0; done+size <= total; done += size {
		ids, costs := make([]string, size), make([]float64, size)
		base := next
		book := runLoad(size, conc, func(i int) int {
			f := shows[(base+i)%nShows]
			code, raw := p.rc.do("POST", base1+"/bookings", toks[i%customers], f.booking(1), nil)
			if code == 201 {
				var env struct {
					Data struct {
						ID        string  `json:"_id"`
						TotalCost float64 `json:"totalCost"`
					} `json:"data"`
				}
				_ = json.Unmarshal(raw, &env)
				ids[i], costs[i] = env.Data.ID, env.Data.TotalCost
			}
			return code
		})
		next += size
		if book.statuses[201] != size {
			b.Fatalf("window at %d bookings: %v", done, book)
		}
		pay := runLoad(size, conc, func(i int) int {
			code, _ := p.rc.do("POST", base1+"/payments", toks[i%customers], map[string]any{"bookingId": ids[i], "amount": costs[i]}, nil)
			return code
		})
		if pay.statuses[200] != size {
			b.Fatalf("payments at %d bookings: %v", done, pay)
		}
		// The relay delivers the window's confirmation emails in the background: let it finish,
		// so that each window measures the data grown, not the previous window's emails.
		drainStart := time.Now()
		for {
			n, err := db.Collection("outbox").EstimatedDocumentCount(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Since(drainStart) > 5*time.Minute {
				b.Fatalf("%d confirmation emails still in the outbox after 5 minutes", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		drained := time.Since(drainStart)
		sm := runLoad(2000, conc, func(i int) int {
			code, _ := p.rc.do("GET", base1+"/shows/"+shows[i%nShows].showID+"/seats", "", nil, nil)
			return code
		})
		rss, _ := p.rssMiB()
		w := window{bookings: done + size, book: book, pay: pay, sm: sm, rss: rss}
		windows = append(windows, w)
		b.Logf("%7d bookings: book %6.0f/s p99 %6.1f ms | pay %6.0f/s p99 %6.1f ms | emails relayed %5.1f s later | seat map %6.0f/s p99 %5.1f ms | core RSS %5.1f MiB",
			w.bookings, book.rate(), ms(book.p99), pay.rate(), ms(pay.p99), drained.Seconds(), sm.rate(), ms(sm.p99), rss)
	}
	driver("after")
	_, peak := p.rssMiB()
	first, last := windows[0], windows[len(windows)-1]
	b.ReportMetric(first.book.rate(), "book-first-req/s")
	b.ReportMetric(last.book.rate(), "book-last-req/s")
	b.ReportMetric(ms(first.book.p99), "book-first-p99-ms")
	b.ReportMetric(ms(last.book.p99), "book-last-p99-ms")
	b.ReportMetric(last.pay.rate()/first.pay.rate(), "pay-last/first")
	b.ReportMetric(ms(last.pay.p99)/ms(first.pay.p99), "pay-p99-last/first")
	b.ReportMetric(last.sm.rate()/first.sm.rate(), "seatmap-last/first")
	b.ReportMetric(ms(last.sm.p99)/ms(first.sm.p99), "seatmap-p99-last/first")
	b.ReportMetric(peak, "core-peak-RSS-MiB")
	for _, c := range []struct {
		what        string
		first, last loadStats
	}{{"POST /bookings", first.book, last.book}, {"POST /payments", first.pay, last.pay}, {"GET /shows/:id/seats", first.sm, last.sm}} {
		ratio, p99 := c.last.rate()/c.first.rate(), ms(c.last.p99)/ms(c.first.p99)
		b.Logf("%s: last window %.0f%% of the first's throughput, p99 %.2fx", c.what, 100*ratio, p99)
		if ratio < 0.8 || p99 > 1.5 {
			b.Errorf("%s slowed down with the data: %.0f%% of the first window's throughput (target >= 80%%), p99 %.2fx (target <= 1.5x)",
				c.what, 100*ratio, p99)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// base1 is the API's base path (named apart from the loop variables above).
const base1 = base

func testDBURLOf(p *coreProcess) string {
	for _, kv := range p.cmd.Env {
		if len(kv) > 7 && kv[:7] == "DB_URL=" {
			return kv[7:]
		}
	}
	return ""
}

// BenchmarkExpiryStorm: BENCH_STORM_HOLDS unpaid bookings (one seat each, on shows of 5,000
// seats) whose holds all end at the same moment, with BENCH_STORM_REPLICAS core replicas on one
// database (a list, default "1,3": a sub-benchmark each; the replicas are Mains of this process,
// sharing one clock). It measures booking latency on another show while quiet, then while the
// expirer releases them all: how long the release takes (target 60 s for 100,000) and the
// booking p99 meanwhile (target at most 3x quiet); the bookings go to the replicas in turn.
// Every command the replicas send is counted at a proxy in front of the database: outcome
// inserts (the release's own, less the cancellations of the load) and all commands and writes,
// from the moment the holds end until the clear is over (target: 3 replicas within 1.2x of 1).
func BenchmarkExpiryStorm(b *testing.B) {
	holds := envInt("BENCH_STORM_HOLDS", 100000)
	replicas := []int{1, 3}
	if v := os.Getenv("BENCH_STORM_REPLICAS"); v != "" {
		replicas = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				replicas = append(replicas, n)
			}
		}
	}
	for _, n := range replicas {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			for b.Loop() {
				storm(b, holds, n)
			}
		})
	}
}

func storm(b *testing.B, holds, replicas int) {
	const seatsPerShow = 5000
	var offset atomic.Int64 // the engines' clock runs this far ahead of the wall clock
	u, err := url.Parse(testDBURL(b))
	if err != nil {
		b.Fatal(err)
	}
	wire := startWireCounter(b, u.Host)
	u.Host, u.RawQuery = wire.Addr(), "maxPoolSize=4"
	mains := make([]*Main, replicas)
	for i := range mains {
		cfg := testConfig(b)
		cfg.LogLevel = "error"
		cfg.DBURL = u.String()
		cfg.BookingConfig.HoldTTL = 10 * time.Minute
		cfg.BookingConfig.ExpiryInterval = time.Second
		cfg.BookingConfig.MaxOpenSeatsPerUser = 100000
		cfg.NotificationURL = benchNotifier(b)
		// The benchmark moves the clock: the replicas trust it as it is (a measure against the
		// database's would take the move back).
		cfg.ClockSyncInterval = -1
		if i > 0 {
			cfg.AdminEmail, cfg.AdminPassword = "", ""
		}
		logger := logging.NewTo(&syncBuffer{}, "error", "core")
		if os.Getenv("BENCH_STORM_TRACE") != "" {
			logger = logging.NewTo(os.Stderr, "warn", fmt.Sprintf("core%d", i))
		}
		m := &Main{Config: cfg, Logger: logger, SetupTelemetry: sharedTelemetry,
			Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }}
		if err := m.Run(b.Context()); err != nil {
			m.Close()
			b.Fatalf("Run: %v", err)
		}
		b.Cleanup(func() { m.Close() })
		mains[i] = m
	}
	m := mains[0]
	s := &benchService{m: m, rc: newRawClient("http://" + m.Addr())}
	rcs := make([]*rawClient, replicas)
	for i, r := range mains {
		rcs[i] = newRawClient("http://" + r.Addr())
	}
	s.admin = s.signIn(b, adminEmail, adminPassword)
	toks := s.customers(b, 16)
	// The holds belong to many customers, a hundred each, as in a real storm.
	users := make([]*core.User, max(1, holds/100))
	for i := range users {
		email := fmt.Sprintf("storm-%d-%d@example.com", i, fixtureSeq.Add(1))
		s.call(b, "POST", base+"/auth/signup", "", map[string]string{"name": "Bench", "email": email, "password": "bench-password"}, 201)
		u, err := m.Users.GetByEmail(context.Background(), email)
		if err != nil {
			b.Fatal(err)
		}
		users[i] = u
	}
	nShows := (holds + seatsPerShow - 1) / seatsPerShow
	shows := make([]showFixture, nShows)
	for i := range shows {
		shows[i] = s.show(b, seatsPerShow, 50)
	}
	quietShow := s.show(b, 5000, 50)
	// The holds, through the engine itself (an HTTP round trip each would only take longer).
	seedStart := time.Now()
	seed := runLoad(holds, 32, func(i int) int {
		f := shows[i%nShows]
		_, err := m.Bookings.Book(context.Background(), users[i%len(users)], booking.BookingRequest{TheatreID: f.theatreID, MovieID: f.movieID,
			Timing: f.timing, NoOfSeats: 1})
		if err != nil {
			b.Errorf("seed: %v", err)
			return 500
		}
		return 201
	})
	b.Logf("%d replicas: seeded %d unpaid holds in %v (%.0f/s)", replicas, holds, time.Since(seedStart).Round(time.Millisecond), seed.rate())
	// Each load books and cancels (so the quiet show never sells out), on the replicas in turn;
	// the latency measured is the booking's, POST /bookings alone.
	var cancels atomic.Int64
	bookOn := func(f showFixture, rec *latencies) func(i int) int {
		return func(i int) int {
			rc := rcs[i%replicas]
			t0 := time.Now()
			code, raw := rc.do("POST", base+"/bookings", toks[i%16], f.booking(1), nil)
			rec.add(time.Since(t0))
			if code == 201 {
				var env struct {
					Data struct {
						ID string `json:"_id"`
					} `json:"data"`
				}
				_ = json.Unmarshal(raw, &env)
				rc.do("PATCH", base+"/bookings/"+env.Data.ID, toks[i%16], map[string]any{"status": "CANCELLED"}, nil)
				cancels.Add(1)
			}
			return code
		}
	}
	quietLat := &latencies{}
	quiet := runLoad(2000, 16, bookOn(quietShow, quietLat))
	b.Logf("quiet: %s; POST /bookings p99 %v", quiet, quietLat.p99())
	// Every seeded hold ends now.
	at0, cancels0 := wire.snapshot(), cancels.Load()
	offset.Store(int64(11 * time.Minute))
	start := time.Now()
	var released, over atomic.Bool // the release is done; the clear too
	stormLat, releaseLat := &latencies{}, &latencies{}
	var worst time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		var n int
		var statuses = map[int]int{}
		for !over.Load() {
			stretch := &latencies{}
			inRelease := !released.Load()
			t0 := time.Since(start)
			st := runLoad(500, 16, bookOn(quietShow, stretch))
			n += st.n
			for k, v := range st.statuses {
				statuses[k] += v
			}
			if p := stretch.p99(); ms(p) > 3*ms(quietLat.p99()) {
				b.Logf("a 500-booking stretch from %v: p99 %v", t0.Round(time.Second), p)
			}
			worst = max(worst, stretch.p99())
			stormLat.merge(stretch)
			if inRelease {
				releaseLat.merge(stretch)
			}
		}
		b.Logf("during the storm: %d bookings (%.0f/s), statuses %v; POST /bookings p99 %v, worst p99 of a 500-booking stretch %v",
			n, float64(n)/time.Since(start).Seconds(), statuses, stormLat.p99(), worst)
	})
	// The expirer of the replica that leads it reports what its last step left: the storm is
	// released once a step begun after the holds ended leaves no due bucket unreleased, and
	// over once no due bucket is left in the expiry queue (the clear dropped them all).
	steps0 := make([]int64, replicas)
	for i, r := range mains {
		steps0[i] = r.Bookings.ExpiryProgress().Steps
	}
	store := mongostore.NewBookings(connectBench(b, testDBURLOfMain(b, m)))
	deadline, trace := time.Now().Add(10*time.Minute), time.Now()
	var took time.Duration
	var atRelease wireCounts
	var releaseCancels int64
	for {
		if took == 0 {
			for i, r := range mains {
				if p := r.Bookings.ExpiryProgress(); p.Steps >= steps0[i]+2 && p.Release == 0 {
					took = time.Since(start)
					atRelease, releaseCancels = wire.snapshot(), cancels.Load()
					released.Store(true)
					b.Logf("released in %v by replica %d; %d buckets left to clear", took.Round(time.Millisecond), i, p.Clear)
					break
				}
			}
		}
		if took > 0 {
			buckets, err := store.IntentBuckets(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			due := 0
			for _, bk := range buckets {
				if !bk.End.After(m.Now()) {
					due++
				}
			}
			if due == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			var state []string
			for i, r := range mains {
				state = append(state, fmt.Sprintf("replica %d: %+v, leads %v", i, r.Bookings.ExpiryProgress(), r.Electors[JobExpiry].Leader()))
			}
			b.Fatalf("the storm still not over after 10 minutes: %s", strings.Join(state, "; "))
		}
		if os.Getenv("BENCH_STORM_TRACE") != "" && time.Now().After(trace) {
			trace = time.Now().Add(5 * time.Second)
			for i, r := range mains {
				b.Logf("%v: replica %d: %+v, leads %v", time.Since(start).Round(time.Second), i, r.Bookings.ExpiryProgress(), r.Electors[JobExpiry].Leader())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cleared := time.Since(start)
	atClear, clearCancels := wire.snapshot(), cancels.Load()
	over.Store(true)
	wg.Wait()
	quietP99, stormP99, releaseP99 := quietLat.p99(), stormLat.p99(), releaseLat.p99()
	// What the database was asked, from the holds' end: during the release, and until the
	// clear was over. A cancellation of the load inserts an outcome: those are taken out.
	rel, all := atRelease.since(at0), atClear.since(at0)
	const outcomes = "insert " + mongostore.OutcomesCollection
	relOutcomes := rel.docs[outcomes] - (releaseCancels - cancels0)
	allOutcomes := all.docs[outcomes] - (clearCancels - cancels0)
	cmds, writes := all.total()
	b.Logf("database, from the holds' end to the clear's: %d outcome inserts for %d holds (%d by the release), %d commands, %d documents written; busiest: %s",
		allOutcomes, holds, relOutcomes, cmds, writes, all.top(8))
	b.ReportMetric(float64(allOutcomes), "outcome-inserts")
	b.ReportMetric(float64(cmds), "db-commands")
	b.ReportMetric(float64(writes), "db-writes")
	b.ReportMetric(took.Seconds(), "release-s")
	b.ReportMetric(cleared.Seconds(), "cleared-s")
	b.ReportMetric(ms(quietP99), "quiet-p99-ms")
	b.ReportMetric(ms(releaseP99), "release-p99-ms")
	b.ReportMetric(ms(stormP99), "storm-p99-ms")
	b.ReportMetric(ms(worst), "worst-stretch-p99-ms")
	b.Logf("released %d holds in %v (%.0f/s), cleared in %v; booking p99 quiet %v, during the release %v (%.1fx), during release and clear %v (%.1fx; worst 500-booking stretch %.1fx)",
		holds, took.Round(time.Millisecond), float64(holds)/took.Seconds(), cleared.Round(time.Millisecond), quietP99,
		releaseP99, ms(releaseP99)/ms(quietP99), stormP99, ms(stormP99)/ms(quietP99), ms(worst)/ms(quietP99))
	for _, f := range shows[:min(3, len(shows))] {
		if hs, err := store.ShowHolds(context.Background(), f.showID); err != nil || len(hs) != 0 {
			b.Errorf("show %s: %d holds left after the clear (%v)", f.showID, len(hs), err)
		}
	}
	// Every seat is free again.
	for _, f := range shows[:min(3, len(shows))] {
		var sm core.SeatMap
		_ = json.Unmarshal(s.call(b, "GET", base+"/shows/"+f.showID+"/seats", "", nil, 200), &sm)
		if len(sm.Free) != seatsPerShow {
			b.Errorf("show %s: %d free of %d after the storm", f.showID, len(sm.Free), seatsPerShow)
		}
	}
	if took > time.Minute*time.Duration(max(1, holds/100000)) {
		b.Errorf("releasing %d holds took %v (target 60 s per 100,000)", holds, took)
	}
	if ms(stormP99) > 3*ms(quietP99) {
		b.Errorf("booking p99 during the storm (release and clear) %v is over 3x quiet %v", stormP99, quietP99)
	}
}

// testDBURLOfMain is the database URL of m without the proxy: straight to the test server.
func testDBURLOfMain(b *testing.B, m *Main) string {
	u, err := url.Parse(m.Config.DBURL)
	if err != nil {
		b.Fatal(err)
	}
	direct, err := url.Parse(devdb.TestURI(b))
	if err != nil {
		b.Fatal(err)
	}
	u.Host, u.RawQuery = direct.Host, ""
	return u.String()
}

// connectBench is a driver connection of the benchmark's own to the database at url.
func connectBench(b *testing.B, url string) *mongo.Database {
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Disconnect(context.Background()) })
	return client.Database(dbNameOf(url))
}

func dbNameOf(url string) string {
	s := url
	if i := strings.Index(s, "?"); i >= 0 {
		s = s[:i]
	}
	return s[strings.LastIndex(s, "/")+1:]
}
