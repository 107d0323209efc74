package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// benchConcurrency is the number of concurrent clients in every benchmark.
const benchConcurrency = 16

var benchBody = []byte(`{"subject":"Your booking is confirmed","content":"<p>Booking 42: 2 seats for Dune, 18:30, Screen 3.</p>",` +
	`"recepientEmails":["customer@example.com"],"requester":"core-api"}`)

// runConcurrent runs op n times in total across benchConcurrency goroutines and returns the
// wall time and each operation's latency, sorted.
func runConcurrent(b *testing.B, n int, op func() error) (time.Duration, []time.Duration) {
	b.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d of %d operations failed; first: %v", f, n, firstErr.Load())
	}
	slices.Sort(lat)
	return elapsed, lat
}

func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i].Microseconds()) / 1000
}

func benchClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: benchConcurrency * 2, MaxIdleConns: benchConcurrency * 2, IdleConnTimeout: time.Minute,
	}}
}

func postTicket(client *http.Client, target, token string) error {
	req, err := http.NewRequest("POST", target, bytes.NewReader(benchBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	var buf [4096]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// startBenchServer serves the API the way cmd/notification's Main does (httpapi.New on a
// mongostore, telemetry installed by TestMain) on 127.0.0.1:0 over the embedded database.
// Main itself lives in package main, which Go cannot import.
func startBenchServer(b *testing.B, token string) (target string) {
	b.Helper()
	srv := New(realStore(b), Options{Token: token, Logger: quiet})
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx, 0)
		<-done
	})
	return "http://" + srv.Addr() + BasePath
}

// BenchmarkCreateTicketHTTP: POST / over real HTTP, 16 concurrent clients, b.N requests in all.
func BenchmarkCreateTicketHTTP(b *testing.B) {
	const token = "bench-token"
	target := startBenchServer(b, token)
	client := benchClient()
	// Warm up: open the connections and the database's pages.
	if _, lat := runConcurrent(b, benchConcurrency*4, func() error { return postTicket(client, target, token) }); len(lat) == 0 {
		b.Fatal("warm-up")
	}
	b.ResetTimer()
	elapsed, lat := runConcurrent(b, b.N, func() error { return postTicket(client, target, token) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(percentileMS(lat, 0.50), "p50_ms")
	b.ReportMetric(percentileMS(lat, 0.99), "p99_ms")
}

// BenchmarkDriverInsert: the same ticket document as a create stores, inserted with the driver
// directly (same indexes, same concurrency): the floor under BenchmarkCreateTicketHTTP.
func BenchmarkDriverInsert(b *testing.B) {
	_, db := realDB(b)
	coll := db.Collection(mongostore.TicketsCollection)
	ctx := context.Background()
	tmpl := notification.Ticket{
		Subject: "Your booking is confirmed", Content: "<p>Booking 42: 2 seats for Dune, 18:30, Screen 3.</p>",
		RecipientEmails: []string{"customer@example.com"}, Requester: "core-api", Status: notification.StatusPending,
		Errors: []notification.AttemptError{}, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	insert := func() error {
		t := tmpl
		now := time.Now().UTC().Truncate(time.Millisecond)
		t.ID, t.CreatedAt, t.UpdatedAt, t.NextAttemptAt = notification.NewID(), now, now, now
		_, err := coll.InsertOne(ctx, &t)
		return err
	}
	runConcurrent(b, benchConcurrency*4, insert)
	b.ResetTimer()
	elapsed, lat := runConcurrent(b, b.N, insert)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "inserts/s")
	b.ReportMetric(percentileMS(lat, 0.99), "p99_ms")
}

var rss struct {
	once             sync.Once
	idle, load, peak float64
	creates          int
	createsPerSec    float64
	err              error
	binSize          float64
}

// BenchmarkNotificationRSS builds cmd/notification, runs it against the embedded database,
// and reports its resident memory idle and after 5,000 creates at concurrency 16. The work
// is fixed: it runs once whatever b.N is.
func BenchmarkNotificationRSS(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/<pid>/status")
	}
	rss.once.Do(func() { rss.err = measureRSS(b) })
	if rss.err != nil {
		b.Fatal(rss.err)
	}
	b.ReportMetric(rss.idle, "idle_rss_MiB")
	b.ReportMetric(rss.load, "load_rss_MiB")
	b.ReportMetric(rss.peak, "peak_rss_MiB")
	b.ReportMetric(rss.createsPerSec, "req/s")
	b.ReportMetric(rss.binSize, "binary_MiB")
}

func measureRSS(b *testing.B) error {
	dir, err := os.MkdirTemp("", "notification-rss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "notification")
	build := exec.Command("go", "build", "-o", bin, "github.com/cineflow/cineflow/services/notification/cmd/notification")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	if fi, err := os.Stat(bin); err == nil {
		rss.binSize = float64(fi.Size()) / (1 << 20)
	}
	u, err := url.Parse(devdb.TestURI(b))
	if err != nil {
		return err
	}
	u.Path = "/" + devdb.TestDatabase(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	const token = "rss-bench-token"
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL=" + u.String(),
		"NOTIFICATION_API_TOKEN=" + token, "APP_ENV=production", "LOG_LEVEL=warn"}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("binary not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // settle
	if rss.idle, _, err = procRSS(cmd.Process.Pid); err != nil {
		return err
	}
	client := benchClient()
	rss.creates = 5000
	elapsed, _ := runConcurrent(b, rss.creates, func() error { return postTicket(client, base+BasePath, token) })
	rss.createsPerSec = float64(rss.creates) / elapsed.Seconds()
	if rss.load, rss.peak, err = procRSS(cmd.Process.Pid); err != nil {
		return err
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("binary exit: %v\n%s", err, logs.String())
	}
	return nil
}

// procRSS reads VmRSS and VmHWM (peak) of pid, in MiB.
func procRSS(pid int) (rssMiB, peakMiB float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rssMiB = kb / 1024
		case "VmHWM:":
			peakMiB = kb / 1024
		}
	}
	if rssMiB == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rssMiB, peakMiB, sc.Err()
}
