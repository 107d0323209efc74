package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limitKey is what a limiter entry is filed under: a keyed SHA-256 (truncated to 128 bits)
// of what it stands for (an address, an account, both). Whatever a client sends, an entry
// costs the same memory, and nobody outside the process can aim two keys at one entry.
type limitKey [16]byte

// keyer hashes limiter keys with a random per-process salt.
type keyer struct{ salt [32]byte }

func newKeyer() keyer {
	var k keyer
	_, _ = rand.Read(k.salt[:])
	return k
}

// key hashes the parts (each length-prefixed, so that ("ab","c") and ("a","bc") differ).
func (k keyer) key(parts ...string) limitKey {
	h := sha256.New()
	h.Write(k.salt[:])
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var sum [sha256.Size]byte
	var out limitKey
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// table is a bounded map of per-key state that forgets idle entries on a timer: memory is
// bounded by max entries of fixed size whatever is sent, and an entry that has nothing left
// to remember (a full bucket, failures long past) is dropped within one sweep period.
// Callers hold mu around get/peek and while they use the value.
type table[V any] struct {
	mu      sync.Mutex
	m       map[limitKey]*V
	peak    int // largest len(m) since the map was last rebuilt (Go maps never shrink)
	max     int
	every   time.Duration
	now     func() time.Time
	idle    func(v *V, now time.Time) bool // true: v is as good as absent
	timer   *time.Timer                    // armed while m is not empty
	stopped bool                           // the server is shut down: no more sweeps
}

func newTable[V any](max int, every time.Duration, now func() time.Time, idle func(*V, time.Time) bool) *table[V] {
	return &table[V]{m: make(map[limitKey]*V), max: max, every: every, now: now, idle: idle}
}

// peek returns k's entry or nil. Caller holds mu.
func (t *table[V]) peek(k limitKey) *V { return t.m[k] }

// get returns k's entry, creating it with fresh when absent; a full table first drops one
// entry at random (map iteration starts at a random place), so no client can fill it for
// good and no insertion costs more than O(1). Caller holds mu.
func (t *table[V]) get(k limitKey, fresh func() *V) *V {
	if v := t.m[k]; v != nil {
		return v
	}
	if len(t.m) >= t.max {
		for old := range t.m {
			delete(t.m, old)
			break
		}
	}
	v := fresh()
	t.m[k] = v
	t.peak = max(t.peak, len(t.m))
	if t.timer == nil && !t.stopped {
		t.timer = time.AfterFunc(t.every, t.sweep)
	}
	return v
}

// stop ends the sweeps and forgets every entry (the server is shut down).
func (t *table[V]) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.m, t.peak = map[limitKey]*V{}, 0
}

// drop removes k. Caller holds mu.
func (t *table[V]) drop(k limitKey) { delete(t.m, k) }

// sweep drops the idle entries and re-arms the timer while any is left. A map that shrank to a
// quarter of its peak is rebuilt, so that its memory goes back too.
func (t *table[V]) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	now := t.now()
	for k, v := range t.m {
		if t.idle(v, now) {
			delete(t.m, k)
		}
	}
	if len(t.m) < t.peak/4 {
		m := make(map[limitKey]*V, len(t.m))
		for k, v := range t.m {
			m[k] = v
		}
		t.m, t.peak = m, len(m)
	}
	if len(t.m) == 0 {
		t.timer = nil
		return
	}
	t.timer.Reset(t.every)
}

func (t *table[V]) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// buckets are token buckets (golang.org/x/time/rate) per key.
type buckets struct {
	*table[rate.Limiter]
	limit rate.Limit
	burst int
}

func newBuckets(perMinute float64, burst, max int, every time.Duration, now func() time.Time) *buckets {
	b := &buckets{limit: rate.Limit(perMinute / 60), burst: burst}
	b.table = newTable(max, every, now, func(l *rate.Limiter, now time.Time) bool {
		return l.TokensAt(now) >= float64(burst) // full again: the same as a new one
	})
	return b
}

func (b *buckets) fresh() *rate.Limiter { return rate.NewLimiter(b.limit, b.burst) }

// take takes one token of k, or takes nothing and says how long until one is there.
func (b *buckets) take(k limitKey, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.get(k, b.fresh).ReserveN(now, 1)
	if !r.OK() {
		return time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// wait says how long until k has a whole token (0: it has one), taking nothing.
func (b *buckets) wait(k limitKey, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.peek(k)
	if l == nil {
		return 0
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.limit) * float64(time.Second))
}

// charge takes one token of k even when none is left: attempts that were let in together
// are all paid for, by a longer wait. The debt stops at burst tokens, so the wait it causes is
// at most twice what an empty bucket's is.
func (b *buckets) charge(k limitKey, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.get(k, b.fresh)
	if l.TokensAt(now) > -float64(b.burst) {
		l.ReserveN(now, 1)
	}
}

// pair is the failure record of one account from one address (or of one user's password
// changes): an attempt counts as failed from the moment it is let in until it succeeds.
type pair struct {
	fails int32 // consecutive failed attempts, the one in progress included
	last  int64 // unix nanoseconds: when the last counted attempt was let in
	good  int64 // unix nanoseconds: the last success (0: none)
}

// backoff is exponential backoff per key: after n failures the next attempt waits
// base·2^(n-1), at most max. A key's record is forgotten forget after its last attempt.
type backoff struct {
	*table[pair]
	base, max, forget time.Duration
}

func newBackoff(base, maxDelay, forget time.Duration, max int, every time.Duration, now func() time.Time) *backoff {
	b := &backoff{base: base, max: maxDelay, forget: forget}
	b.table = newTable(max, every, now, func(p *pair, now time.Time) bool {
		return now.UnixNano()-max64(p.last, p.good) >= int64(forget)
	})
	return b
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// delay is the wait after n failures.
func (b *backoff) delay(n int32) time.Duration {
	if n <= 0 {
		return 0
	}
	d := b.base
	for i := int32(1); i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// state says how long k must wait before its next attempt (0: none) and whether k succeeded
// within forget. It changes nothing.
func (b *backoff) state(k limitKey, now time.Time) (wait time.Duration, trusted bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stateLocked(b.peek(k), now)
}

func (b *backoff) stateLocked(p *pair, now time.Time) (wait time.Duration, trusted bool) {
	if p == nil {
		return 0, false
	}
	if p.fails > 0 {
		wait = time.Duration(p.last + int64(b.delay(p.fails)) - now.UnixNano())
	}
	return max(wait, 0), p.good != 0 && now.UnixNano()-p.good < int64(b.forget)
}

// admit lets an attempt of k in, counting it as failed until succeeded or abandon says
// otherwise; or lets nothing in and says how long to wait.
func (b *backoff) admit(k limitKey, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.get(k, func() *pair { return &pair{} })
	if wait, _ := b.stateLocked(p, now); wait > 0 {
		return wait
	}
	p.fails++
	p.last = now.UnixNano()
	return 0
}

// succeeded clears k's failures and remembers the success.
func (b *backoff) succeeded(k limitKey, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.get(k, func() *pair { return &pair{} })
	p.fails, p.last, p.good = 0, now.UnixNano(), now.UnixNano()
}

// abandon uncounts an admitted attempt that decided nothing (the database was down).
func (b *backoff) abandon(k limitKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peek(k)
	if p == nil {
		return
	}
	if p.fails > 0 {
		p.fails--
	}
	if p.fails == 0 && p.good == 0 {
		b.drop(k)
	}
}
