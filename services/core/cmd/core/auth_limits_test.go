package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/httpapi"
)

// testClock is the limits' clock, moved by the tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// defaultAuthConfig is AuthConfig as an empty environment gives it (its envDefault tags).
func defaultAuthConfig(t testing.TB) AuthConfig {
	t.Helper()
	var c AuthConfig
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		def, ok := v.Type().Field(i).Tag.Lookup("envDefault")
		if !ok {
			continue
		}
		f := v.Field(i)
		var err error
		switch f.Interface().(type) {
		case time.Duration:
			var d time.Duration
			d, err = time.ParseDuration(def)
			f.SetInt(int64(d))
		case int:
			var n int
			n, err = strconv.Atoi(def)
			f.SetInt(int64(n))
		case float64:
			var x float64
			x, err = strconv.ParseFloat(def, 64)
			f.SetFloat(x)
		default:
			t.Fatalf("field %s: no parser", v.Type().Field(i).Name)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestAuthConfigDefaults: the environment's defaults are httpapi's.
func TestAuthConfigDefaults(t *testing.T) {
	t.Parallel()
	got := defaultAuthConfig(t).Limits()
	want := httpapi.DefaultAuthLimits()
	want.Sweep, want.Now = 0, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("env defaults %+v\nhttpapi defaults %+v", got, want)
	}
	if err := defaultAuthConfig(t).Validate(); err != nil {
		t.Fatal(err)
	}
	bad := defaultAuthConfig(t)
	bad.SigninBackoffMax = bad.SigninBackoffBase / 2
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "SIGNIN_BACKOFF_MAX") {
		t.Errorf("max below base: %v", err)
	}
	bad = defaultAuthConfig(t)
	bad.SignupBurst = -1
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "SIGNUP_BURST") {
		t.Errorf("negative burst: %v", err)
	}
}

// limited is a service with the default limits (unless edit changes them), behind the
// trusted proxy 127.0.0.1, on a clock the test moves.
type limited struct {
	*service
	clock *testClock
}

func startLimited(t *testing.T, edit func(*Config)) *limited {
	t.Helper()
	cfg := testConfig(t)
	cfg.AuthConfig = defaultAuthConfig(t)
	cfg.TrustedProxies = "127.0.0.1"
	if edit != nil {
		edit(&cfg)
	}
	clock := &testClock{t: time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := startMain(t, &Main{Config: cfg, EditAuthLimits: func(l *httpapi.AuthLimits) {
		l.Now = clock.Now
		l.Sweep = 20 * time.Millisecond
	}})
	return &limited{service: s, clock: clock}
}

// customers creates n customers (through the domain: sign-ups have their own limit) and
// returns their emails; each one's password is "pw-" + email.
func (l *limited) customers(prefix string, n int) []string {
	l.t.Helper()
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("%s%d@example.com", prefix, i)
		if _, err := l.m.Accounts.SignUp(l.t.Context(), core.SignUp{Name: "C", Email: emails[i], Password: "pw-" + emails[i]}); err != nil {
			l.t.Fatal(err)
		}
	}
	return emails
}

// from sends a sign-in as a client at addr (X-Forwarded-For through the trusted proxy).
func (l *limited) from(addr, email, password string) response {
	l.t.Helper()
	return l.do(req{method: "POST", path: base + "/auth/signin", header: map[string]string{"X-Forwarded-For": addr},
		body: map[string]string{"email": email, "password": password}})
}

func retryAfter(t *testing.T, r response) time.Duration {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || err != nil || n <= 0 {
		t.Fatalf("want 429 with Retry-After, got %d %q: %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	return time.Duration(n) * time.Second
}

// post is a goroutine-safe request: no t.Fatal.
func (l *limited) post(path, addr string, body any) (int, error) {
	j, _ := json.Marshal(body)
	hr, err := http.NewRequest("POST", l.base+path, bytes.NewReader(j))
	if err != nil {
		return 0, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if addr != "" {
		hr.Header.Set("X-Forwarded-For", addr)
	}
	resp, err := l.client.Do(hr)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestSignInSharedAddress: with the default limits, the customers of one office (one address,
// or everyone behind an ingress whose address is not in TrustedProxies) sign in: 30 at the
// same instant, then 120 different accounts within one minute, typos included.
func TestSignInSharedAddress(t *testing.T) {
	t.Parallel()
	l := startLimited(t, func(c *Config) { c.TrustedProxies = "" }) // every client is 127.0.0.1
	emails := l.customers("office", 150)

	statuses := make([]int, 30)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			st, err := l.post(base+"/auth/signin", "", map[string]string{"email": emails[i], "password": "pw-" + emails[i]})
			if err != nil {
				t.Error(err)
			}
			statuses[i] = st
		})
	}
	wg.Wait()
	for i, st := range statuses {
		if st != 200 {
			t.Fatalf("customer %d of 30 at once: %d (all: %v)", i, st, statuses)
		}
	}

	// 120 more accounts over one minute; every tenth mistypes first and retries after the
	// Retry-After it is told.
	for i, email := range emails[30:] {
		if i%10 == 0 {
			l.expect(l.signIn(email, "typo-"+email), 401)
			r := l.signIn(email, "pw-"+email)
			if r.status == 429 {
				l.clock.Add(retryAfter(t, r))
				r = l.signIn(email, "pw-"+email)
			}
			l.expect(r, 200)
		} else {
			l.expect(l.signIn(email, "pw-"+email), 200)
		}
		l.clock.Add(500 * time.Millisecond)
	}
}

// TestSignInAttackerDoesNotLockOutOwner: an attacker at address X guessing one account backs
// off exponentially (429 with a growing Retry-After, whatever password comes next), while the
// owner at address Y signs in. Once the owner's own pair signs in, its failures are cleared.
func TestSignInAttackerDoesNotLockOutOwner(t *testing.T) {
	t.Parallel()
	l := startLimited(t, nil)
	ann := l.customers("ann", 1)[0]
	const attacker, owner = "203.0.113.66", "198.51.100.7"

	var waits []time.Duration
	for i := range 8 {
		l.expect(l.from(attacker, ann, fmt.Sprintf("guess-%d-pw", i)), 401)
		waits = append(waits, retryAfter(t, l.from(attacker, ann, fmt.Sprintf("guess-%d-again", i))))
		if i == 5 {
			// the right password from the attacker's address waits too: the wait tells nothing
			retryAfter(t, l.from(attacker, ann, "pw-"+ann))
			// and the owner, elsewhere, signs in
			l.expect(l.from(owner, ann, "pw-"+ann), 200)
		}
		l.clock.Add(waits[i])
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] != 2*waits[i-1] {
			t.Fatalf("Retry-After %v: want each twice the one before", waits)
		}
	}
	if waits[0] != time.Second {
		t.Errorf("first wait %v, want SIGNIN_BACKOFF_BASE (1s)", waits[0])
	}
	// The owner signs in from X after the wait: the pair's failures are cleared.
	l.expect(l.from(attacker, ann, "pw-"+ann), 200)
	l.expect(l.from(attacker, ann, "guess-after"), 401)
	if w := retryAfter(t, l.from(attacker, ann, "guess-after-2")); w != time.Second {
		t.Errorf("after a success the backoff starts over: %v", w)
	}
	// Another account from the attacker's address is not held up by this pair.
	bob := l.customers("bob", 1)[0]
	l.expect(l.from(attacker, bob, "pw-"+bob), 200)
}

// TestSignInAccountLimitStopsDistributedGuesser: guesses at one account from many addresses
// (each within its pair's backoff) stop at the account's failure budget (default 20 at once,
// then 5 a minute); the owner still signs in from an address where they signed in before.
func TestSignInAccountLimitStopsDistributedGuesser(t *testing.T) {
	t.Parallel()
	l := startLimited(t, nil)
	ann := l.customers("ann", 1)[0]
	const home = "198.51.100.7"
	l.expect(l.from(home, ann, "pw-"+ann), 200)

	failed, refused := 0, 0
	var last response
	for i := range 200 {
		r := l.from(fmt.Sprintf("10.%d.%d.1", i/250, i%250), ann, fmt.Sprintf("guess-%d-pw", i))
		switch r.status {
		case 401:
			failed++
		case 429:
			refused++
			last = r
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.raw)
		}
	}
	if failed != 20 || refused != 180 {
		t.Fatalf("%d guesses failed, %d refused; want 20 (SIGNIN_ACCOUNT_FAILURE_BURST), then 429", failed, refused)
	}
	if w := retryAfter(t, last); w > 15*time.Second {
		t.Errorf("Retry-After %v: one failure token (5 a minute) takes 12s", w)
	}
	// The right password from a new address is refused too while the budget is spent (the
	// cost of stopping a distributed guesser), but not from the owner's usual address.
	retryAfter(t, l.from("192.0.2.1", ann, "pw-"+ann))
	l.expect(l.from(home, ann, "pw-"+ann), 200)
	// The budget refills: 5 a minute.
	l.clock.Add(time.Minute)
	for i := range 5 {
		l.expect(l.from(fmt.Sprintf("172.16.0.%d", i+1), ann, "guess-later"), 401)
	}
	retryAfter(t, l.from("172.16.0.99", ann, "guess-later"))
}

// TestSignInAddressFailureLimit: one address trying many accounts (password spraying) stops at
// the address's failure budget (default 60 at once, 30 a minute), while other addresses sign
// in; its many right passwords would not have stopped it (SIGNIN_RATE_PER_MINUTE is 300).
func TestSignInAddressFailureLimit(t *testing.T) {
	t.Parallel()
	l := startLimited(t, nil)
	emails := l.customers("spray", 70)
	const sprayer = "203.0.113.9"
	for i, email := range emails[:60] {
		l.expect(l.from(sprayer, email, fmt.Sprintf("Summer2030-%d", i)), 401)
	}
	w := retryAfter(t, l.from(sprayer, emails[60], "Summer2030"))
	if w > 3*time.Second {
		t.Errorf("Retry-After %v: one failure token (30 a minute) takes 2s", w)
	}
	l.expect(l.from("198.51.100.1", emails[61], "pw-"+emails[61]), 200)
	l.clock.Add(w)
	l.expect(l.from(sprayer, emails[62], "pw-"+emails[62]), 200)
}

// TestSignInSeveralForwardedLines: X-Forwarded-For in several header lines is one list; a
// client cannot escape its backoff by writing a first line of its own.
func TestSignInSeveralForwardedLines(t *testing.T) {
	t.Parallel()
	l := startLimited(t, func(c *Config) { c.TrustedProxies = "127.0.0.1,10.0.0.0/8" })
	ann := l.customers("ann", 1)[0]
	send := func(lines ...string) response {
		hr, _ := http.NewRequest("POST", l.base+base+"/auth/signin",
			strings.NewReader(`{"email":"`+ann+`","password":"wrong-password"}`))
		hr.Header.Set("Content-Type", "application/json")
		for _, line := range lines {
			hr.Header.Add("X-Forwarded-For", line)
		}
		resp, err := l.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		return checkEnvelope(t, "sign-in", resp)
	}
	l.expect(send("203.0.113.66"), 401)
	// the attacker writes a line of their own; the ingress (10.0.0.5) appends the real one
	retryAfter(t, send("1.1.1.1", "203.0.113.66, 10.0.0.5"))
	retryAfter(t, send("1.1.1.1, 2.2.2.2", "203.0.113.66", "10.0.0.5"))
	// a client the proxies tell apart is not held up
	l.expect(send("6.6.6.6", "198.51.100.7", "10.0.0.5"), 401)
}

// TestSignUpLimitPerAddress: sign-ups per address, by default 60 at once then 30 a minute:
// an office signs up, a script creating accounts (a bcrypt hash each) from one address stops.
func TestSignUpLimitPerAddress(t *testing.T) {
	t.Parallel()
	l := startLimited(t, nil)
	signUp := func(addr string, i int) response {
		return l.do(req{method: "POST", path: base + "/auth/signup", header: map[string]string{"X-Forwarded-For": addr},
			body: map[string]string{"name": "N", "email": fmt.Sprintf("new%d@example.com", i), "password": "password-1"}})
	}
	for i := range 60 {
		l.expect(signUp("198.51.100.20", i), 201)
	}
	w := retryAfter(t, signUp("198.51.100.20", 60))
	if w > 3*time.Second {
		t.Errorf("Retry-After %v: a sign-up token (30 a minute) takes 2s", w)
	}
	// bad input is answered before the limit, and takes nothing from it
	l.expect(l.do(req{method: "POST", path: base + "/auth/signup", header: map[string]string{"X-Forwarded-For": "198.51.100.21"},
		body: map[string]string{"name": "N", "email": "nope", "password": "password-1"}}), 400)
	l.expect(signUp("198.51.100.21", 61), 201) // another address
	l.clock.Add(w)
	l.expect(signUp("198.51.100.20", 62), 201)
}

// TestSignInEmailBound: an email over 254 bytes is a 400 naming the field, answered before
// any limit: a thousand of them do not spend a budget of one attempt.
func TestSignInEmailBound(t *testing.T) {
	t.Parallel()
	l := startLimited(t, func(c *Config) { c.SigninPerMinute, c.SigninBurst = 1, 1 })
	long := strings.Repeat("a", 255-len("@example.com")) + "@example.com"
	for i := range 1000 {
		r := l.expect(l.from("198.51.100.30", long, fmt.Sprintf("pw-%d", i)), 400)
		if i == 0 && !strings.Contains(r.fields()["email"], "254") {
			t.Fatalf("no email field error: %s", r.raw)
		}
	}
	l.expect(l.from("198.51.100.30", long[1:], "password-1"), 401) // 254 bytes: looked up
	retryAfter(t, l.from("198.51.100.30", long[1:], "password-1"))
	l.expect(l.from("198.51.100.30", "", ""), 400)
}

// TestResetPasswordBacksOff: guessing the old password through a token backs off like a
// sign-in pair; a right one clears it.
func TestResetPasswordBacksOff(t *testing.T) {
	t.Parallel()
	l := startLimited(t, nil)
	l.expect(l.signUp("Bo", "bo@example.com", "password-1", ""), 201)
	tok := l.token("bo@example.com", "password-1")
	reset := func(old string) response {
		return l.do(req{method: "PATCH", path: base + "/auth/reset", token: tok, body: map[string]string{"oldPassword": old, "newPassword": "password-2"}})
	}
	var waits []time.Duration
	for i := range 4 {
		l.expect(reset(fmt.Sprintf("guess-%d-pw", i)), 400)
		waits = append(waits, retryAfter(t, reset("password-1")))
		l.clock.Add(waits[i])
	}
	if fmt.Sprint(waits) != "[1s 2s 4s 8s]" {
		t.Errorf("waits %v", waits)
	}
	// a malformed change is a 400 before the limit, not a guess
	for range 5 {
		l.expect(l.do(req{method: "PATCH", path: base + "/auth/reset", token: tok, body: map[string]string{"oldPassword": "x", "newPassword": "short"}}), 400)
	}
	l.expect(reset("password-1"), 200)
}

var entriesLine = regexp.MustCompile(`(?m)^cineflow_core_auth_limiter_entries\{table="([a-z_]+)"\} ([0-9.e+]+)$`)

// limiterEntries reads the limit tables' sizes from /metrics.
func (l *limited) limiterEntries() map[string]int {
	l.t.Helper()
	resp, err := l.client.Get(l.base + "/metrics")
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	for _, m := range entriesLine.FindAllStringSubmatch(string(raw), -1) {
		f, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = int(f)
	}
	if len(out) != 5 {
		l.t.Fatalf("limiter gauges: %v", out)
	}
	return out
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestAuthLimitsMemoryBounded: whatever is sent, the limits' memory is bounded. From 1,000
// addresses (told by X-Forwarded-For through the trusted proxy), 10,000 sign-ins each of:
// 1 MB emails (413 before decoding: an accounts body is at most 16 KiB), 8 KiB emails (400
// naming the email, before any limit) and distinct unknown 254-byte emails (401 after a
// dummy bcrypt, leaving fixed-size hashed entries). Heap growth stays under 32 MiB, and the
// entries expire once idle, with no request needed. Not parallel: it measures the heap.
func TestAuthLimitsMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("10 GB through loopback: not in -short mode")
	}
	l := startLimited(t, nil)
	const n, addrs, workers = 10_000, 1_000, 4
	run := func(body func(w, i int) []byte) map[int]int {
		var next atomic.Int64
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					hr, _ := http.NewRequest("POST", l.base+base+"/auth/signin", bytes.NewReader(body(w, i)))
					hr.Header.Set("Content-Type", "application/json")
					hr.Header.Set("X-Forwarded-For", fmt.Sprintf("100.64.%d.%d", (i%addrs)/250, (i%addrs)%250+1))
					st := 0
					if resp, err := l.client.Do(hr); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						st = resp.StatusCode
					}
					mu.Lock()
					statuses[st]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return statuses
	}
	// Each worker rewrites the first bytes of its own body, so every email differs.
	emails := func(size int) func(w, i int) []byte {
		bodies := make([][]byte, workers)
		for w := range bodies {
			bodies[w] = []byte(`{"email":"` + strings.Repeat("e", size-len("@example.com")) + `@example.com","password":"password-1"}`)
		}
		return func(w, i int) []byte {
			copy(bodies[w][len(`{"email":"`):], fmt.Sprintf("%08d", i))
			return bodies[w]
		}
	}

	before := heapAlloc()
	phases := []struct {
		what   string
		body   func(w, i int) []byte
		status int
	}{
		{"1 MB emails", emails(1_000_000), 413},
		{"8 KiB emails", emails(8 << 10), 400},
		{"distinct unknown 254-byte emails", func(w, i int) []byte {
			return []byte(`{"email":"` + fmt.Sprintf("%08d", i) + strings.Repeat("u", 254-8-len("@example.com")) + `@example.com","password":"password-1"}`)
		}, 401},
	}
	var entries map[string]int
	for _, p := range phases {
		start := time.Now()
		st := run(p.body)
		if st[p.status] != n {
			t.Fatalf("%s: statuses %v, want %d × %d", p.what, st, n, p.status)
		}
		entries = l.limiterEntries()
		growth := mib(before, heapAlloc())
		t.Logf("%d sign-ins with %s from %d addresses: %d in %v; heap %+.1f MiB since the start; limiter entries %v",
			n, p.what, addrs, p.status, time.Since(start).Round(time.Millisecond), growth, entries)
		if growth > 32 {
			t.Errorf("heap grew by %.1f MiB, bound 32", growth)
		}
	}
	if entries["account_failures"] != n || entries["backoff"] != n || entries["address"] != addrs || entries["address_failures"] != addrs {
		t.Errorf("entries %v: want one per account, pair and address, none for refused input", entries)
	}

	// Idle entries expire: once the buckets are full again and the pairs' failures are older
	// than 4·SIGNIN_BACKOFF_MAX, the next sweep drops them.
	l.clock.Add(4*15*time.Minute + time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		e := l.limiterEntries()
		if e["address"]+e["address_failures"]+e["account_failures"]+e["backoff"]+e["signup"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries left after they went idle: %v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("after expiry: heap %+.1f MiB since the start", mib(before, heapAlloc()))
}

func mib(before, after uint64) float64 { return (float64(after) - float64(before)) / (1 << 20) }
