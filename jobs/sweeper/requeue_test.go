package sweeper_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
)

// After a provider outage every ticket is FAILED. Bulk re-queues (the store call behind POST
// /requeue), single retries (POST /:id/retry) and sweeps then run at once over the same
// tickets: each ticket's generation is re-queued exactly once, by exactly one of them, and
// every email is delivered exactly once.
func TestBulkRequeueRacingRetriesAndSweepsDeliversOnce(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	const n = 60
	e.seed(n, nil)
	since := time.Now().UTC().Add(-time.Second)
	e.fake.SetFaults(resendfake.Faults{FailRate: 1})
	rep, err := e.sweeper(sweeper.Config{MaxAttempts: 1}).Run(context.Background())
	if err != nil && !errors.Is(err, sweeper.ErrProviderFailing) || rep.Failed != n {
		t.Fatalf("the outage's sweep: %+v %v", rep, err)
	}
	e.fake.SetFaults(resendfake.Faults{})
	ctx := context.Background()

	var bulk, single atomic.Int64
	var requeuers, sweeps sync.WaitGroup
	start := make(chan struct{})
	for w := range 3 { // bulk re-queues, newest failures first, a page at a time
		requeuers.Go(func() {
			<-start
			f := notification.RequeueFilter{FailedSince: since, Limit: 4 + 6*w}
			for range 100 {
				rep, err := e.notes.RequeueFailed(ctx, f)
				if err != nil {
					t.Error(err)
					return
				}
				bulk.Add(int64(rep.Requeued))
				if !rep.More {
					return
				}
				f.Cursor = rep.Next
			}
		})
	}
	for range 3 { // retries of every ticket, oldest first
		requeuers.Go(func() {
			<-start
			for _, id := range e.ids {
				_, err := e.notes.Requeue(ctx, id)
				switch {
				case err == nil:
					single.Add(1)
				case !errs.Is(err, errs.Conflict):
					t.Error(err)
				}
			}
		})
	}
	stop := make(chan struct{})
	var sent atomic.Int64
	for range 2 { // and sweeps delivering what is re-queued, meanwhile
		sweeps.Go(func() {
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				rep, err := e.sweeper(sweeper.Config{}).Run(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				sent.Add(int64(rep.Sent))
			}
		})
	}
	close(start)
	requeuers.Wait()
	close(stop)
	sweeps.Wait()
	if t.Failed() {
		return
	}
	if got := bulk.Load() + single.Load(); got != n {
		t.Fatalf("%d re-queued by bulk requests and %d by retries, want %d in all", bulk.Load(), single.Load(), n)
	}
	if bulk.Load() == 0 || single.Load() == 0 {
		t.Fatalf("%d bulk and %d single re-queues: the race was not exercised", bulk.Load(), single.Load())
	}
	rep, err = e.sweeper(sweeper.Config{Deadline: time.Minute}).Run(ctx)
	if err != nil || sent.Load()+int64(rep.Sent) != n {
		t.Fatalf("last sweep: %+v %v (%d sent while re-queuing)", rep, err, sent.Load())
	}
	e.assertExactlyOnce()
	for _, id := range e.ids {
		if tk := e.ticket(id); tk.Generation != 1 {
			t.Errorf("ticket %s delivered in generation %d, want 1", id.Hex(), tk.Generation)
		}
	}
	st, err := e.notes.Stats(ctx)
	if err != nil || st.ByStatus[notification.StatusFailed] != 0 || st.ByStatus[notification.StatusSuccess] != n {
		t.Fatalf("figures: %v %v", st.ByStatus, err)
	}
	t.Logf("%d re-queued by bulk requests, %d by retries; %d sent while re-queuing", bulk.Load(), single.Load(), sent.Load())
}
