package httpapi

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cineflow/cineflow/pkg/errs"
)

type cacheRig struct {
	app   *fiber.App
	rc    *ResponseCache
	loads atomic.Int64
	value atomic.Value  // string
	gate  chan struct{} // when non-nil, loads wait on it
	now   atomic.Int64
}

func newCacheRig(t *testing.T, o CacheOptions) *cacheRig {
	t.Helper()
	r := &cacheRig{}
	r.value.Store("v1")
	r.now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	o.Now = func() time.Time { return time.Unix(0, r.now.Load()) }
	r.rc = NewResponseCache(o)
	r.app = fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		return c.Status(errs.Status(errs.CodeOf(err))).SendString(err.Error())
	}})
	r.app.Get("/k/:key", func(c *fiber.Ctx) error {
		key := c.Params("key") // Fiber's unsafe string: the cache must copy it
		return r.rc.Serve(c, "k/"+key, []string{"t", "t:" + key}, 0, func() (int, any, string, error) {
			r.loads.Add(1)
			if r.gate != nil {
				<-r.gate
			}
			if key == "missing" {
				return 0, nil, "", errs.E(errs.NotFound, "nope")
			}
			return 200, Headed{Data: map[string]string{"key": key, "v": r.value.Load().(string)}, Header: map[string]string{"X-Total-Count": "1"}}, "ok", nil
		})
	})
	return r
}

func (r *cacheRig) get(t *testing.T, key string, h map[string]string) (int, string, map[string]string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/k/"+key, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := r.app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hs := map[string]string{}
	for _, k := range []string{"ETag", "X-Cache", "Cache-Control", "X-Total-Count", "Content-Type"} {
		hs[k] = resp.Header.Get(k)
	}
	return resp.StatusCode, string(b), hs
}

func TestResponseCacheHitsETagAndInvalidation(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := newCacheRig(t, CacheOptions{Name: "test", TTL: time.Second, Registerer: reg})
	st, body, h := r.get(t, "a", nil)
	if st != 200 || !strings.Contains(body, `"v":"v1"`) || !strings.Contains(body, `"success":true`) || h["X-Cache"] != "MISS" ||
		h["ETag"] == "" || h["X-Total-Count"] != "1" || !strings.HasPrefix(h["Content-Type"], "application/json") || h["Cache-Control"] != "public, no-cache" {
		t.Fatalf("first: %d %s %v", st, body, h)
	}
	st, body2, h2 := r.get(t, "a", nil)
	if st != 200 || body2 != body || h2["X-Cache"] != "HIT" || h2["ETag"] != h["ETag"] || h2["X-Total-Count"] != "1" {
		t.Fatalf("second: %d %v", st, h2)
	}
	if st, b, _ := r.get(t, "a", map[string]string{"If-None-Match": h["ETag"]}); st != 304 || b != "" {
		t.Fatalf("If-None-Match: %d %q", st, b)
	}
	if st, _, _ := r.get(t, "a", map[string]string{"If-None-Match": "W/" + h["ETag"]}); st != 304 {
		t.Fatalf("weak If-None-Match: %d", st)
	}
	if r.loads.Load() != 1 {
		t.Fatalf("loads %d", r.loads.Load())
	}
	// invalidation by tag
	r.value.Store("v2")
	r.rc.Invalidate("t:b") // another key's tag: a stays
	if _, b, _ := r.get(t, "a", nil); !strings.Contains(b, "v1") {
		t.Fatalf("unrelated invalidation dropped a: %s", b)
	}
	r.rc.Invalidate("t")
	st, b, h3 := r.get(t, "a", nil)
	if st != 200 || !strings.Contains(b, "v2") || h3["ETag"] == h["ETag"] {
		t.Fatalf("after invalidation: %s %v", b, h3)
	}
	if st, _, _ := r.get(t, "a", map[string]string{"If-None-Match": h["ETag"]}); st != 200 {
		t.Fatalf("old ETag: %d", st)
	}
	// TTL
	r.value.Store("v3")
	r.now.Add(int64(1100 * time.Millisecond))
	if _, b, _ := r.get(t, "a", nil); !strings.Contains(b, "v3") {
		t.Fatalf("after the TTL: %s", b)
	}
	// errors are not kept
	for range 2 {
		if st, _, _ := r.get(t, "missing", nil); st != 404 {
			t.Fatalf("missing: %d", st)
		}
	}
	if n := r.loads.Load(); n != 5 {
		t.Fatalf("loads %d, want 5", n)
	}
	if v := testutil.ToFloat64(r.rc.results.WithLabelValues("test", CacheHit)); v < 3 {
		t.Errorf("hits counted: %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "cineflow_core_cache_requests_total"); err != nil || n < 2 {
		t.Errorf("registry: %d %v", n, err)
	}
	// a second cache on the same registry shares the metric
	NewResponseCache(CacheOptions{Name: "other", Registerer: reg}).results.WithLabelValues("other", CacheMiss).Inc()
}

func TestResponseCacheBounded(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t, CacheOptions{TTL: time.Minute, MaxEntries: 10})
	for i := range 100 {
		r.get(t, fmt.Sprint(i), nil)
	}
	if n := r.rc.Len(); n != 10 {
		t.Fatalf("%d entries kept, bound 10", n)
	}
	// the most recent ones are kept
	if _, _, h := r.get(t, "99", nil); h["X-Cache"] != "HIT" {
		t.Fatalf("recent entry evicted: %v", h)
	}
	if _, _, h := r.get(t, "0", nil); h["X-Cache"] != "MISS" {
		t.Fatalf("old entry kept: %v", h)
	}
	small := newCacheRig(t, CacheOptions{TTL: time.Minute, MaxBytes: 2000})
	for i := range 50 {
		small.get(t, fmt.Sprint(i), nil)
	}
	if n := small.rc.Len(); n > 6 || n == 0 {
		t.Fatalf("byte bound: %d entries", n)
	}
}

func TestResponseCacheSingleflight(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t, CacheOptions{TTL: time.Minute})
	r.gate = make(chan struct{})
	const n = 16
	var wg sync.WaitGroup
	results := make([]string, n)
	for i := range n {
		wg.Go(func() { _, _, h := r.get(t, "cold", nil); results[i] = h["X-Cache"] })
	}
	for r.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join
	close(r.gate)
	wg.Wait()
	if r.loads.Load() != 1 {
		t.Fatalf("a cold key loaded %d times", r.loads.Load())
	}
	misses := 0
	for _, x := range results {
		if x == "MISS" {
			misses++
		}
	}
	if misses != 1 {
		t.Fatalf("results %v", results)
	}
}

// A load that overlaps an invalidation is answered to its own waiters but not kept, and a
// request that arrives after the invalidation does not join it.
func TestResponseCacheInvalidationDuringLoad(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t, CacheOptions{TTL: time.Minute})
	r.gate = make(chan struct{})
	done := make(chan string)
	go func() { _, b, _ := r.get(t, "x", nil); done <- b }()
	for r.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	r.value.Store("v2")
	r.rc.Invalidate("t")
	late := make(chan string)
	go func() { _, b, _ := r.get(t, "x", nil); late <- b }()
	for r.loads.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(r.gate)
	if b := <-done; !strings.Contains(b, "v1") && !strings.Contains(b, "v2") {
		t.Fatalf("first: %s", b)
	}
	if b := <-late; !strings.Contains(b, "v2") {
		t.Fatalf("request after the invalidation got %s", b)
	}
	r.gate = nil
	if _, b, _ := r.get(t, "x", nil); !strings.Contains(b, "v2") {
		t.Fatalf("kept the stale load: %s", b)
	}
}

func TestResponseCacheDisabled(t *testing.T) {
	t.Parallel()
	r := newCacheRig(t, CacheOptions{Disabled: true})
	_, _, h := r.get(t, "a", nil)
	_, _, h2 := r.get(t, "a", nil)
	if r.loads.Load() != 2 || h2["X-Cache"] != "MISS" || h["ETag"] == "" {
		t.Fatalf("disabled cache: %d %v", r.loads.Load(), h2)
	}
	if st, _, _ := r.get(t, "a", map[string]string{"If-None-Match": h["ETag"]}); st != 304 {
		t.Fatalf("disabled cache still answers 304: %d", st)
	}
}
