package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

	"github.com/cineflow/cineflow/pkg/logging"
)

// benchNotifier is a stand-in for the notification service that accepts every email at once,
// so that the figures are the core's own; it returns the URL to post to.
func benchNotifier(b *testing.B) string {
	noti := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"success":true,"error":{},"data":{"_id":"000000000000000000000000","status":"PENDING"},"message":"created"}`))
	}))
	b.Cleanup(noti.Close)
	return noti.URL + "/notiservice/api/v1/notifications"
}

// benchService is a core service started for a benchmark, with a raw client.
type benchService struct {
	m     *Main
	rc    *rawClient
	admin string
}

func startBench(b *testing.B, edit func(*Config)) *benchService {
	b.Helper()
	cfg := testConfig(b)
	cfg.LogLevel = "error"
	// As make run connects: a small pool suits the embedded database (SQLite underneath).
	pool := "4"
	if v := os.Getenv("BENCH_DB_POOL"); v != "" {
		pool = v
	}
	cfg.DBURL += "?maxPoolSize=" + pool
	cfg.NotificationURL = benchNotifier(b)
	// The load books far more unpaid seats per customer than fair use allows a person.
	cfg.BookingConfig.MaxOpenSeatsPerUser = 100000
	if edit != nil {
		edit(&cfg)
	}
	m := &Main{Config: cfg, Logger: logging.NewTo(&syncBuffer{}, "error", "core"), SetupTelemetry: sharedTelemetry}
	if err := m.Run(b.Context()); err != nil {
		m.Close()
		b.Fatalf("Run: %v", err)
	}
	b.Cleanup(func() { m.Close() })
	s := &benchService{m: m, rc: newRawClient("http://" + m.Addr())}
	s.admin = s.signIn(b, adminEmail, adminPassword)
	return s
}

func (s *benchService) call(b *testing.B, method, path, token string, body any, want int) json.RawMessage {
	b.Helper()
	st, raw := s.rc.do(method, path, token, body, nil)
	if st != want {
		b.Fatalf("%s %s: %d %s", method, path, st, raw)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(raw, &env)
	return env.Data
}

func (s *benchService) signIn(b *testing.B, email, password string) string {
	var sess struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(s.call(b, "POST", base+"/auth/signin", "", map[string]string{"email": email, "password": password}, 200), &sess)
	return sess.Token
}

func (s *benchService) customers(b *testing.B, n int) []string {
	toks := make([]string, n)
	for i := range toks {
		email := fmt.Sprintf("bench%d-%d@example.com", i, fixtureSeq.Add(1))
		s.call(b, "POST", base+"/auth/signup", "", map[string]string{"name": "Bench", "email": email, "password": "bench-password"}, 201)
		toks[i] = s.signIn(b, email, "bench-password")
	}
	return toks
}

func dataID(raw json.RawMessage) string {
	var v struct {
		ID string `json:"_id"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.ID
}

// show creates a movie, a theatre running it and a show of seats seats.
func (s *benchService) show(b *testing.B, seats, perRow int) showFixture {
	n := fixtureSeq.Add(1)
	movie := dataID(s.call(b, "POST", base+"/movies", s.admin, map[string]any{"name": fmt.Sprintf("Bench movie %d", n),
		"description": "d", "casts": []string{"a"}, "trailerUrl": "https://example.com/t", "releaseDate": "2024-01-15",
		"director": "d", "releaseStatus": "RELEASED"}, 201))
	theatre := dataID(s.call(b, "POST", base+"/theatres", s.admin, map[string]any{"name": fmt.Sprintf("Bench theatre %d", n),
		"description": "d", "city": "Pune", "pinCode": 411001, "address": "a"}, 201))
	s.call(b, "PATCH", base+"/theatres/"+theatre+"/movies", s.admin, map[string]any{"movieIds": []string{movie}, "insert": true}, 200)
	f := showFixture{theatreID: theatre, movieID: movie, timing: "2030-06-01T18:30:00Z", seats: seats, price: 100}
	f.showID = dataID(s.call(b, "POST", base+"/shows", s.admin, map[string]any{"theatreId": theatre, "movieId": movie,
		"timing": f.timing, "noOfSeats": seats, "seatsPerRow": perRow, "price": 100}, 201))
	return f
}

// driverRate measures the database's own rate for an operation at concurrency 16.
func driverRate(b *testing.B, n int, op func(ctx context.Context, i int) error) loadStats {
	ctx := context.Background()
	return runLoad(n, 16, func(i int) int {
		if err := op(ctx, i); err != nil {
			b.Errorf("driver: %v", err)
			return 500
		}
		return 200
	})
}

// benchDB is a driver connection like the service's own (the embedded database's URL carries
// its pool size in make run; tests use testConfig's).
func benchDB(b *testing.B, s *benchService) *mongo.Database {
	client, err := mongo.Connect(options.Client().ApplyURI(s.m.Config.DBURL))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Disconnect(context.Background()) })
	return client.Database(s.m.DB.Name())
}

// BenchmarkBookingHTTP: 1,000 POST /bookings (one seat each, on a 2,000-seat show) and then
// their 1,000 POST /payments, at concurrency 16 over HTTP after a warm-up of 16 bookings;
// beside them the driver's insertOne and findOne-by-_id rates at the same concurrency.
func BenchmarkBookingHTTP(b *testing.B) {
	s := startBench(b, nil)
	const n = 1000
	// The database's own rates first, on a quiet database: after the payments the relay is
	// still delivering their emails in the background.
	db := benchDB(b, s)
	coll := db.Collection("bench_driver")
	ids := make([]bson.ObjectID, n)
	ins := driverRate(b, n, func(ctx context.Context, i int) error {
		ids[i] = bson.NewObjectID()
		_, err := coll.InsertOne(ctx, bson.M{"_id": ids[i], "userId": "u", "seats": []string{"A1"}, "totalCost": 100.0, "createdAt": time.Now()})
		return err
	})
	ins.report(b, "driver-insert-")
	get := driverRate(b, n, func(ctx context.Context, i int) error {
		return coll.FindOne(ctx, bson.M{"_id": ids[i]}).Err()
	})
	get.report(b, "driver-get-")
	toks := s.customers(b, 16)
	f := s.show(b, 2000, 50)
	bookings := make([]string, n)
	costs := make([]float64, n)
	for b.Loop() {
		// Warm up: one booking per customer (caches of users, shows and the seat view fill),
		// so that the figures are the steady state, not the first second.
		runLoad(16, 16, func(i int) int {
			code, _ := s.rc.do("POST", base+"/bookings", toks[i], f.booking(1), nil)
			return code
		})
		st := runLoad(n, 16, func(i int) int {
			code, raw := s.rc.do("POST", base+"/bookings", toks[i%16], f.booking(1), nil)
			if code == 201 {
				var bk struct {
					ID        string  `json:"_id"`
					TotalCost float64 `json:"totalCost"`
				}
				var env struct {
					Data *struct {
						ID        string  `json:"_id"`
						TotalCost float64 `json:"totalCost"`
					} `json:"data"`
				}
				_ = json.Unmarshal(raw, &env)
				if env.Data != nil {
					bk = *env.Data
				}
				bookings[i], costs[i] = bk.ID, bk.TotalCost
			}
			return code
		})
		if st.statuses[201] != n {
			b.Fatalf("bookings: %v", st)
		}
		st.report(b, "book-")
		st = runLoad(n, 16, func(i int) int {
			code, _ := s.rc.do("POST", base+"/payments", toks[i%16], map[string]any{"bookingId": bookings[i], "amount": costs[i]}, nil)
			return code
		})
		if st.statuses[200] != n {
			b.Fatalf("payments: %v", st)
		}
		st.report(b, "pay-")
		f = s.show(b, 2000, 50)
	}
}

// BenchmarkContention: 1,000 booking attempts (one seat each, then paid) on a 100-seat show
// from 64 concurrent clients: exactly 100 seats sold, the rest 409, no errors.
func BenchmarkContention(b *testing.B) {
	s := startBench(b, nil)
	toks := s.customers(b, 64)
	for b.Loop() {
		f := s.show(b, 100, 10)
		var sold, conflicts, errors atomic.Int64
		st := runLoad(1000, 64, func(i int) int {
			tok := toks[i%64]
			code, raw := s.rc.do("POST", base+"/bookings", tok, f.booking(1), nil)
			switch code {
			case 201:
				var env struct {
					Data struct {
						ID        string  `json:"_id"`
						TotalCost float64 `json:"totalCost"`
					} `json:"data"`
				}
				_ = json.Unmarshal(raw, &env)
				pc, _ := s.rc.do("POST", base+"/payments", tok, map[string]any{"bookingId": env.Data.ID, "amount": env.Data.TotalCost}, nil)
				if pc == 200 {
					sold.Add(1)
				} else {
					errors.Add(1)
				}
				return pc
			case 409:
				conflicts.Add(1)
			default:
				errors.Add(1)
			}
			return code
		})
		b.ReportMetric(st.elapsed.Seconds(), "s/1000-attempts")
		b.ReportMetric(float64(sold.Load()), "sold")
		b.ReportMetric(float64(conflicts.Load()), "conflicts")
		b.ReportMetric(float64(errors.Load()), "errors")
		b.Logf("contention: %s; sold %d, conflicts %d, errors %d", st, sold.Load(), conflicts.Load(), errors.Load())
		if sold.Load() != 100 || errors.Load() != 0 {
			b.Fatalf("sold %d (want 100), errors %d (want 0)", sold.Load(), errors.Load())
		}
	}
}

// BenchmarkCoreMemory runs the core binary against the embedded database and reads its
// resident size idle and during 4,000 bookings and catalogue reads at concurrency 16.
func BenchmarkCoreMemory(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "core")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for b.Loop() {
		port := freePort(b)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL="+testDBURL(b)+"?maxPoolSize=4",
			"JWT_SECRET="+testSecret, "ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword, "BCRYPT_COST=4",
			"APP_ENV=development", "LOG_LEVEL=error", "SIGNIN_RATE_PER_MINUTE=60000", "SIGNIN_BURST=1000", "BOOKING_PROJECTION=false",
			"NOTIFICATION_SERVICE_URL=http://127.0.0.1:1/notiservice/api/v1/notifications")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		s := &benchService{rc: newRawClient(fmt.Sprintf("http://127.0.0.1:%d", port))}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if st, _ := s.rc.do("GET", "/readyz", "", nil, nil); st == 200 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatal("core not ready")
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.admin = s.signIn(b, adminEmail, adminPassword)
		time.Sleep(time.Second)
		idle := procKiB(cmd.Process.Pid, "VmRSS")
		toks := s.customers(b, 16)
		f := s.show(b, 5000, 50)
		var peak atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					if v := procKiB(cmd.Process.Pid, "VmRSS"); v > peak.Load() {
						peak.Store(v)
					}
				}
			}
		})
		st := runLoad(4000, 16, func(i int) int {
			if i%2 == 0 {
				code, _ := s.rc.do("GET", base+"/movies", "", nil, nil)
				return code
			}
			code, _ := s.rc.do("POST", base+"/bookings", toks[i%16], f.booking(1), nil)
			return code
		})
		close(stop)
		wg.Wait()
		hwm := procKiB(cmd.Process.Pid, "VmHWM")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		b.ReportMetric(float64(idle)/1024, "idle-MiB")
		b.ReportMetric(float64(max(peak.Load(), hwm))/1024, "load-peak-MiB")
		b.Logf("core RSS idle %.1f MiB, peak under load %.1f MiB (%s)", float64(idle)/1024, float64(max(peak.Load(), hwm))/1024, st)
	}
}

func procKiB(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
