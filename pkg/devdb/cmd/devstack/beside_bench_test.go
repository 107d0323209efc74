package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load is the figures of a closed-loop run.
type load struct {
	n        int
	elapsed  time.Duration
	lat      []time.Duration
	statuses map[int]int
}

func (l load) rate() float64 { return float64(l.n) / l.elapsed.Seconds() }

func (l load) p(q float64) time.Duration {
	if len(l.lat) == 0 {
		return 0
	}
	s := slices.Clone(l.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func (l load) String() string {
	return fmt.Sprintf("%d in %v: %.0f/s, p50 %v, p99 %v, statuses %v", l.n, l.elapsed.Round(time.Millisecond), l.rate(),
		l.p(0.5).Round(100*time.Microsecond), l.p(0.99).Round(100*time.Microsecond), l.statuses)
}

// runLoad calls op n times from c goroutines (n < 0: until stop is closed).
func runLoad(n, c int, stop <-chan struct{}, op func(i int) int) load {
	var next atomic.Int64
	var mu sync.Mutex
	l := load{statuses: map[int]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if n >= 0 && i >= n {
					return
				}
				if n < 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				t0 := time.Now()
				code := op(i)
				d := time.Since(t0)
				mu.Lock()
				l.lat = append(l.lat, d)
				l.statuses[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l.elapsed, l.n = time.Since(start), len(l.lat)
	return l
}

type rawHTTP struct{ c *http.Client }

func (r rawHTTP) do(method, url string, header map[string]string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return -1, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// BenchmarkBookingBesideSweep runs the whole system as `make run` does (bin/devstack: the
// embedded database, notification, core) with a fake Resend that answers at once, and measures
// POST /bookings (16 clients) on a quiet system, then while one sweep (bin/sweeper, as the
// CronJob runs it) drains 20,000 tickets against that unlimited provider. Targets: booking
// throughput at least 70% of quiet, p99 at most 2x. Needs port 3000 (devstack's core) free.
func BenchmarkBookingBesideSweep(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("needs /proc to make sure no process outlives the benchmark")
	}
	if err := portFree(fmt.Sprintf(":%d", corePort)); err != nil {
		b.Fatalf("port %d is in use (another `make run`?): %v", corePort, err)
	}
	tickets := 20000
	if v := os.Getenv("BENCH_SWEEP_TICKETS"); v != "" {
		fmt.Sscan(v, &tickets)
	}
	tmp := b.TempDir()
	binDir := filepath.Join(tmp, "bin")
	buildStack(b, binDir)
	root := filepath.Dir(strings.TrimSpace(string(must(exec.Command("go", "env", "GOWORK").Output()))))
	build := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./resendfake/cmd/resendfake")
	build.Dir, build.Env = filepath.Join(root, "pkg", "devdb"), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build resendfake: %v\n%s", err, out)
	}
	fakeAddr := freeAddr(b)
	fake := exec.Command(filepath.Join(binDir, "resendfake"), "-addr", fakeAddr, "-rate-limit", "0")
	fake.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := fake.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fake.Process.Kill(); _ = fake.Wait() })

	notiAddr := freeAddr(b)
	_, notiPort, _ := net.SplitHostPort(notiAddr)
	dbAddr := freeAddr(b)
	work := filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		b.Fatal(err)
	}
	var output lockedBuffer
	ds := exec.Command(filepath.Join(binDir, "devstack"), "-db-addr", dbAddr, "-db-dir", filepath.Join(tmp, "db"),
		"-notification", filepath.Join(binDir, "notification"), "-core", filepath.Join(binDir, "core"),
		"-sweeper", filepath.Join(binDir, "sweeper"))
	ds.Dir = work
	ds.Env = stackEnv(map[string]string{
		"SWEEP_INTERVAL": "24h", "PORT": notiPort, "LOG_LEVEL": "warn", "OUTBOX_DIR": filepath.Join(tmp, "outbox"),
		"BOOKING_HOLD_TTL": "1h", "MAX_OPEN_SEATS_PER_USER": "100000",
		"SIGNUP_RATE_PER_MINUTE": "60000", "SIGNUP_BURST": "1000",
	})
	ds.Stdout, ds.Stderr = &output, &output
	ds.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ds.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = ds.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = ds.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-ds.Process.Pid, syscall.SIGKILL)
		}
		for _, pid := range strays(binDir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if b.Failed() {
			b.Logf("devstack output:\n%s", tail(output.String(), 80))
		}
	})
	h := rawHTTP{c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	coreURL := fmt.Sprintf("http://127.0.0.1:%d%s", corePort, coreAPI)
	for deadline := time.Now().Add(3 * time.Minute); ; {
		if st, _ := h.do("GET", fmt.Sprintf("http://127.0.0.1:%d/readyz", corePort), nil, nil); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the stack did not come up within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	core := caller{t: b, client: h.c, base: coreURL}
	admin := map[string]string{"x-access-token": field(b, core.call("POST", "/auth/signin", nil,
		map[string]string{"email": devAdminEmail, "password": devAdminPass}, 200), "token")}
	type show struct{ theatre, movie string }
	var shows []show
	for i := range 16 { // 80,000 seats: more than the load books
		movie := field(b, core.call("POST", "/movies", admin, map[string]any{"name": fmt.Sprintf("Bench %d", i), "description": "d",
			"casts": []string{"a"}, "trailerUrl": "https://example.com/t", "releaseDate": "2024-01-15", "director": "d",
			"releaseStatus": "RELEASED"}, 201), "_id")
		theatre := field(b, core.call("POST", "/theatres", admin, map[string]any{"name": fmt.Sprintf("Hall %d", i), "description": "d",
			"city": "Pune", "pinCode": 411001, "address": "a"}, 201), "_id")
		core.call("POST", "/shows", admin, map[string]any{"theatreId": theatre, "movieId": movie, "timing": "2030-06-01T18:30:00Z",
			"noOfSeats": 5000, "seatsPerRow": 50, "price": 100}, 201)
		shows = append(shows, show{theatre, movie})
	}
	toks := make([]string, 16)
	for i := range toks {
		email := fmt.Sprintf("beside-%d-%d@example.com", i, time.Now().UnixNano())
		core.call("POST", "/auth/signup", nil, map[string]string{"name": "Bench", "email": email, "password": "bench-password"}, 201)
		toks[i] = field(b, core.call("POST", "/auth/signin", nil, map[string]string{"email": email, "password": "bench-password"}, 200), "token")
	}
	var booked atomic.Int64
	book := func(i int) int {
		k := booked.Add(1)
		sh := shows[int(k)%len(shows)]
		code, _ := h.do("POST", coreURL+"/bookings", map[string]string{"x-access-token": toks[i%16]},
			map[string]any{"theatreId": sh.theatre, "movieId": sh.movie, "timing": "2030-06-01T18:30:00Z", "noOfSeats": 1})
		return code
	}
	runLoad(200, 16, nil, book) // warm-up
	quiet := runLoad(3000, 16, nil, book)
	b.Logf("bookings, quiet: %s", quiet)

	notiURL := "http://" + notiAddr + notificationAPI
	bearer := map[string]string{"Authorization": "Bearer " + devToken}
	created := runLoad(tickets, 16, nil, func(i int) int {
		code, _ := h.do("POST", notiURL, bearer, map[string]any{"subject": fmt.Sprint("Ticket ", i), "content": "Hello",
			"recepientEmails": []string{fmt.Sprintf("guest%d@example.com", i)}})
		return code
	})
	b.Logf("tickets created: %s", created)
	if created.statuses[201] != tickets {
		b.Fatalf("tickets: %v", created.statuses)
	}

	var sweepOut lockedBuffer
	sweep := exec.Command(filepath.Join(binDir, "sweeper"))
	sweep.Dir = work
	sweepEnv := map[string]string{"DB_URL": "mongodb://" + dbAddr + "/", "APP_ENV": "development",
		"RESEND_API_KEY": "re_bench", "RESEND_BASE_URL": "http://" + fakeAddr, "RESEND_RATE_LIMIT": "1000",
		"SWEEP_DEADLINE": "10m", "LOG_LEVEL": "info"}
	if v := os.Getenv("BENCH_SWEEP_DB_SHARE"); v != "" {
		sweepEnv["SWEEP_DB_SHARE"] = v // default: the sweeper's own (0.25)
	}
	sweep.Env = stackEnv(sweepEnv)
	sweep.Stdout, sweep.Stderr = &sweepOut, &sweepOut
	stop := make(chan struct{})
	var during load
	var wg sync.WaitGroup
	wg.Go(func() { during = runLoad(-1, 16, stop, book) })
	began := time.Now()
	err := sweep.Run()
	took := time.Since(began)
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatalf("sweeper: %v\n%s", err, tail(sweepOut.String(), 30))
	}
	b.Logf("sweep of %d tickets beside the bookings: %v (%.0f tickets/s); %s", tickets, took.Round(time.Millisecond),
		float64(tickets)/took.Seconds(), lastLine(sweepOut.String(), "sweep finished"))
	b.Logf("bookings during the sweep: %s", during)
	ratio, p99 := during.rate()/quiet.rate(), float64(during.p(0.99))/float64(quiet.p(0.99))
	b.ReportMetric(quiet.rate(), "quiet-book/s")
	b.ReportMetric(during.rate(), "sweep-book/s")
	b.ReportMetric(float64(quiet.p(0.99).Microseconds())/1000, "quiet-p99-ms")
	b.ReportMetric(float64(during.p(0.99).Microseconds())/1000, "sweep-p99-ms")
	b.ReportMetric(float64(tickets)/took.Seconds(), "sweep-tickets/s")
	b.Logf("beside the sweep: %.0f%% of the quiet booking rate, p99 %.2fx quiet", 100*ratio, p99)
	if ratio < 0.7 || p99 > 2 {
		b.Errorf("background work starves requests: %.0f%% of the quiet rate (target >= 70%%), p99 %.2fx (target <= 2x)", 100*ratio, p99)
	}
	for b.Loop() {
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// lastLine returns the last line of s that contains sub.
func lastLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
