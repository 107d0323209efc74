package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/notitest"
	"github.com/cineflow/cineflow/pkg/devdb/otlptest"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

const notiToken = notitest.DefaultToken

// TestMain removes the notification service's binary the tests built (notitest).
func TestMain(m *testing.M) {
	code := m.Run()
	notitest.Cleanup()
	os.Exit(code)
}

// notiService is the real notification service, its binary run as a process of its own
// (notitest), over real HTTP on 127.0.0.1, with a database of its own on the test database
// server.
type notiService struct {
	*notitest.Service
	t *testing.T
}

// newNotiService prepares the service on a free port without starting it; with an OTLP
// endpoint, the service exports its spans there.
func newNotiService(t *testing.T, otlp ...string) *notiService {
	t.Helper()
	opts := notitest.Options{Token: notiToken}
	if len(otlp) > 0 {
		opts.OTLPEndpoint = otlp[0]
	}
	return &notiService{Service: notitest.New(t, opts), t: t}
}

func (n *notiService) url() string { return n.URL() }

func (n *notiService) start() { n.t.Helper(); n.Start() }

type ticket struct {
	ID              string   `json:"_id"`
	Subject         string   `json:"subject"`
	Content         string   `json:"content"`
	RecepientEmails []string `json:"recepientEmails"`
	Status          string   `json:"status"`
	TraceParent     string   `json:"traceparent"`
}

func (n *notiService) get(path string) envelope {
	n.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url()+path, nil)
	req.Header.Set("Authorization", "Bearer "+notiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != http.StatusOK {
		n.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return env
}

// tickets lists every ticket (the tests make at most 100).
func (n *notiService) tickets() []ticket {
	n.t.Helper()
	var ts []ticket
	if err := json.Unmarshal(n.get("?limit=100").Data, &ts); err != nil {
		n.t.Fatal(err)
	}
	return ts
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startRelaying starts a core service whose relay posts to n.
func startRelaying(t *testing.T, n *notiService, edit func(*Config)) *service {
	t.Helper()
	return startService(t, func(c *Config) {
		c.NotificationURL, c.NotificationToken = n.url(), notiToken
		c.RelayInterval, c.RelayMaxBackoff = 50*time.Millisecond, 200*time.Millisecond
		if edit != nil {
			edit(c)
		}
	})
}

func backlog(t *testing.T, s *service) core.OutboxBacklog {
	t.Helper()
	b, err := s.m.Relay.Store().Backlog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testKind is a kind no part of the service guards: its emails are sent as they are.
const testKind = "outbox-test"

func testEmail(key string) core.Email {
	return core.Email{Key: key, Recipients: []string{"ann@example.com", "bob@example.com"},
		Subject: "Booking confirmed " + key, Content: "Your seats: A1, A2", Kind: testKind, Ref: key}
}

// gather reads one sample of the outbox metrics.
func gather(t *testing.T, s *service, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := s.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue(), true
			}
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

func TestOutboxRelaysToNotificationService(t *testing.T) {
	t.Parallel()
	n := newNotiService(t)
	n.start()
	s := startRelaying(t, n, nil)
	if v, ok := gather(t, s, "cineflow_core_outbox_pending", nil); !ok || v != 0 {
		t.Fatalf("cineflow_core_outbox_pending %v %v, want 0", v, ok)
	}

	e := testEmail("booking-paid:b1")
	e.Kind = booking.PaidEmailKind
	// The same key twice while the email waits in the outbox: one email. (A guarded kind
	// waits for its guard, so neither is sent before both are stored; once an email has been
	// relayed and left the outbox, the same key again is relayed again, and the notification
	// service answers it with the same ticket.)
	if err := s.m.Relay.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Relay.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	// Guards decide per kind: this one stands.
	asked := make(chan string, 10)
	s.m.Relay.Guard(booking.PaidEmailKind, func(_ context.Context, kind, ref string) (core.GuardVerdict, error) {
		asked <- ref
		return core.GuardSend, nil
	})
	eventually(t, 10*time.Second, "the ticket is created and the outbox empties", func() bool {
		return len(n.tickets()) == 1 && backlog(t, s).Pending == 0
	})
	tk := n.tickets()[0]
	if tk.Status != "PENDING" || tk.Subject != e.Subject || tk.Content != e.Content ||
		strings.Join(tk.RecepientEmails, ",") != "ann@example.com,bob@example.com" {
		t.Fatalf("ticket %+v", tk)
	}
	if ref := <-asked; ref != "booking-paid:b1" {
		t.Fatalf("guard asked about %q", ref)
	}
	time.Sleep(150 * time.Millisecond) // a few more relay passes: nothing more to send
	if got := len(n.tickets()); got != 1 {
		t.Fatalf("%d tickets, want 1", got)
	}
	if v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": booking.PaidEmailKind, "result": "sent"}); v != 1 {
		t.Fatalf("cineflow_core_outbox_relayed_total{sent} = %v, want 1", v)
	}

	// A guard that says Drop: deleted, never sent.
	s.m.Relay.Guard(booking.PaidEmailKind, func(context.Context, string, string) (core.GuardVerdict, error) {
		return core.GuardDrop, nil
	})
	e2 := testEmail("booking-paid:b2")
	e2.Kind = booking.PaidEmailKind
	if err := s.m.Relay.Enqueue(t.Context(), e2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the dropped email leaves the outbox", func() bool { return backlog(t, s).Pending == 0 })
	if got := len(n.tickets()); got != 1 {
		t.Fatalf("%d tickets after a drop, want 1", got)
	}
}

func TestOutboxSurvivesNotificationServiceDown(t *testing.T) {
	t.Parallel()
	n := newNotiService(t) // not started: its port refuses connections
	s := startRelaying(t, n, nil)
	e := testEmail("down1")
	if err := s.m.Relay.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	store := s.m.Relay.Store()
	eventually(t, 10*time.Second, "the relay retries", func() bool {
		due, err := store.Pending(t.Context(), time.Now().Add(time.Hour), 10)
		return err == nil && len(due) == 1 && due[0].Attempts >= 3 && due[0].LastError != ""
	})
	if v, _ := gather(t, s, "cineflow_core_outbox_pending", nil); v != 1 {
		t.Fatalf("cineflow_core_outbox_pending = %v while the service is down, want 1", v)
	}
	if v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": testKind, "result": "retry"}); v < 3 {
		t.Fatalf("cineflow_core_outbox_relayed_total{retry} = %v, want >= 3", v)
	}
	if strings.Contains(s.logs.String(), notiToken) {
		t.Fatal("the token appears in the logs")
	}

	n.start() // the service comes up on the same port
	eventually(t, 10*time.Second, "the ticket is created once the service is up", func() bool {
		return len(n.tickets()) == 1 && backlog(t, s).Pending == 0
	})
	time.Sleep(300 * time.Millisecond)
	ts := n.tickets()
	if len(ts) != 1 || ts[0].Subject != e.Subject {
		t.Fatalf("tickets %+v, want exactly one", ts)
	}
}

func TestOutboxTwoRelaysRaceOneTicketPerEmail(t *testing.T) {
	t.Parallel()
	n := newNotiService(t)
	n.start()
	// Two core replicas on one database: only nudges wake their relays.
	a := startRelaying(t, n, func(c *Config) { c.RelayInterval = time.Hour })
	b := startWith(t, a.cfg)
	store := a.m.Relay.Store()
	const emails = 50
	for i := range emails {
		if err := store.Enqueue(t.Context(), testEmail(fmt.Sprintf("race%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	a.m.Relay.Nudge()
	b.m.Relay.Nudge()
	eventually(t, 60*time.Second, "the outbox empties", func() bool { return backlog(t, a).Pending == 0 })
	ts := n.tickets()
	subjects := map[string]bool{}
	for _, tk := range ts {
		subjects[tk.Subject] = true
	}
	if len(ts) != emails || len(subjects) != emails {
		t.Fatalf("%d tickets (%d distinct), want %d", len(ts), len(subjects), emails)
	}
	sentA, _ := gather(t, a, "cineflow_core_outbox_relayed_total", map[string]string{"kind": testKind, "result": "sent"})
	sentB, _ := gather(t, b, "cineflow_core_outbox_relayed_total", map[string]string{"kind": testKind, "result": "sent"})
	t.Logf("relay A posted %v, relay B %v: %v emails posted twice, deduplicated by Idempotency-Key", sentA, sentB, sentA+sentB-emails)
	if sentA+sentB < emails {
		t.Fatalf("posted %v in all, want at least %d", sentA+sentB, emails)
	}
}

// TestOutboxTraceContinues runs alone (no t.Parallel): it installs a span recorder as the
// global tracer provider (the core's spans); the notification service exports its own to an
// OTLP receiver.
func TestOutboxTraceContinues(t *testing.T) {
	if _, err := sharedTelemetry(t.Context()); err != nil { // before: it would replace ours
		t.Fatal(err)
	}
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})

	otlp, otlpURL := otlptest.Start(t) // the notification service's spans
	n := newNotiService(t, otlpURL)
	n.start()
	s := startRelaying(t, n, nil)

	// The request that owed the email (a payment) has a span; its traceparent is stored.
	ctx, payment := tp.Tracer("test").Start(t.Context(), "POST /mba/api/v1/payments")
	e := testEmail("traced")
	e.TraceParent = httpx.TraceParent(ctx)
	payment.End()
	traceID := payment.SpanContext().TraceID().String()
	if !strings.Contains(e.TraceParent, traceID) {
		t.Fatalf("traceparent %q", e.TraceParent)
	}
	if err := s.m.Relay.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the ticket is created", func() bool { return len(n.tickets()) == 1 })

	// The ticket keeps the trace (read through the notification API's JSON).
	var tk ticket
	if err := json.Unmarshal(n.get("/"+n.tickets()[0].ID).Data, &tk); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tk.TraceParent, traceID) {
		t.Fatalf("ticket traceparent %q, want trace %s", tk.TraceParent, traceID)
	}
	var relaySpan, serverSpan bool
	eventually(t, 5*time.Second, "the relay and server spans end", func() bool {
		relaySpan, serverSpan = false, false
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID().String() == traceID && sp.Name() == "outbox.relay" {
				relaySpan = true
			}
		}
		spans, _, _ := otlp.Snapshot()
		for _, sp := range spans {
			if sp.TraceID == traceID && sp.Name == "POST "+notitest.BasePath {
				serverSpan = true
			}
		}
		return relaySpan && serverSpan
	})
}

// outboxStore is the service's outbox store.
func outboxStore(t *testing.T, s *service) *mongostore.Outbox {
	t.Helper()
	st, ok := s.m.Relay.Store().(*mongostore.Outbox)
	if led, isLed := s.m.Relay.Store().(ledOutbox); isLed {
		st, ok = led.OutboxStore.(*mongostore.Outbox)
	}
	if !ok {
		t.Fatal("the relay's store is not a *mongostore.Outbox")
	}
	return st
}

// outboxCount counts the emails matching filter in every collection of the outbox (its
// front and its retry buckets), read from core's database: a test may read them all.
func outboxCount(t *testing.T, s *service, filter bson.M) int64 {
	t.Helper()
	queues, err := outboxStore(t, s).Queues(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, q := range queues {
		c, err := s.m.DB.Collection(q).CountDocuments(t.Context(), filter)
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// outboxDoc decodes the email keyed key, wherever it waits in the outbox, into dst; false
// when it is in none of its collections.
func outboxDoc(t *testing.T, s *service, key string, dst any) bool {
	t.Helper()
	queues, err := outboxStore(t, s).Queues(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		err := s.m.DB.Collection(q).FindOne(t.Context(), bson.M{"_id": key}).Decode(dst)
		if err == nil {
			return true
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatal(err)
		}
	}
	return false
}

// logLines returns the JSON log lines whose message contains msg.
func logLines(s *service, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(fmt.Sprint(rec["msg"]), msg) {
			out = append(out, rec)
		}
	}
	return out
}

// TestOutboxRelayPausesWhileNotificationServiceDown: with the notification service down and
// many emails waiting, the relay pauses after a few failures (cineflow_core_outbox_relay_open 1, one
// WARN line), tries one email per probe interval whatever the backlog, and once the service is
// back resumes (0, one INFO line) and delivers every email exactly once.
func TestOutboxRelayPausesWhileNotificationServiceDown(t *testing.T) {
	t.Parallel()
	n := newNotiService(t) // not started: its port refuses connections
	s := startRelaying(t, n, nil)
	if v, ok := gather(t, s, "cineflow_core_outbox_relay_open", nil); !ok || v != 0 {
		t.Fatalf("cineflow_core_outbox_relay_open %v (present %v) at start, want 0", v, ok)
	}
	const emails = 60
	for i := range emails {
		if err := s.m.Relay.Enqueue(t.Context(), testEmail(fmt.Sprintf("paused%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the relay pauses", func() bool {
		v, _ := gather(t, s, "cineflow_core_outbox_relay_open", nil)
		return v == 1
	})
	retries := func() float64 {
		v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": testKind, "result": "retry"})
		return v
	}
	first := retries()
	if first > 5+4-1 {
		t.Fatalf("%v attempts before pausing, want at most BreakAfter+Parallel-1 = 8", first)
	}
	// Probes at most every half second (RELAY_MAX_BACKOFF caps them; the relay's minimum
	// backoff is 1 s, jittered to half): 3 s of outage, a handful of attempts. Before, every
	// email was tried once a second or so: about 180.
	time.Sleep(3 * time.Second)
	if probes := retries() - first; probes > 8 {
		t.Fatalf("%v attempts in 3 s while paused, want one per probe interval (at most 8)", probes)
	}
	eventually(t, 10*time.Second, "cineflow_core_outbox_pending counts the emails waiting (read every 5 s at most)", func() bool {
		v, _ := gather(t, s, "cineflow_core_outbox_pending", nil)
		return v == emails
	})
	paused := logLines(s, "relay paused")
	if len(paused) != 1 || paused[0]["level"] != "WARN" {
		t.Fatalf("pause logged %d times (%v), want once at WARN", len(paused), paused)
	}

	n.start()
	eventually(t, 20*time.Second, "every email is delivered once the service is up", func() bool {
		return len(n.tickets()) == emails && backlog(t, s).Pending == 0
	})
	if v, _ := gather(t, s, "cineflow_core_outbox_relay_open", nil); v != 0 {
		t.Fatalf("cineflow_core_outbox_relay_open = %v after the recovery, want 0", v)
	}
	resumed := logLines(s, "relay resumed")
	if len(resumed) != 1 || resumed[0]["level"] != "INFO" {
		t.Fatalf("resumption logged %d times (%v), want once at INFO", len(resumed), resumed)
	}
	time.Sleep(300 * time.Millisecond)
	subjects := map[string]bool{}
	for _, tk := range n.tickets() {
		subjects[tk.Subject] = true
	}
	if len(n.tickets()) != emails || len(subjects) != emails {
		t.Fatalf("%d tickets (%d distinct), want %d", len(n.tickets()), len(subjects), emails)
	}
	if c := outboxCount(t, s, bson.M{}); c != 0 {
		t.Fatalf("the outbox holds %d emails", c)
	}
}

// TestOutboxRelaysEarlierVersionsDocuments: the outbox documents an earlier version left (due,
// and rescheduled in place for later, with attempts and lastError) are all delivered, once
// each, by this version's relay.
func TestOutboxRelaysEarlierVersionsDocuments(t *testing.T) {
	t.Parallel()
	n := newNotiService(t)
	n.start()
	cfg := testConfig(t)
	// What an earlier version's relay left in the outbox, in its format.
	db := devdb.TestDBNamed(t, devdbName(cfg.DBURL))
	now := time.Now().UTC().Truncate(time.Millisecond)
	const emails = 40
	var docs []any
	for i := range emails {
		key := fmt.Sprintf("earlier%02d", i)
		next, attempts := now.Add(-time.Minute), 0
		if i%2 == 1 { // tried before, due again in 1 to 3 s
			next, attempts = now.Add(time.Duration(1+i%3)*time.Second), 2+i%4
		}
		d := bson.D{{Key: "_id", Value: key}, {Key: "recipients", Value: []string{"ann@example.com"}},
			{Key: "subject", Value: "Earlier " + key}, {Key: "content", Value: "Seats A1"}, {Key: "kind", Value: testKind},
			{Key: "ref", Value: key}, {Key: "createdAt", Value: now.Add(-time.Hour)}, {Key: "attempts", Value: attempts},
			{Key: "nextAttemptAt", Value: next}}
		if attempts > 0 {
			d = append(d, bson.E{Key: "lastError", Value: "notification service unreachable"})
		}
		docs = append(docs, d)
	}
	if _, err := db.Collection(mongostore.OutboxCollection).InsertMany(t.Context(), docs); err != nil {
		t.Fatal(err)
	}
	s := startRelaying(t, n, func(c *Config) { c.DBURL = cfg.DBURL })
	eventually(t, 20*time.Second, "every earlier email is delivered", func() bool {
		return len(n.tickets()) == emails && outboxCount(t, s, bson.M{}) == 0
	})
	time.Sleep(300 * time.Millisecond)
	subjects := map[string]bool{}
	for _, tk := range n.tickets() {
		subjects[tk.Subject] = true
	}
	if len(n.tickets()) != emails || len(subjects) != emails {
		t.Fatalf("%d tickets (%d distinct), want %d", len(n.tickets()), len(subjects), emails)
	}
	if b := backlog(t, s); b.Pending != 0 || !b.Oldest.IsZero() {
		t.Fatalf("backlog %+v once delivered", b)
	}
}
