package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// Outage benchmarks: what a notification-service outage costs the booking path while e-mails
// pile up in the outbox. BENCH_OUTBOX_QUEUED lists the queue sizes (default "0,5000,100000");
// the outbox is seeded directly, as the payments of a long outage would have left it.

func outboxQueueSizes() []int {
	raw := os.Getenv("BENCH_OUTBOX_QUEUED")
	if raw == "" {
		raw = "0,5000,100000"
	}
	var out []int
	for _, f := range strings.Split(raw, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n >= 0 {
			out = append(out, n)
		}
	}
	return out
}

// downURL is a notification-service URL on which nothing listens: every POST is refused.
func downURL(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/notiservice/api/v1/notifications"
}

// seedOutbox inserts n e-mails due now into the outbox's front, in the documents' format
// (that of every version so far), 1,000 per insert.
func seedOutbox(b *testing.B, db *mongo.Database, n int, tag string) {
	b.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	coll := db.Collection(mongostore.OutboxCollection)
	for i := 0; i < n; {
		docs := make([]any, 0, 1000)
		for ; i < n && len(docs) < cap(docs); i++ {
			key := fmt.Sprintf("bench-%s-%07d", tag, i)
			docs = append(docs, bson.D{{Key: "_id", Value: key}, {Key: "recipients", Value: []string{"ann@example.com"}},
				{Key: "subject", Value: "Your booking"}, {Key: "content", Value: "Seats A1, A2 for the 18:30 show. " + strings.Repeat("x", 300)},
				{Key: "kind", Value: "bench"}, {Key: "ref", Value: key}, {Key: "createdAt", Value: now},
				{Key: "attempts", Value: 0}, {Key: "nextAttemptAt", Value: now}})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			b.Fatalf("seed the outbox: %v", err)
		}
	}
}

// timedLoad runs op n times from conc goroutines and returns the sorted latencies and the
// codes seen.
func timedLoad(n, conc int, op func(i int) int) ([]time.Duration, map[int]int) {
	lat := make([]time.Duration, n)
	codes := make([]int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				codes[i] = op(i)
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	seen := map[int]int{}
	for _, c := range codes {
		seen[c]++
	}
	slices.Sort(lat)
	return lat, seen
}

// BenchmarkOutboxOutage: POST /bookings p50 and p95 while the notification service is down
// and 0, 5,000 or 100,000 emails wait in the outbox (the relay running as in production:
// every second, default backoff). The sizes are run in turn, BENCH_OUTBOX_REPEAT times
// (default 3), so that a machine whose load changes treats them alike; the medians are
// reported. Target: the 100,000 figures within noise of the 0 ones.
func BenchmarkOutboxOutage(b *testing.B) {
	sizes := outboxQueueSizes()
	repeat := envInt("BENCH_OUTBOX_REPEAT", 3)
	for b.Loop() {
		p50s, p95s := map[int][]float64{}, map[int][]float64{}
		for rep := range repeat {
			for _, queued := range sizes {
				p50, p95 := outboxOutage(b, queued, rep)
				p50s[queued] = append(p50s[queued], p50)
				p95s[queued] = append(p95s[queued], p95)
			}
		}
		for _, queued := range sizes {
			p50, p95 := median(p50s[queued]), median(p95s[queued])
			b.ReportMetric(p50, fmt.Sprintf("q%d-p50-ms", queued))
			b.ReportMetric(p95, fmt.Sprintf("q%d-p95-ms", queued))
			b.Logf("queued %7d: median of %d runs: p50 %.2f ms, p95 %.2f ms", queued, repeat, p50, p95)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// outboxOutage starts a core service whose notification service is down, seeds queued emails,
// lets the relay meet the outage, then times POST /bookings.
func outboxOutage(b *testing.B, queued, rep int) (p50, p95 float64) {
	const (
		requests = 1500
		conc     = 4
		warmUp   = 4 * time.Second // the relay meets the outage for a few rounds first
	)
	s := startBench(b, func(c *Config) {
		c.NotificationURL = downURL(b)
		c.RelayInterval, c.RelayMaxBackoff = time.Second, 5*time.Minute
	})
	defer s.m.Close()
	seedOutbox(b, s.m.DB, queued, "outage")
	s.m.Relay.Nudge()
	toks := s.customers(b, conc)
	f := s.show(b, 5000, 50)
	time.Sleep(warmUp)
	lat, codes := timedLoad(requests, conc, func(i int) int {
		code, _ := s.rc.do("POST", base+"/bookings", toks[i%conc], f.booking(1), nil)
		return code
	})
	if codes[201] != requests {
		b.Fatalf("bookings: %v", codes)
	}
	b.Logf("run %d, queued %7d, notification service down: POST /bookings x%d at concurrency %d: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms",
		rep+1, queued, requests, conc, ms(percentile(lat, 50)), ms(percentile(lat, 95)), ms(percentile(lat, 99)))
	return ms(percentile(lat, 50)), ms(percentile(lat, 95))
}

// downNotifier refuses every e-mail as a stopped notification service does, and counts them.
type downNotifier struct{ calls atomic.Int64 }

func (n *downNotifier) Notify(context.Context, core.Email) error {
	n.calls.Add(1)
	return &outbox.NotifyError{Err: errors.New("notification service unreachable: connection refused")}
}

// dbTimer sums the time of the database commands a client sends.
type dbTimer struct {
	mu   sync.Mutex
	n    int
	busy time.Duration
}

func (t *dbTimer) monitor() *event.CommandMonitor {
	done := func(d time.Duration) {
		t.mu.Lock()
		t.n++
		t.busy += d
		t.mu.Unlock()
	}
	return &event.CommandMonitor{
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { done(e.Duration) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { done(e.Duration) },
	}
}

func (t *dbTimer) take() (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, d := t.n, t.busy
	t.n, t.busy = 0, 0
	return n, d
}

// BenchmarkOutboxRelayRound: the database time of the relay's rounds (one a second, as
// RELAY_INTERVAL's default) while the notification service is down, with 0, 5,000 or 100,000
// e-mails queued: the first rounds, then the steady state of the outage.
func BenchmarkOutboxRelayRound(b *testing.B) {
	for _, queued := range outboxQueueSizes() {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			for b.Loop() {
				relayRounds(b, queued)
			}
		})
	}
}

func relayRounds(b *testing.B, queued int) {
	const rounds = 30
	timer := &dbTimer{}
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(b)).SetMaxPoolSize(4).SetMonitor(timer.monitor()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Disconnect(context.Background()) })
	db := client.Database(devdb.TestDatabase(b))
	store := mongostore.NewOutbox(db)
	if err := store.EnsureIndexes(context.Background()); err != nil {
		b.Fatal(err)
	}
	seedOutbox(b, db, queued, "round")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	n := &downNotifier{}
	relay := outbox.NewRelay(store, n, outbox.RelayOptions{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	timer.take()
	var cmds []int
	var busy []time.Duration
	for range rounds {
		relay.RunOnce(context.Background())
		c, d := timer.take()
		cmds, busy = append(cmds, c), append(busy, d)
		clock.Add(int64(time.Second))
	}
	steady := slices.Clone(busy[rounds/2:])
	slices.Sort(steady)
	var first time.Duration
	for _, d := range busy[:3] {
		first += d
	}
	b.ReportMetric(ms(steady[len(steady)/2]), "steady-db-ms/round")
	b.ReportMetric(float64(n.calls.Load())/rounds, "posts/round")
	b.Logf("queued %d: first 3 rounds %.1f ms of database time (%v commands); rounds %d-%d: median %.2f ms, max %.2f ms "+
		"(%v commands); %d posts in %d rounds", queued, ms(first), cmds[:3], rounds/2+1, rounds, ms(steady[len(steady)/2]),
		ms(steady[len(steady)-1]), cmds[rounds/2:], n.calls.Load(), rounds)
}
