package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadStats are the figures of a closed-loop load run.
type loadStats struct {
	n        int
	elapsed  time.Duration
	p50, p99 time.Duration
	statuses map[int]int
}

func (s loadStats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

func (s loadStats) String() string {
	return fmt.Sprintf("%d requests in %v: %.0f/s, p50 %v, p99 %v, statuses %v", s.n, s.elapsed.Round(time.Millisecond),
		s.rate(), s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.statuses)
}

// report puts the figures on the benchmark line.
func (s loadStats) report(b *testing.B, prefix string) {
	b.ReportMetric(s.rate(), prefix+"req/s")
	b.ReportMetric(float64(s.p50.Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(s.p99.Microseconds())/1000, prefix+"p99-ms")
	b.Logf("%s%s", prefix, s)
}

// runLoad calls op n times from concurrency goroutines and times each call. op returns an
// HTTP status (or any code to count).
func runLoad(n, concurrency int, op func(i int) int) loadStats {
	lat := make([]time.Duration, n)
	codes := make([]int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
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
	st := loadStats{n: n, elapsed: time.Since(start), statuses: map[int]int{}}
	for _, c := range codes {
		st.statuses[c]++
	}
	slices.Sort(lat)
	if n > 0 {
		st.p50, st.p99 = percentile(lat, 50), percentile(lat, 99)
	}
	return st
}

// percentile returns the q-th percentile (0 to 100) of sorted, which is not empty.
func percentile(sorted []time.Duration, q int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*q/100)]
}

// latencies collects request latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) merge(o *latencies) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l.mu.Lock()
	l.d = append(l.d, o.d...)
	l.mu.Unlock()
}

// p99 returns the 99th percentile of what was collected.
func (l *latencies) p99() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return percentile(s, 99)
}

// rawClient sends requests without the test harness's checks (for load).
type rawClient struct {
	base string
	c    *http.Client
}

func newRawClient(base string) *rawClient {
	return &rawClient{base: base, c: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}}
}

// do sends a request and returns the status and body.
func (r *rawClient) do(method, path, token string, body any, header map[string]string) (int, []byte) {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	hr, _ := http.NewRequest(method, r.base+path, rd)
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		hr.Header.Set("x-access-token", token)
	}
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := r.c.Do(hr)
	if err != nil {
		return -1, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
