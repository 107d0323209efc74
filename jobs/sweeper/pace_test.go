package sweeper_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/services/notification"
)

// slowStore answers Batch after d, counting the calls in flight.
type slowStore struct {
	sweeper.Store // nil: only Batch is called
	d             time.Duration
	now, peak     atomic.Int64
}

func (s *slowStore) Batch(ctx context.Context, id string) (*notification.Batch, error) {
	n := s.now.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(s.d)
	s.now.Add(-1)
	return nil, nil
}

// A paced store keeps its callers' time in calls under the share of the time elapsed (a
// lower bound on the elapsed time, so the assertion holds however slow the machine is), and
// never has more calls in flight than its concurrency.
func TestPacedStoreBoundsDatabaseTime(t *testing.T) {
	t.Parallel()
	slow := &slowStore{d: 10 * time.Millisecond}
	st := sweeper.Paced(slow, 0.25, 1)
	// 600 ms in calls, 200 ms of which the burst allows at once: the other 400 ms at a
	// quarter of the time take at least 1.6 s.
	const calls = 60
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range calls / 4 {
				if _, err := st.Batch(context.Background(), "b"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if min := 1600 * time.Millisecond; elapsed < min {
		t.Errorf("60 calls of 10 ms took %v at a 25%% share, want at least %v", elapsed, min)
	}
	if p := slow.peak.Load(); p != 1 {
		t.Errorf("%d calls in flight at once, want 1", p)
	}
	if same := sweeper.Paced(slow, 1, 0); same != sweeper.Store(slow) {
		t.Error("no bound asked for, yet the store was wrapped")
	}
}
