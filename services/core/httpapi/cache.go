package httpapi

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/cineflow/cineflow/pkg/httpx"
)

// ResponseCache is a bounded in-process cache of whole GET responses (the encoded envelope,
// its status, a strong ETag and a few headers), for reads that the database serves slowly.
//
// Use it from a handler:
//
//	return cache.Serve(c, "movies?name=x&limit=100&skip=0", []string{"movies"}, 0,
//		func() (int, any, string, error) { ms, err := load(); return 200, ms, "movies", err })
//
// and, after every write that changes what a key shows, Invalidate one of its tags:
//
//	cache.Invalidate("movies")
//
// Serve answers from the cache while the entry is younger than its ttl (0: the cache's
// default) and no tag of it was invalidated since it was loaded; otherwise it calls load once
// per key however many requests wait (singleflight), and keeps a 2xx answer. An error from
// load goes back to Fiber's error handler and is not kept. Every answer carries ETag and
// Cache-Control: public, no-cache (a client may keep it but must revalidate: If-None-Match
// with the current ETag answers 304 without a body), and X-Cache: HIT, MISS or SHARED.
//
// Staleness: a write in this process is seen by the next request (Invalidate happens before
// the write's response, and a load that overlapped an invalidation is served to its own
// waiters but not kept). A write in another replica is seen after at most ttl: keep ttl short.
//
// Keys must be normalised by the caller (route plus parsed, defaulted query values) so that
// equivalent requests share an entry. Keys and tags are copied: Fiber's request strings may
// be passed as they are.
type ResponseCache struct {
	name       string
	ttl        time.Duration
	maxEntries int
	maxBytes   int
	disabled   bool
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *cacheEntry
	lru     *list.List               // front: most recently used
	bytes   int
	gens    map[string]uint64 // tag -> invalidation count
	flights singleflight.Group
	results *prometheus.CounterVec
}

// Headed is a load's data with extra response headers (e.g. X-Total-Count), kept with the
// cached answer.
type Headed struct {
	Data   any
	Header map[string]string
}

// CacheOptions configure a ResponseCache.
type CacheOptions struct {
	// Name labels the metrics (cache="catalogue").
	Name string
	// TTL is the default lifetime of an entry (default 2s).
	TTL time.Duration
	// MaxEntries and MaxBytes bound the cache (defaults 1000 entries, 64 MiB of bodies); the
	// least recently used entries go first.
	MaxEntries int
	MaxBytes   int
	// Registerer receives cineflow_core_cache_requests_total{cache,result} (nil: not exported). Several
	// caches may share one registry.
	Registerer prometheus.Registerer
	// Disabled makes Serve load every request (still with ETag and 304).
	Disabled bool
	Now      func() time.Time
}

type cacheEntry struct {
	key     string
	status  int
	body    []byte
	etag    string
	header  map[string]string
	expires time.Time
	tags    []string
	gens    []uint64 // of tags, when loaded
}

func (e *cacheEntry) size() int { return len(e.body) + len(e.key) + 256 }

// Cache results (the result label of cineflow_core_cache_requests_total).
const (
	CacheHit    = "hit"    // served from the cache
	CacheMiss   = "miss"   // loaded
	CacheShared = "shared" // waited for another request's load of the same key
)

// NewResponseCache makes a cache.
func NewResponseCache(o CacheOptions) *ResponseCache {
	if o.Name == "" {
		o.Name = "default"
	}
	if o.TTL <= 0 {
		o.TTL = 2 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 1000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	rc := &ResponseCache{name: o.Name, ttl: o.TTL, maxEntries: o.MaxEntries, maxBytes: o.MaxBytes, disabled: o.Disabled, now: o.Now,
		entries: map[string]*list.Element{}, lru: list.New(), gens: map[string]uint64{}}
	rc.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cineflow_core_cache_requests_total",
		Help: "Requests answered through an in-process response cache, by cache and result (hit, miss, shared).",
	}, []string{"cache", "result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(rc.results); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					rc.results = existing
				}
			}
		}
	}
	return rc
}

// TTL is the cache's default entry lifetime.
func (rc *ResponseCache) TTL() time.Duration { return rc.ttl }

// Invalidate drops every entry carrying one of tags (lazily: they are never served again).
func (rc *ResponseCache) Invalidate(tags ...string) {
	rc.mu.Lock()
	for _, t := range tags {
		rc.gens[t]++
	}
	rc.mu.Unlock()
}

// Len is the number of entries kept (fresh or not).
func (rc *ResponseCache) Len() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.lru.Len()
}

// Serve answers the request from the cache, or from load (see ResponseCache).
func (rc *ResponseCache) Serve(c *fiber.Ctx, key string, tags []string, ttl time.Duration,
	load func() (status int, data any, message string, err error)) error {
	if ttl <= 0 {
		ttl = rc.ttl
	}
	if rc.disabled {
		status, data, msg, err := load()
		if err != nil {
			return err
		}
		e, err := rc.encode(key, status, data, msg, ttl)
		if err != nil {
			return err
		}
		rc.results.WithLabelValues(rc.name, CacheMiss).Inc()
		return rc.write(c, e, "MISS")
	}
	if e := rc.get(key); e != nil {
		rc.results.WithLabelValues(rc.name, CacheHit).Inc()
		return rc.write(c, e, "HIT")
	}
	key = strings.Clone(key)
	tags = cloneStrings(tags)
	gens := rc.snapshot(tags)
	flight := key + "\x00" + gensString(gens)
	ran := false // only the request whose load runs is a miss; the others shared it
	v, err, _ := rc.flights.Do(flight, func() (any, error) {
		ran = true
		status, data, msg, err := load()
		if err != nil {
			return nil, err
		}
		e, err := rc.encode(key, status, data, msg, ttl)
		if err != nil {
			return nil, err
		}
		e.tags, e.gens = tags, gens
		if status >= 200 && status < 300 {
			rc.put(e)
		}
		return e, nil
	})
	if err != nil {
		return err
	}
	result, xc := CacheMiss, "MISS"
	if !ran {
		result, xc = CacheShared, "SHARED"
	}
	rc.results.WithLabelValues(rc.name, result).Inc()
	return rc.write(c, v.(*cacheEntry), xc)
}

// encode makes the entry of a load's answer: the envelope, its ETag and headers.
func (rc *ResponseCache) encode(key string, status int, data any, msg string, ttl time.Duration) (*cacheEntry, error) {
	e := &cacheEntry{key: key, status: status}
	if h, ok := data.(Headed); ok {
		data, e.header = h.Data, h.Header
	}
	if data == nil || isNilPointer(data) {
		data = struct{}{}
	}
	var err error
	e.body, err = json.Marshal(httpx.Envelope{Success: true, Error: struct{}{}, Data: data, Message: msg})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(e.body)
	e.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	e.expires = rc.now().Add(ttl)
	return e, nil
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func cloneStrings(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.Clone(v)
	}
	return out
}

func gensString(gens []uint64) string {
	var b []byte
	for _, g := range gens {
		b = strconv.AppendUint(b, g, 36)
		b = append(b, '.')
	}
	return string(b)
}

func (rc *ResponseCache) snapshot(tags []string) []uint64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]uint64, len(tags))
	for i, t := range tags {
		out[i] = rc.gens[t]
	}
	return out
}

// get returns the fresh entry of key, or nil (dropping a stale one).
func (rc *ResponseCache) get(key string) *cacheEntry {
	now := rc.now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	el, ok := rc.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) || !rc.current(e) {
		rc.remove(el)
		return nil
	}
	rc.lru.MoveToFront(el)
	return e
}

// current reports whether no tag of e was invalidated since it was loaded. Caller holds mu.
func (rc *ResponseCache) current(e *cacheEntry) bool {
	for i, t := range e.tags {
		if rc.gens[t] != e.gens[i] {
			return false
		}
	}
	return true
}

func (rc *ResponseCache) put(e *cacheEntry) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.current(e) || e.size() > rc.maxBytes {
		return // invalidated while loading, or too big to keep
	}
	if el, ok := rc.entries[e.key]; ok {
		rc.remove(el)
	}
	rc.entries[e.key] = rc.lru.PushFront(e)
	rc.bytes += e.size()
	for rc.lru.Len() > rc.maxEntries || rc.bytes > rc.maxBytes {
		rc.remove(rc.lru.Back())
	}
}

// remove drops an element. Caller holds mu.
func (rc *ResponseCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	rc.lru.Remove(el)
	delete(rc.entries, e.key)
	rc.bytes -= e.size()
}

func (rc *ResponseCache) write(c *fiber.Ctx, e *cacheEntry, xcache string) error {
	c.Set(fiber.HeaderETag, e.etag)
	c.Set(fiber.HeaderCacheControl, "public, no-cache")
	c.Set("X-Cache", xcache)
	for k, v := range e.header {
		c.Set(k, v)
	}
	if e.status >= 200 && e.status < 300 && etagMatches(c.Get(fiber.HeaderIfNoneMatch), e.etag) {
		c.Status(fiber.StatusNotModified)
		c.Response().ResetBody()
		return nil
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Status(e.status)
	return c.Send(e.body)
}

// etagMatches reports whether an If-None-Match header names etag (weak comparison, as RFC
// 9110 asks for If-None-Match; "*" matches any).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, part := range strings.Split(header, ",") {
		p := strings.TrimSpace(part)
		if p == "*" {
			return true
		}
		p = strings.TrimPrefix(p, "W/")
		if p == etag {
			return true
		}
	}
	return false
}
