package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/services/core"
	notihttp "github.com/cineflow/cineflow/services/notification/httpapi"
	notimongo "github.com/cineflow/cineflow/services/notification/mongostore"
)

const notiToken = "noti-test-token-0123456789"

// notiService is the real notification service (its httpapi on its mongostore), in process,
// over real HTTP on 127.0.0.1, with a database of its own on the test database server.
type notiService struct {
	t     *testing.T
	port  int
	store *notimongo.Store
	logs  *syncBuffer

	mu  sync.Mutex
	srv *httpx.Server
}

// newNotiService prepares the service on a free port without starting it.
func newNotiService(t *testing.T) *notiService {
	t.Helper()
	store := notimongo.New(devdb.TestDB(t))
	if err := store.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // free until start: the relay meets "connection refused"
	n := &notiService{t: t, port: port, store: store, logs: &syncBuffer{}}
	t.Cleanup(n.stop)
	return n
}

func (n *notiService) url() string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", n.port, notihttp.BasePath)
}

func (n *notiService) start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	srv := notihttp.New(n.store, notihttp.Options{Token: notiToken,
		Logger: logging.NewTo(n.logs, "info", "notification")})
	if err := srv.Start(n.t.Context(), "127.0.0.1", n.port); err != nil {
		n.t.Fatalf("notification service: %v", err)
	}
	n.srv = srv
}

func (n *notiService) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.srv.Stop(ctx, 0)
		n.srv = nil
	}
}

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
	b, err := s.m.outboxRelay().Store().Backlog(t.Context())
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
	if v, ok := gather(t, s, "mba_outbox_pending", nil); !ok || v != 0 {
		t.Fatalf("mba_outbox_pending %v %v, want 0", v, ok)
	}

	e := testEmail("booking-paid:b1")
	e.Kind = core.PaidEmailKind
	// Guards decide per kind: this one stands.
	asked := make(chan string, 10)
	s.m.outboxRelay().Guard(core.PaidEmailKind, func(_ context.Context, kind, ref string) (core.GuardVerdict, error) {
		asked <- ref
		return core.GuardSend, nil
	})
	if err := s.m.Outbox.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Outbox.Enqueue(t.Context(), e); err != nil { // the same key again: one email
		t.Fatal(err)
	}
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
	if v, _ := gather(t, s, "mba_outbox_relayed_total", map[string]string{"kind": core.PaidEmailKind, "result": "sent"}); v != 1 {
		t.Fatalf("mba_outbox_relayed_total{sent} = %v, want 1", v)
	}

	// A guard that says Drop: deleted, never sent.
	s.m.outboxRelay().Guard(core.PaidEmailKind, func(context.Context, string, string) (core.GuardVerdict, error) {
		return core.GuardDrop, nil
	})
	e2 := testEmail("booking-paid:b2")
	e2.Kind = core.PaidEmailKind
	if err := s.m.Outbox.Enqueue(t.Context(), e2); err != nil {
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
	if err := s.m.Outbox.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	store := s.m.outboxRelay().Store()
	eventually(t, 10*time.Second, "the relay retries", func() bool {
		due, err := store.Pending(t.Context(), time.Now().Add(time.Hour), 10)
		return err == nil && len(due) == 1 && due[0].Attempts >= 3 && due[0].LastError != ""
	})
	if v, _ := gather(t, s, "mba_outbox_pending", nil); v != 1 {
		t.Fatalf("mba_outbox_pending = %v while the service is down, want 1", v)
	}
	if v, _ := gather(t, s, "mba_outbox_relayed_total", map[string]string{"kind": testKind, "result": "retry"}); v < 3 {
		t.Fatalf("mba_outbox_relayed_total{retry} = %v, want >= 3", v)
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
	store := a.m.outboxRelay().Store()
	const emails = 50
	for i := range emails {
		if err := store.Enqueue(t.Context(), testEmail(fmt.Sprintf("race%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	a.m.outboxRelay().Nudge()
	b.m.outboxRelay().Nudge()
	eventually(t, 60*time.Second, "the outbox empties", func() bool { return backlog(t, a).Pending == 0 })
	ts := n.tickets()
	subjects := map[string]bool{}
	for _, tk := range ts {
		subjects[tk.Subject] = true
	}
	if len(ts) != emails || len(subjects) != emails {
		t.Fatalf("%d tickets (%d distinct), want %d", len(ts), len(subjects), emails)
	}
	sentA, _ := gather(t, a, "mba_outbox_relayed_total", map[string]string{"kind": testKind, "result": "sent"})
	sentB, _ := gather(t, b, "mba_outbox_relayed_total", map[string]string{"kind": testKind, "result": "sent"})
	t.Logf("relay A posted %v, relay B %v: %v emails posted twice, deduplicated by Idempotency-Key", sentA, sentB, sentA+sentB-emails)
	if sentA+sentB < emails {
		t.Fatalf("posted %v in all, want at least %d", sentA+sentB, emails)
	}
}

// TestOutboxTraceContinues runs alone (no t.Parallel): it installs a span recorder as the
// global tracer provider.
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

	n := newNotiService(t)
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
	if err := s.m.Outbox.Enqueue(t.Context(), e); err != nil {
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
			if sp.SpanContext().TraceID().String() != traceID {
				continue
			}
			switch {
			case sp.Name() == "outbox.relay":
				relaySpan = true
			case sp.Name() == "POST "+notihttp.BasePath:
				serverSpan = true
			}
		}
		return relaySpan && serverSpan
	})
}
