package mongostore_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// BenchmarkRequeueFailed: BENCH_REQUEUE_OLD (default 2000) tickets failed two hours ago, and
// 100 tickets failed now (and again, in their next generation, before each re-queue).
//
//   - window: a dry run over the last 10 minutes (what a request costs that finds the
//     recent failures among many old ones): entries read per operation;
//   - requeue100: a bulk re-queue of the 100 recent failures: time per ticket re-queued.
//
// go test -run '^$' -bench BenchmarkRequeueFailed -benchtime 5x ./mongostore/
func BenchmarkRequeueFailed(b *testing.B) {
	old := 2000
	if n, err := strconv.Atoi(os.Getenv("BENCH_REQUEUE_OLD")); err == nil && n > 0 {
		old = n
	}
	db := devdb.TestDB(b)
	s := mongostore.New(db)
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	ts := newTickets(b, s, old+100)
	failAt(b, s, time.Now().UTC().Add(-2*time.Hour), "gave up after 8 attempts", ts[:old]...)
	recent := ts[old:]
	failed := time.Now().UTC() // when the recent tickets' current generation failed
	failAt(b, s, failed, "gave up after 8 attempts", recent...)

	b.Run("window", func(b *testing.B) {
		examined := 0
		for b.Loop() {
			rep, err := s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: time.Now().UTC().Add(-10 * time.Minute), DryRun: true})
			if err != nil || rep.Matched != len(recent) {
				b.Fatalf("%+v %v", rep, err)
			}
			examined = rep.Examined
		}
		b.ReportMetric(float64(examined), "entries/op")
	})
	b.Run("requeue100", func(b *testing.B) {
		var spent time.Duration
		for b.Loop() {
			b.StopTimer()
			if st := statusOf(b, s, recent[0]); st[0] != "FAILED/0" {
				failed = time.Now().UTC() // re-queued by the iteration before: fail the next generation
				failAt(b, s, failed, "gave up after 8 attempts", recent...)
			}
			b.StartTimer()
			t0 := time.Now()
			rep, err := s.RequeueFailed(ctx, notification.RequeueFilter{FailedSince: failed})
			spent += time.Since(t0)
			if err != nil || rep.Requeued != len(recent) {
				b.Fatalf("%+v %v", rep, err)
			}
		}
		b.ReportMetric(float64(spent.Milliseconds())/float64(b.N*len(recent)), "ms/ticket")
	})
}
