package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/resendmail"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

// seedDelivered stores n tickets already delivered, as sweeps leave them: the ticket
// documents (projected SUCCESS), their assignments, outcomes and batches (done, 100 tickets
// each), and the tally entries. Bulk inserts of 1,000 documents.
func (w *world) seedDelivered(t testing.TB, n int) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	coll := func(name string) func([]any) {
		c := w.db.Collection(name)
		return func(docs []any) {
			for len(docs) > 0 {
				chunk := docs[:min(1000, len(docs))]
				docs = docs[len(chunk):]
				if _, err := c.InsertMany(ctx, chunk, options.InsertMany().SetOrdered(false)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var tally int64
	for start := 0; start < n; start += 10000 {
		var tickets, assignments, outcomes, batches, entries []any
		for bs := start; bs < min(n, start+10000); bs += sweeper.MaxBatch {
			b := notification.Batch{ID: notification.NewID().Hex(), From: "CineFlow <tickets@cineflow.test>", Verified: true,
				Attempts: 1, Done: true, NextAttemptAt: now, Errors: []notification.AttemptError{}, CreatedAt: now, UpdatedAt: now,
				FirstSendAt: &now, Oldest: now}
			for i := bs; i < min(n, bs+sweeper.MaxBatch); i++ {
				id := notification.NewID()
				sent := now
				tickets = append(tickets, notification.Ticket{ID: id, Subject: fmt.Sprintf("Booking #%d confirmed", i),
					Content:         strings.Repeat("Your seats are A1, A2. Enjoy the show! ", 10),
					RecipientEmails: []string{fmt.Sprintf("past%d@example.com", i)}, Status: notification.StatusSuccess,
					Attempts: 1, Errors: []notification.AttemptError{}, SentAt: &sent, ProviderMessageID: "msg-" + id.Hex(),
					Batch: b.ID, CreatedAt: now, UpdatedAt: now})
				key := notification.AssignmentKey(id, 0)
				assignments = append(assignments, notification.Assignment{Key: key, Ticket: id, Batch: b.ID, CreatedAt: now})
				outcomes = append(outcomes, notification.Outcome{Key: key, Ticket: id, Status: notification.StatusSuccess,
					ProviderMessageID: "msg-" + id.Hex(), SentAt: &sent, Attempts: 1, At: now})
				b.Members = append(b.Members, notification.Member{Ticket: id})
			}
			b.Size = len(b.Members)
			batches = append(batches, b)
			entries = append(entries, bson.M{"_id": strconv.FormatInt(tally, 10), "seq": tally,
				"key": notification.BatchTallyKey(b.ID), "success": int64(b.Size), "failed": int64(0), "requeued": int64(0), "at": now})
			tally++
		}
		coll(nstore.TicketsCollection)(tickets)
		coll(nstore.AssignmentsCollection)(assignments)
		coll(nstore.OutcomesCollection)(outcomes)
		coll(nstore.BatchesCollection)(batches)
		coll(nstore.TallyCollection)(entries)
	}
	if tally > 0 { // folded, as sweeps and the service's figures leave the tally
		coll(nstore.TallySnapshotsCollection)([]any{bson.M{"_id": "0", "seq": int64(0), "upto": tally,
			"success": int64(n), "failed": int64(0), "requeued": int64(0), "at": now}})
	}
}

// sweepOnce runs the sweeper binary once and returns its "sweep finished" log line and its
// wall time and peak resident size.
func sweepOnce(b testing.TB, w *world, extra ...string) (map[string]any, time.Duration, float64) {
	b.Helper()
	cmd := exec.Command(binary(b))
	cmd.Env = append(os.Environ(), w.env(append([]string{"LOG_LEVEL=info"}, extra...)...)...)
	stderr, _ := cmd.StderrPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	hwm := watchHWM(cmd.Process.Pid)
	var finished map[string]any
	var tail bytes.Buffer
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "sweep finished" {
			finished = line
		}
		if tail.Len() < 1<<16 {
			tail.Write(sc.Bytes())
			tail.WriteByte('\n')
		}
	}
	if err := cmd.Wait(); err != nil || finished == nil {
		b.Fatalf("sweeper: %v\n%s", err, tail.String())
	}
	return finished, time.Since(start), hwm()
}

// BenchmarkSweepOverDelivered: a sweep of 1,000 pending tickets, alone and beside 100,000
// tickets delivered before (their tickets, assignments, outcomes, batches and tally). The
// sweep reads only what is left to do, so both cost the same. Each is run three times,
// interleaved, and the medians compared (the machine is shared). Projection unpaced
// (PROJECT_DB_SHARE=1), so that the figures are work, not waiting.
func BenchmarkSweepOverDelivered(b *testing.B) {
	const rounds = 3
	for range b.N {
		alone := newWorld(b, 0, resendfake.Options{})
		beside := newWorld(b, 0, resendfake.Options{})
		seedStart := time.Now()
		beside.seedDelivered(b, 100000)
		b.ReportMetric(time.Since(seedStart).Seconds(), "seed_100k_s")
		var secs, delivered [2][]float64
		var rss [2]float64
		for range rounds {
			for i, w := range []*world{alone, beside} {
				w.ids = nil
				w.seed(b, 1000)
				finished, _, peak := sweepOnce(b, w, "PROJECT_DB_SHARE=1", "SWEEP_DEADLINE=300s", "PROJECT_FOR=120s")
				if finished["sent"].(float64) != 1000 || finished["projected"].(float64) != 1000 {
					b.Fatalf("sweep: %v", finished)
				}
				if bad := w.notExactlyOnce(); bad != 0 {
					b.Fatalf("%d tickets not delivered exactly once", bad)
				}
				secs[i] = append(secs[i], finished["duration_seconds"].(float64))
				delivered[i] = append(delivered[i], finished["delivered_in_seconds"].(float64))
				rss[i] = max(rss[i], peak)
			}
		}
		median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
		for i, name := range []string{"1k", "100k_1k"} {
			b.ReportMetric(median(secs[i]), "sweep_"+name+"_s")
			b.ReportMetric(median(delivered[i]), "delivered_in_"+name+"_s")
			b.ReportMetric(rss[i], "peak_rss_"+name+"_MiB")
		}
		b.ReportMetric(median(secs[1])/median(secs[0]), "ratio")
	}
}

// insertCeiling measures the database's own insert rate: ticket-sized documents inserted one
// per call by 16 clients (as BenchmarkDriverInsert does), into a collection of their own.
func insertCeiling(b testing.TB, w *world, n int) float64 {
	b.Helper()
	coll := w.db.Collection("bench_insert_ceiling")
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				now := time.Now().UTC()
				tk := notification.Ticket{ID: notification.NewID(), Subject: "Booking confirmed",
					Content:         strings.Repeat("Your seats are A1, A2. Enjoy the show! ", 10),
					RecipientEmails: []string{"fan@example.com"}, Status: notification.StatusPending,
					Errors: []notification.AttemptError{}, CreatedAt: now, UpdatedAt: now, NextAttemptAt: now}
				if _, err := coll.InsertOne(ctx, tk); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// providerCeiling measures the fake provider's rate in emails per second: batches of 100
// sent by the real client, as many at once as a sweep sends (SWEEP_CONCURRENCY, 4).
func providerCeiling(b testing.TB, w *world, requests int) float64 {
	b.Helper()
	mailer := resendmail.New(testKey, w.url, 30*time.Second, nil)
	emails := make([]sweeper.Email, sweeper.MaxBatch)
	for i := range emails {
		emails[i] = sweeper.Email{TicketID: fmt.Sprintf("ceiling-%d", i), From: "CineFlow <tickets@cineflow.test>",
			To: []string{fmt.Sprintf("fan%d@example.com", i)}, Subject: "Booking confirmed",
			Text: strings.Repeat("Your seats are A1, A2. Enjoy the show! ", 10)}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for k := next.Add(1); k <= int64(requests); k = next.Add(1) {
				if _, err := mailer.Send(context.Background(), fmt.Sprintf("ceiling-%d", k), emails); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(requests*sweeper.MaxBatch) / time.Since(start).Seconds()
}

// BenchmarkDrain20kUnlimited drains 20,000 tickets through the sweeper binary against the fake
// provider without a rate limit (and SWEEP_DB_SHARE=1: its capacity), and compares the rate
// with the two ceilings it cannot beat, measured in the same run: the provider's (batches of
// 100, 4 at once) and the database's own insert rate (one ticket-sized document per insert,
// 16 clients, as BenchmarkDriverInsert). Each ticket costs the database one single-document
// transaction (its queue entry's delete, by _id) plus its share of batched writes, so the
// drain runs near that ceiling, not above it.
func BenchmarkDrain20kUnlimited(b *testing.B) {
	for range b.N {
		w := newWorld(b, 20000, resendfake.Options{})
		// The machine is shared: the database's ceiling is the median of three runs.
		runs := []float64{insertCeiling(b, w, 2000), insertCeiling(b, w, 2000), insertCeiling(b, w, 2000)}
		slices.Sort(runs)
		dbCeiling := runs[1]
		provCeiling := providerCeiling(b, w, 60)
		w.fake.Reset()
		finished, wall, rss := sweepOnce(b, w, "RESEND_RATE_LIMIT=100000", "SWEEP_DEADLINE=300s")
		drain := finished["delivered_in_seconds"].(float64)
		if finished["sent"].(float64) != 20000 {
			b.Fatalf("sweep: %v", finished)
		}
		if bad := w.notExactlyOnce(); bad != 0 {
			b.Fatalf("%d tickets not delivered exactly once", bad)
		}
		rate := 20000 / drain
		b.ReportMetric(drain, "drain_s")
		b.ReportMetric(rate, "tickets/s")
		b.ReportMetric(provCeiling, "provider_ceiling_emails/s")
		b.ReportMetric(dbCeiling, "db_insert_ceiling/s")
		b.ReportMetric(rate/min(provCeiling, dbCeiling), "of_ceiling")
		b.ReportMetric(wall.Seconds(), "process_s")
		b.ReportMetric(rss, "sweeper_peak_rss_MiB")
		b.ReportMetric(finished["projected"].(float64), "projected")
	}
}

// notificationService runs the notification service binary against w's database until the
// benchmark ends; it returns the service's base URL and its process id.
func notificationService(b *testing.B, w *world) (string, int) {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "notification")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cineflow/cineflow/services/notification/cmd/notification").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL=" + w.dbURL,
		"NOTIFICATION_API_TOKEN=" + benchToken, "APP_ENV=production", "LOG_LEVEL=warn"}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base + "/notiservice/api/v1/notifications", cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("notification service not ready:\n%s", logs.String())
		}
	}
}

const benchToken = "bench-token-0123456789"

// postLoad posts tickets from 16 clients for d and returns the rate and the p50 and p99
// latencies in milliseconds.
func postLoad(b *testing.B, target string, d time.Duration) (perSec, p50, p99 float64) {
	b.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	body := []byte(`{"subject":"Your booking is confirmed","content":"<p>Booking 42: 2 seats for Dune, 18:30.</p>","recepientEmails":["customer@example.com"]}`)
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				req, _ := http.NewRequest("POST", target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+benchToken)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					failed.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d creates failed", f)
	}
	slices.Sort(lat)
	ms := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	return float64(len(lat)) / elapsed.Seconds(), ms(0.50), ms(0.99)
}

// BenchmarkDrainBesideRequests: ticket creation over HTTP (the notification service binary, 16
// clients) while nothing else runs, then while the sweeper binary drains 20,000 tickets from
// the same embedded database, with its database time unbounded (SWEEP_DB_SHARE=1) and
// bounded to a quarter (0.25, the default). Reports the creation rate and p99 in each phase, the
// drain time, and both processes' peak resident size.
func BenchmarkDrainBesideRequests(b *testing.B) {
	const phase = 8 * time.Second
	for range b.N {
		w := newWorld(b, 0, resendfake.Options{})
		target, pid := notificationService(b, w)
		postLoad(b, target, time.Second) // warm up
		quiet, _, quietP99 := postLoad(b, target, phase)
		b.ReportMetric(quiet, "quiet_req/s")
		b.ReportMetric(quietP99, "quiet_p99_ms")
		var sweeperRSS float64
		for _, share := range []string{"1", "0.25"} {
			w.seed(b, 20000)
			done := make(chan map[string]any, 1)
			go func() {
				finished, _, rss := sweepOnce(b, w, "RESEND_RATE_LIMIT=100000", "SWEEP_DEADLINE=300s", "SWEEP_DB_SHARE="+share)
				sweeperRSS = max(sweeperRSS, rss)
				done <- finished
			}()
			time.Sleep(time.Second) // the sweep has started draining
			rate, _, p99 := postLoad(b, target, phase)
			finished := <-done
			name := "share" + strings.ReplaceAll(share, ".", "")
			b.ReportMetric(rate, name+"_req/s")
			b.ReportMetric(p99, name+"_p99_ms")
			b.ReportMetric(rate/quiet, name+"_of_quiet")
			b.ReportMetric(finished["delivered_in_seconds"].(float64), name+"_drain_s")
		}
		_, peak, err := procStatus(pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(peak, "notification_peak_rss_MiB")
		b.ReportMetric(sweeperRSS, "sweeper_peak_rss_MiB")
	}
}

// procStatus reads VmRSS and VmHWM (peak) of pid, in MiB.
func procStatus(pid int) (rssMiB, peakMiB float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "VmRSS: %f kB", &kb); err == nil {
			rssMiB = kb / 1024
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
			peakMiB = kb / 1024
		}
	}
	return rssMiB, peakMiB, nil
}
