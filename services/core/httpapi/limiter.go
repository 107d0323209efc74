package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a bounded map of token-bucket limiters, one per key (a client IP or an email).
// When full, limiters idle long enough to have refilled are dropped first, then the oldest.
type limiters struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	max   int
	idle  time.Duration // after this long unused a limiter is full again
	m     map[string]*entry
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(perMinute float64, burst, max int) *limiters {
	if max <= 0 {
		max = 10000
	}
	lim := rate.Limit(perMinute / 60)
	idle := time.Minute
	if lim > 0 {
		idle = time.Duration(float64(burst)/float64(lim)*float64(time.Second)) + time.Second
	}
	return &limiters{every: lim, burst: burst, max: max, idle: idle, m: make(map[string]*entry)}
}

// reserve takes one token for key. It returns the wait before the attempt would be allowed
// (0: allowed now, the token is taken; >0: refused, nothing taken).
func (l *limiters) reserve(key string, now time.Time) (wait time.Duration, cancel func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		e = &entry{lim: rate.NewLimiter(l.every, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Minute, func() {}
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, func() {}
	}
	return 0, func() { r.CancelAt(now) }
}

// evict drops idle limiters; if none is idle, the least recently used one. Caller holds mu.
func (l *limiters) evict(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, e := range l.m {
		if now.Sub(e.seen) > l.idle {
			delete(l.m, k)
			continue
		}
		if oldestKey == "" || e.seen.Before(oldest) {
			oldestKey, oldest = k, e.seen
		}
	}
	if len(l.m) >= l.max && oldestKey != "" {
		delete(l.m, oldestKey)
	}
}

func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
