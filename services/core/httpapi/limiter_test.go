package httpapi

import (
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeysFixedSizeAndDistinct(t *testing.T) {
	t.Parallel()
	k := newKeyer()
	long := strings.Repeat("x", 1<<20)
	seen := map[limitKey]string{}
	for _, parts := range [][]string{{"pair", "ab", "c"}, {"pair", "a", "bc"}, {"pair", long, "c"}, {"account", long}, {"account", long + "y"}} {
		key := k.key(parts...)
		name := strings.Join(parts, "|")
		if len(name) > 40 {
			name = name[:40]
		}
		if prev, ok := seen[key]; ok {
			t.Fatalf("%q and %q share a key", prev, name)
		}
		seen[key] = name
	}
	if newKeyer().key("account", "a@b.cc") == k.key("account", "a@b.cc") {
		t.Error("two processes hash alike: the salt is not random")
	}
}

// TestTableBoundedAndExpires: a table never holds more than its bound however many keys come,
// and idle entries are dropped by the timer without any further request.
func TestTableBoundedAndExpires(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := newBuckets(60, 5, 100, 10*time.Millisecond, clock.Now)
	k := newKeyer()
	for i := range 10_000 {
		if w := b.take(k.key("addr", strings.Repeat("k", i%300), string(rune(i))), clock.Now()); w != 0 {
			t.Fatalf("a fresh key waits %v", w)
		}
	}
	if n := b.size(); n > 100 || n == 0 {
		t.Fatalf("%d entries kept, bound 100", n)
	}
	// Not idle yet: the buckets are one token short; the sweeps keep them.
	time.Sleep(50 * time.Millisecond)
	if n := b.size(); n == 0 {
		t.Fatal("entries dropped before they refilled")
	}
	clock.Add(time.Second) // 60 a minute: one token a second, the buckets are full again
	waitFor(t, "the idle entries to expire", func() bool { return b.size() == 0 })
	b.mu.Lock()
	timer := b.timer
	b.mu.Unlock()
	if timer != nil {
		t.Error("the timer stays armed on an empty table")
	}
	// and a new entry arms it again
	b.take(k.key("addr", "again"), clock.Now())
	clock.Add(time.Second)
	waitFor(t, "the new entry to expire", func() bool { return b.size() == 0 })
}

func TestBucketsTakeWaitCharge(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	now := clock.Now()
	b := newBuckets(60, 3, 100, time.Minute, clock.Now)
	k := newKeyer().key("addr", "1.2.3.4")
	for i := range 3 {
		if w := b.take(k, now); w != 0 {
			t.Fatalf("take %d waits %v", i, w)
		}
	}
	if w := b.take(k, now); w != time.Second {
		t.Fatalf("fourth take waits %v, want 1s", w)
	}
	if w := b.take(k, now.Add(time.Second)); w != 0 {
		t.Fatalf("a refused take took a token: %v", w)
	}
	// wait never takes; charge goes into debt, at most burst tokens deep.
	f := newBuckets(60, 3, 100, time.Minute, clock.Now)
	if w := f.wait(k, now); w != 0 {
		t.Fatalf("unknown key waits %v", w)
	}
	for range 100 {
		f.charge(k, now)
	}
	if w := f.wait(k, now); w != 4*time.Second {
		t.Fatalf("after 100 charges (burst 3) the wait is %v, want 4s (debt capped at the burst)", w)
	}
	if w := f.wait(k, now.Add(4*time.Second)); w != 0 {
		t.Fatalf("after the wait: %v", w)
	}
}

// TestBackoffGrows: after n failures the next attempt waits base·2^(n-1), capped; an attempt
// in progress counts (a parallel one is refused); success clears; abandon uncounts.
func TestBackoffGrows(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := newBackoff(time.Second, 30*time.Second, 2*time.Minute, 100, time.Minute, clock.Now)
	k := newKeyer().key("pair", "ann@example.com", "1.2.3.4")
	var waits []time.Duration
	for range 8 {
		if w := b.admit(k, clock.Now()); w != 0 {
			t.Fatalf("admitted after its wait? %v", w)
		}
		w := b.admit(k, clock.Now()) // a parallel attempt, or one right after the failure
		waits = append(waits, w)
		clock.Add(w)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", waits, want)
		}
	}
	b.succeeded(k, clock.Now())
	if w, trusted := b.state(k, clock.Now()); w != 0 || !trusted {
		t.Fatalf("after success: wait %v trusted %v", w, trusted)
	}
	if w := b.admit(k, clock.Now()); w != 0 {
		t.Fatalf("after success: %v", w)
	}
	b.abandon(k) // the store failed: not counted
	if w := b.admit(k, clock.Now()); w != 0 {
		t.Fatalf("after an abandoned attempt: %v", w)
	}
	// Trust lasts forget after the success; the record goes once idle that long.
	clock.Add(2 * time.Minute)
	if _, trusted := b.state(k, clock.Now()); trusted {
		t.Error("still trusted after forget")
	}
	if !b.idle(b.peek(k), clock.Now()) {
		t.Error("record not idle after forget")
	}
}

func TestAddressKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"1.2.3.4":              "1.2.3.4",
		"::ffff:1.2.3.4":       "1.2.3.4",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":   "2001:db8:1:2::/64",
	} {
		if got := addressKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("addressKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestLimitTablesWorstCase fills all five tables of the limits to their bound (the default,
// 100,000 entries each) and reports the heap they take: the most they can ever hold, whatever
// is sent. Not parallel: it measures the heap.
func TestLimitTablesWorstCase(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 500,000 entries")
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	clock := newFakeClock()
	before := heap()
	l := newAuthLimits(AuthLimits{Now: clock.Now, Sweep: time.Hour}, nil)
	n := l.cfg.Entries
	for i := range n + n/10 { // 10% more than fit: the bound holds
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		at, err := l.beginSignIn(a, "user"+strconv.Itoa(i)+"@example.com")
		if err != nil {
			t.Fatal(err)
		}
		at.failed()
		if err := l.signUp(a); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	sizes := []int{l.attempts.size(), l.addrFails.size(), l.acctFails.size(), l.signups.size(), l.pairs.size()}
	for _, s := range sizes {
		if s != n {
			t.Fatalf("table sizes %v, want %d each", sizes, n)
		}
	}
	total := float64(after-before) / (1 << 20)
	t.Logf("5 tables × %d entries: heap %.1f MiB (%.0f bytes an entry)", n, total, float64(after-before)/float64(5*n))
	if total > 100 {
		t.Errorf("full tables take %.1f MiB", total)
	}
	runtime.KeepAlive(l)
}

// TestLimitsStopWithTheServer: a shut-down server's tables sweep no more.
func TestLimitsStopWithTheServer(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := newAuthLimits(AuthLimits{Now: clock.Now, Sweep: 5 * time.Millisecond}, nil)
	at, err := l.beginSignIn(netip.MustParseAddr("192.0.2.1"), "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	at.failed()
	l.stop()
	for _, tb := range []interface{ size() int }{l.attempts, l.addrFails, l.acctFails, l.pairs} {
		if tb.size() != 0 {
			t.Fatal("entries kept after stop")
		}
	}
	l.pairs.mu.Lock()
	armed := l.pairs.timer != nil
	l.pairs.mu.Unlock()
	if armed {
		t.Fatal("timer armed after stop")
	}
}
