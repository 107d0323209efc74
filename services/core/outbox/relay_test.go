package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// memOutbox is an in-memory OutboxStore; its XxxFn fields, when set, replace a method.
type memOutbox struct {
	mu   sync.Mutex
	now  func() time.Time
	docs map[string]*core.OutboxEntry
	// reads counts the calls of Pending.
	reads int

	PendingFn func(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error)
}

func newMemOutbox(now func() time.Time) *memOutbox {
	return &memOutbox{now: now, docs: map[string]*core.OutboxEntry{}}
}

func (s *memOutbox) Enqueue(_ context.Context, e core.Email) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[e.Key]; !ok {
		now := s.now()
		s.docs[e.Key] = &core.OutboxEntry{Email: e, CreatedAt: now, NextAttemptAt: now}
	}
	return nil
}

func (s *memOutbox) Pending(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error) {
	if s.PendingFn != nil {
		return s.PendingFn(ctx, now, limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	var out []core.OutboxEntry
	for _, d := range s.docs {
		if !d.NextAttemptAt.After(now) {
			out = append(out, *d)
		}
	}
	slices.SortFunc(out, func(a, b core.OutboxEntry) int { return a.NextAttemptAt.Compare(b.NextAttemptAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *memOutbox) Reschedule(_ context.Context, e core.OutboxEntry, attempts int, next time.Time, lastError string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.docs[e.Key]; ok {
		d.Attempts, d.NextAttemptAt, d.LastError = attempts, next, lastError
	}
	return nil
}

func (s *memOutbox) Delete(_ context.Context, e core.OutboxEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.docs, e.Key)
	return nil
}

func (s *memOutbox) Backlog(context.Context) (core.OutboxBacklog, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := core.OutboxBacklog{Pending: int64(len(s.docs))}
	for _, d := range s.docs {
		if b.Oldest.IsZero() || d.CreatedAt.Before(b.Oldest) {
			b.Oldest = d.CreatedAt
		}
	}
	return b, nil
}

func (s *memOutbox) get(key string) (core.OutboxEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[key]
	if !ok {
		return core.OutboxEntry{}, false
	}
	return *d, true
}

// fakeNotifier is a Notifier whose NotifyFn answers (nil: accept) and which records the keys
// it was asked to send.
type fakeNotifier struct {
	NotifyFn func(ctx context.Context, e core.Email) error

	mu   sync.Mutex
	sent []string
}

func (n *fakeNotifier) Notify(ctx context.Context, e core.Email) error {
	n.mu.Lock()
	n.sent = append(n.sent, e.Key)
	n.mu.Unlock()
	if n.NotifyFn != nil {
		return n.NotifyFn(ctx, e)
	}
	return nil
}

func (n *fakeNotifier) calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sent)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) add(kind string, res RelayResult) {
	r.mu.Lock()
	r.got = append(r.got, kind+":"+string(res))
	r.mu.Unlock()
}

func (r *results) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type relayFixture struct {
	relay    *Relay
	store    *memOutbox
	notifier *fakeNotifier
	clock    *clock
	results  *results
	logs     *strings.Builder
	logMu    *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newRelayFixture(t *testing.T, edit func(*RelayOptions)) *relayFixture {
	t.Helper()
	c := &clock{t: time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)}
	f := &relayFixture{notifier: &fakeNotifier{}, clock: c, results: &results{},
		logs: &strings.Builder{}, logMu: &sync.Mutex{}}
	opts := RelayOptions{Interval: time.Hour, Now: c.Now, Rand: func() float64 { return 0.5 },
		Logger:   slog.New(slog.NewTextHandler(lockedWriter{f.logMu, f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnResult: f.results.add}
	if edit != nil {
		edit(&opts)
	}
	f.store = newMemOutbox(opts.Now)
	f.relay = NewRelay(f.store, f.notifier, opts)
	return f
}

func (f *relayFixture) log() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logs.String()
}

func testEmail(key string) core.Email {
	return core.Email{Key: key, Recipients: []string{"ann@example.com"}, Subject: "Your booking", Content: "Seats A1, A2",
		Kind: "booking-paid", Ref: "booking-" + key}
}

func TestRelayBackoffGrowsAndCaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rand float64
	}{{"low", 0}, {"mid", 0.5}, {"high", 0.999999}} {
		r := NewRelay(newMemOutbox(time.Now), &fakeNotifier{}, RelayOptions{MinBackoff: time.Second,
			MaxBackoff: 5 * time.Minute, Rand: func() float64 { return tc.rand }})
		prev := time.Duration(0)
		for attempt := 1; attempt <= 40; attempt++ {
			full := min(time.Second<<min(attempt-1, 30), 5*time.Minute)
			d := r.Backoff(attempt)
			if d < full/2 || d > full {
				t.Fatalf("%s: attempt %d: backoff %v outside [%v, %v]", tc.name, attempt, d, full/2, full)
			}
			if d < prev {
				t.Fatalf("%s: attempt %d: backoff shrank from %v to %v", tc.name, attempt, prev, d)
			}
			prev = d
		}
		if prev > 5*time.Minute || prev < 150*time.Second {
			t.Fatalf("%s: capped backoff %v, want within [2m30s, 5m]", tc.name, prev)
		}
	}
	// Jitter spreads replicas: two draws differ.
	r := NewRelay(newMemOutbox(time.Now), &fakeNotifier{}, RelayOptions{})
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[r.Backoff(5)] = true
	}
	if len(seen) < 2 {
		t.Fatal("backoff has no jitter")
	}
}

func TestRelaySendsAndDeletes(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	ctx := t.Context()
	for _, k := range []string{"k1", "k2", "k2"} { // the same key twice keeps one
		if err := f.relay.Enqueue(ctx, testEmail(k)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.relay.RunOnce(ctx); n != 2 {
		t.Fatalf("tried %d, want 2", n)
	}
	if got := f.notifier.calls(); len(got) != 2 {
		t.Fatalf("sent %v, want k1 and k2 once", got)
	}
	if b, _ := f.store.Backlog(ctx); b.Pending != 0 {
		t.Fatalf("outbox still holds %d", b.Pending)
	}
	if got := f.results.list(); !slices.Equal(got, []string{"booking-paid:sent", "booking-paid:sent"}) {
		t.Fatalf("results %v", got)
	}
}

func TestRelayEnqueueValidates(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	for _, e := range []core.Email{
		{},
		{Key: "k", Subject: "s", Content: "c"},
		{Key: "k\n", Recipients: []string{"a@b.c"}, Subject: "s", Content: "c"},
		{Key: strings.Repeat("k", 256), Recipients: []string{"a@b.c"}, Subject: "s", Content: "c"},
	} {
		if err := f.relay.Enqueue(t.Context(), e); errs.CodeOf(err) != errs.Invalid {
			t.Fatalf("Enqueue(%+v) = %v, want invalid", e, err)
		}
	}
	if b, _ := f.store.Backlog(t.Context()); b.Pending != 0 {
		t.Fatal("an invalid email was stored")
	}
}

func TestRelayGuardDropDeletesWithoutSending(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	var asked atomic.Int32
	f.relay.Guard("booking-paid", func(_ context.Context, kind, ref string) (core.GuardVerdict, error) {
		asked.Add(1)
		if kind != "booking-paid" || ref != "booking-k1" {
			t.Errorf("guard asked about %q %q", kind, ref)
		}
		return core.GuardDrop, nil
	})
	f.store.Enqueue(t.Context(), testEmail("k1"))
	f.relay.RunOnce(t.Context())
	if asked.Load() != 1 || len(f.notifier.calls()) != 0 {
		t.Fatalf("guard asked %d times, sent %v", asked.Load(), f.notifier.calls())
	}
	if _, ok := f.store.get("k1"); ok {
		t.Fatal("dropped email still in the outbox")
	}
	if got := f.results.list(); !slices.Equal(got, []string{"booking-paid:dropped"}) {
		t.Fatalf("results %v", got)
	}
	// Other kinds have no guard: sent.
	e := testEmail("k2")
	e.Kind = "theatre-created"
	f.store.Enqueue(t.Context(), e)
	f.relay.RunOnce(t.Context())
	if got := f.notifier.calls(); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("sent %v, want k2", got)
	}
}

func TestRelayGuardWaitKeeps(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.MaxWait = 10 * time.Second })
	verdict := atomic.Int32{}
	verdict.Store(int32(core.GuardWait))
	f.relay.Guard("booking-paid", func(context.Context, string, string) (core.GuardVerdict, error) {
		return core.GuardVerdict(verdict.Load()), nil
	})
	f.store.Enqueue(t.Context(), testEmail("k1"))
	start := f.clock.Now()
	for range 8 {
		f.relay.RunOnce(t.Context())
		e, ok := f.store.get("k1")
		if !ok {
			t.Fatal("waiting email left the outbox")
		}
		if d := e.NextAttemptAt.Sub(f.clock.Now()); d <= 0 || d > 10*time.Second {
			t.Fatalf("waiting email due in %v, want within (0, MaxWait]", d)
		}
		f.relay.RunOnce(t.Context()) // not due yet: nothing happens
		if e2, _ := f.store.get("k1"); e2.Attempts != e.Attempts {
			t.Fatal("an email not due was tried")
		}
		f.clock.t = e.NextAttemptAt
	}
	if len(f.notifier.calls()) != 0 {
		t.Fatal("sent while its guard said wait")
	}
	if e, _ := f.store.get("k1"); e.Attempts != 8 || !strings.Contains(e.LastError, "waiting") {
		t.Fatalf("after 8 waits: attempts %d, lastError %q", e.Attempts, e.LastError)
	}
	if f.clock.Now().Sub(start) > 80*time.Second {
		t.Fatal("waits are not capped by MaxWait")
	}
	verdict.Store(int32(core.GuardSend))
	f.relay.RunOnce(t.Context())
	if got := f.notifier.calls(); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("sent %v once decided, want k1", got)
	}
}

func TestRelayGuardErrorRetries(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	f.relay.Guard("booking-paid", func(context.Context, string, string) (core.GuardVerdict, error) {
		return core.GuardSend, errors.New("database unavailable")
	})
	f.store.Enqueue(t.Context(), testEmail("k1"))
	f.relay.RunOnce(t.Context())
	e, ok := f.store.get("k1")
	if !ok || e.Attempts != 1 || !strings.Contains(e.LastError, "database unavailable") || len(f.notifier.calls()) != 0 {
		t.Fatalf("after a guard error: kept %v, %+v, sent %v", ok, e, f.notifier.calls())
	}
}

func TestRelayPermanentErrorDrops(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	f.notifier.NotifyFn = func(context.Context, core.Email) error {
		return &NotifyError{Err: errors.New("notification service answered 400: invalid"), Permanent: true}
	}
	e := testEmail("k1")
	e.Recipients = []string{"secret-person@example.com"}
	f.store.Enqueue(t.Context(), e)
	f.relay.RunOnce(t.Context())
	if _, ok := f.store.get("k1"); ok {
		t.Fatal("permanently refused email still in the outbox")
	}
	if got := f.results.list(); !slices.Equal(got, []string{"booking-paid:failed"}) {
		t.Fatalf("results %v", got)
	}
	logs := f.log()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "key=k1") ||
		!strings.Contains(logs, "ref=booking-k1") || !strings.Contains(logs, "answered 400") {
		t.Fatalf("the drop is not logged as an error with kind, ref, key and reason:\n%s", logs)
	}
	if strings.Contains(logs, "secret-person") || strings.Contains(logs, "Seats A1") {
		t.Fatalf("logs carry recipients or content:\n%s", logs)
	}
}

func TestRelayRetryableKeepsWithAttempts(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.MinBackoff, o.MaxBackoff = time.Second, time.Minute })
	fail := atomic.Bool{}
	fail.Store(true)
	f.notifier.NotifyFn = func(context.Context, core.Email) error {
		if fail.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	f.store.Enqueue(t.Context(), testEmail("k1"))
	for want := 1; want <= 3; want++ {
		f.relay.RunOnce(t.Context())
		e, ok := f.store.get("k1")
		if !ok || e.Attempts != want || e.LastError != "connection refused" {
			t.Fatalf("attempt %d: kept %v, %+v", want, ok, e)
		}
		full := min(time.Second<<(want-1), time.Minute)
		if d := e.NextAttemptAt.Sub(f.clock.Now()); d < full/2 || d > full {
			t.Fatalf("attempt %d: next in %v, want within [%v, %v]", want, d, full/2, full)
		}
		f.clock.t = e.NextAttemptAt
	}
	// Retry-After is the least delay.
	f.notifier.NotifyFn = func(context.Context, core.Email) error {
		return &NotifyError{Err: errors.New("answered 429"), RetryAfter: 40 * time.Second}
	}
	f.relay.RunOnce(t.Context())
	if e, _ := f.store.get("k1"); e.Attempts != 4 || e.NextAttemptAt.Sub(f.clock.Now()) < 40*time.Second {
		t.Fatalf("Retry-After not honoured: %+v", e)
	}
	f.clock.Add(time.Minute)
	f.notifier.NotifyFn = nil
	f.relay.RunOnce(t.Context())
	if _, ok := f.store.get("k1"); ok {
		t.Fatal("delivered email still in the outbox")
	}
	want := []string{"booking-paid:retry", "booking-paid:retry", "booking-paid:retry", "booking-paid:retry", "booking-paid:sent"}
	if got := f.results.list(); !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
}

func TestRelayConfigErrorLoggedAndRetried(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	f.notifier.NotifyFn = func(context.Context, core.Email) error {
		return &NotifyError{Err: errors.New("notification service answered 401"), Config: true}
	}
	f.store.Enqueue(t.Context(), testEmail("k1"))
	f.relay.RunOnce(t.Context())
	if e, ok := f.store.get("k1"); !ok || e.Attempts != 1 {
		t.Fatalf("a 401 must be retried: %v %+v", ok, e)
	}
	if !strings.Contains(f.log(), "NOTIFICATION_API_TOKEN") {
		t.Fatalf("a 401 is not logged as a configuration error:\n%s", f.log())
	}
}

func TestRelayNudgeSendsImmediately(t *testing.T) {
	t.Parallel()
	sent := make(chan string, 10)
	f := newRelayFixture(t, func(o *RelayOptions) { o.Interval = time.Hour; o.Now = time.Now })
	f.notifier.NotifyFn = func(_ context.Context, e core.Email) error { sent <- e.Key; return nil }
	f.relay.Start()
	defer f.relay.Stop(context.Background())
	// The first pass at start finds nothing; the next one is an hour away, unless nudged.
	time.Sleep(50 * time.Millisecond)
	for _, k := range []string{"k1", "k2"} {
		if err := f.relay.Enqueue(t.Context(), testEmail(k)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-sent:
			if got != k {
				t.Fatalf("sent %s, want %s", got, k)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not sent promptly after Enqueue", k)
		}
	}
}

func TestRelayStopIsPrompt(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 10)
	f := newRelayFixture(t, func(o *RelayOptions) { o.Interval = 10 * time.Millisecond; o.Now = time.Now })
	f.notifier.NotifyFn = func(ctx context.Context, _ core.Email) error {
		started <- struct{}{}
		<-ctx.Done() // a notification service that never answers
		return ctx.Err()
	}
	f.store.Enqueue(t.Context(), testEmail("k1"))
	f.relay.Start()
	f.relay.Start() // a second Start does nothing
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not start sending")
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Stop took %v", d)
	}
	if err := f.relay.Stop(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	// The cut-short attempt is not counted against the email, which stays.
	if e, ok := f.store.get("k1"); !ok || e.Attempts != 0 {
		t.Fatalf("after Stop: kept %v, %+v", ok, e)
	}
}

func TestRelaySendsInParallelWithABound(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int32
	f := newRelayFixture(t, func(o *RelayOptions) { o.Parallel = 3; o.Batch = 7 })
	f.notifier.NotifyFn = func(context.Context, core.Email) error {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
		return nil
	}
	for i := range 20 {
		f.store.Enqueue(t.Context(), testEmail(string(rune('a'+i))))
	}
	if n := f.relay.RunOnce(t.Context()); n != 20 { // three batches of 7 in one pass
		t.Fatalf("tried %d, want 20", n)
	}
	if peak.Load() < 2 || peak.Load() > 3 {
		t.Fatalf("peak concurrency %d, want 2..3", peak.Load())
	}
}

func TestRelayPendingErrorIsLogged(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, nil)
	f.store.PendingFn = func(context.Context, time.Time, int) ([]core.OutboxEntry, error) {
		return nil, errors.New("database unavailable")
	}
	if n := f.relay.RunOnce(t.Context()); n != 0 {
		t.Fatalf("tried %d", n)
	}
	if !strings.Contains(f.log(), "database unavailable") {
		t.Fatal("a failing outbox read is not logged")
	}
}

func TestRelaySpanContinuesTheTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newRelayFixture(t, func(o *RelayOptions) { o.TracerProvider = tp })
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	e := testEmail("k1")
	e.TraceParent = "00-" + traceID + "-00f067aa0ba902b7-01"
	f.store.Enqueue(t.Context(), e)
	f.store.Enqueue(t.Context(), testEmail("k2")) // no trace: a root span
	f.relay.RunOnce(t.Context())
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	found := false
	for _, s := range spans {
		if s.Name() != "outbox.relay" {
			t.Fatalf("span %q", s.Name())
		}
		if s.SpanContext().TraceID().String() == traceID {
			found = true
			if s.Parent().SpanID().String() != "00f067aa0ba902b7" {
				t.Fatalf("parent %s", s.Parent().SpanID())
			}
		}
	}
	if !found {
		t.Fatal("no relay span in the email's trace")
	}
}

func TestRelayGuardedKindWaitsForItsGuard(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.GuardedKinds = []string{"booking-paid"} })
	f.store.Enqueue(t.Context(), testEmail("k1"))
	f.relay.RunOnce(t.Context())
	e, ok := f.store.get("k1")
	if !ok || len(f.notifier.calls()) != 0 || !strings.Contains(e.LastError, "no guard") {
		t.Fatalf("an unguarded email of a guarded kind: kept %v %+v, sent %v", ok, e, f.notifier.calls())
	}
	f.relay.Guard("booking-paid", func(context.Context, string, string) (core.GuardVerdict, error) { return core.GuardSend, nil })
	f.clock.t = e.NextAttemptAt
	f.relay.RunOnce(t.Context())
	if got := f.notifier.calls(); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("sent %v once guarded, want k1", got)
	}
}

// downError is what the notifier answers while the notification service is down.
func downError() error {
	return &NotifyError{Err: errors.New("notification service unreachable: connection refused")}
}

// outage runs a notification-service outage of the given length against a relay of n emails,
// one RunOnce a second as Start's loop does, and returns the notifier's calls during it.
func outage(t *testing.T, n int, length time.Duration) (*relayFixture, int) {
	t.Helper()
	f := newRelayFixture(t, func(o *RelayOptions) { o.Parallel, o.Batch = 4, 100 })
	f.notifier.NotifyFn = func(context.Context, core.Email) error { return downError() }
	for i := range n {
		if err := f.store.Enqueue(t.Context(), testEmail(fmt.Sprintf("k%06d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for s := time.Duration(0); s < length; s += time.Second {
		f.relay.RunOnce(t.Context())
		f.clock.Add(time.Second)
	}
	return f, len(f.notifier.calls())
}

// TestRelayBreakerBoundsAttemptsWhileDown: while the notification service is down, the relay
// stops after BreakAfter failures in a row, reads and sends nothing between probes, probes
// with one email per interval (growing to ProbeMax), and the number of attempts does not grow
// with the number of emails waiting. The pause and the resumption are logged once each.
func TestRelayBreakerBoundsAttemptsWhileDown(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.Parallel, o.Batch = 4, 100 })
	ctx := t.Context()
	var down atomic.Bool
	down.Store(true)
	var sentOK sync.Map
	var dupSends atomic.Int32
	f.notifier.NotifyFn = func(_ context.Context, e core.Email) error {
		if down.Load() {
			return downError()
		}
		if _, again := sentOK.LoadOrStore(e.Key, true); again {
			dupSends.Add(1)
		}
		return nil
	}
	const emails = 1000
	for i := range emails {
		if err := f.store.Enqueue(ctx, testEmail(fmt.Sprintf("k%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	f.relay.RunOnce(ctx)
	first := len(f.notifier.calls())
	if first < 5 || first > 5+4-1 {
		t.Fatalf("the first round met the outage with %d attempts, want BreakAfter (5) to BreakAfter+Parallel-1 (8)", first)
	}
	if !f.relay.BreakerOpen() {
		t.Fatal("the breaker did not open")
	}
	// Paused: rounds before the probe is due read nothing and send nothing.
	reads := f.store.reads
	for range 10 {
		if n := f.relay.RunOnce(ctx); n != 0 {
			t.Fatalf("a paused round tried %d emails", n)
		}
	}
	if f.store.reads != reads || len(f.notifier.calls()) != first {
		t.Fatalf("paused rounds read %d times and sent %d", f.store.reads-reads, len(f.notifier.calls())-first)
	}
	// Ten minutes of outage, a round a second: one probe per interval at most.
	perSecond := 0
	for range 600 {
		f.clock.Add(time.Second)
		before := len(f.notifier.calls())
		f.relay.RunOnce(ctx)
		perSecond = max(perSecond, len(f.notifier.calls())-before)
	}
	probes := len(f.notifier.calls()) - first
	// Intervals of 0.75 x (1, 2, 4, 8, 16, 30, 30, ...) s with this Rand: 5 to reach the cap,
	// then 600 s / 22.5 s.
	if perSecond > 1 || probes < 20 || probes > 40 {
		t.Fatalf("%d probes in 600 s (at most %d in a second), want 20..40, one at a time", probes, perSecond)
	}
	if n := strings.Count(f.log(), "relay paused"); n != 1 || !strings.Contains(f.log(), "level=WARN msg=\"outbox: the notification service is failing: relay paused") {
		t.Fatalf("the pause is logged %d times, want once at WARN:\n%s", n, f.log())
	}

	// The service is back: the next probe succeeds and the relay drains everything, each
	// email once.
	down.Store(false)
	f.clock.Add(30 * time.Second)
	f.relay.RunOnce(ctx)
	if f.relay.BreakerOpen() {
		t.Fatal("a successful probe did not close the breaker")
	}
	f.clock.Add(10 * time.Minute) // the emails tried during the outage are due again
	f.relay.RunOnce(ctx)
	if b, _ := f.store.Backlog(ctx); b.Pending != 0 {
		t.Fatalf("%d emails left after the recovery", b.Pending)
	}
	n := 0
	sentOK.Range(func(any, any) bool { n++; return true })
	if n != emails || dupSends.Load() != 0 {
		t.Fatalf("delivered %d distinct emails (%d twice), want %d once each", n, dupSends.Load(), emails)
	}
	if n := strings.Count(f.log(), "relay resumed"); n != 1 || !strings.Contains(f.log(), "level=INFO msg=\"outbox: the notification service answers again: relay resumed") {
		t.Fatalf("the resumption is logged %d times, want once at INFO:\n%s", n, f.log())
	}
}

// TestRelayBreakerCostSameAtAnyBacklog: an outage costs the same number of attempts with 100
// emails waiting as with 5,000.
func TestRelayBreakerCostSameAtAnyBacklog(t *testing.T) {
	t.Parallel()
	_, small := outage(t, 100, 5*time.Minute)
	_, big := outage(t, 5000, 5*time.Minute)
	// The same up to the sends already in flight (Parallel 4) when the breaker opens.
	if max(small, big)-min(small, big) > 3 || big > 30 {
		t.Fatalf("5 minutes of outage: %d attempts with 100 emails waiting, %d with 5,000; want the same (±3 in flight), a few dozen", small, big)
	}
}

// TestRelayBreakerCountsTheServiceOnly: failures in a row open the breaker, a success in
// between starts the count again; refusals of an email (permanent 4xx) mean the service is
// up; emails kept by their guard do not reach the service and count for nothing.
func TestRelayBreakerCountsTheServiceOnly(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.Parallel = 1 })
	ctx := t.Context()
	answers := make(chan error, 100)
	f.notifier.NotifyFn = func(context.Context, core.Email) error { return <-answers }
	send := func(errs ...error) {
		t.Helper()
		for i, err := range errs {
			answers <- err
			if err := f.store.Enqueue(ctx, testEmail(fmt.Sprintf("c%d-%d", len(f.notifier.calls()), i))); err != nil {
				t.Fatal(err)
			}
			f.relay.RunOnce(ctx)
		}
	}
	refused := &NotifyError{Err: errors.New("notification service answered 400"), Permanent: true}
	send(downError(), downError(), downError(), downError(), nil, downError(), downError(), downError(), downError(),
		refused, downError(), downError(), downError(), downError())
	if f.relay.BreakerOpen() {
		t.Fatal("the breaker opened without 5 failures in a row")
	}
	f.relay.Guard("booking-paid", func(context.Context, string, string) (core.GuardVerdict, error) { return core.GuardWait, nil })
	for i := range 10 {
		f.store.Enqueue(ctx, testEmail(fmt.Sprintf("w%d", i)))
	}
	f.relay.RunOnce(ctx)
	if f.relay.BreakerOpen() {
		t.Fatal("emails waiting for their decision opened the breaker")
	}
	f.relay.Guard("booking-paid", nil)
	send(downError())
	if !f.relay.BreakerOpen() {
		t.Fatal("the fifth failure in a row did not open the breaker")
	}
}

// TestRelayDrainsABacklogWithoutWaitingForTheTick: a backlog larger than one RunOnce takes
// (20 batches) is drained at once, not a RunOnce per Interval.
func TestRelayDrainsABacklogWithoutWaitingForTheTick(t *testing.T) {
	t.Parallel()
	f := newRelayFixture(t, func(o *RelayOptions) { o.Interval = time.Hour; o.Batch = 10; o.Now = time.Now })
	ctx := t.Context()
	const emails = 500 // 20 rounds of 10 take 200
	for i := range emails {
		f.store.Enqueue(ctx, testEmail(fmt.Sprintf("d%03d", i)))
	}
	f.relay.Start()
	defer f.relay.Stop(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := f.store.Backlog(ctx)
		if b.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d emails still waiting after 10 s (the next tick is an hour away)", b.Pending, emails)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
