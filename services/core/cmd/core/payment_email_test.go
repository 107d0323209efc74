package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cineflow/cineflow/pkg/devdb/notitest"
	"github.com/cineflow/cineflow/pkg/devdb/otlptest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// The relay settings of these tests: short, so that an outage and its recovery take a second.
const (
	payRelayInterval   = 100 * time.Millisecond
	payRelayMaxBackoff = 500 * time.Millisecond
)

// startPayRelaying starts a core service whose relay posts to n (which may not be up yet)
// every payRelayInterval, backing off at most payRelayMaxBackoff.
func startPayRelaying(t *testing.T, n *notiService) *service {
	t.Helper()
	return startService(t, func(c *Config) {
		c.NotificationURL, c.NotificationToken = n.url(), notiToken
		c.RelayInterval, c.RelayMaxBackoff = payRelayInterval, payRelayMaxBackoff
	})
}

// names are the movie's and the theatre's names, as the confirmation should give them.
type names struct{ movie, theatre string }

func (s *service) showNames(f showFixture) names {
	s.t.Helper()
	var mv, th struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/movies/" + f.movieID}), 200).env.Data, &mv); err != nil || mv.Name == "" {
		s.t.Fatalf("movie name: %v", err)
	}
	if err := json.Unmarshal(s.expect(s.do(req{method: "GET", path: base + "/theatres/" + f.theatreID}), 200).env.Data, &th); err != nil || th.Name == "" {
		s.t.Fatalf("theatre name: %v", err)
	}
	return names{movie: mv.Name, theatre: th.Name}
}

// mentions reports whether text names word as a whole (so "A1" is not found in "A10", nor
// "Movie 1" in "Movie 12").
func mentions(text, word string) bool {
	isWord := func(b byte) bool {
		return '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(text[i:], word)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(word)
		if (j == 0 || !isWord(text[j-1])) && (end == len(text) || !isWord(text[end])) {
			return true
		}
		i = j + 1
	}
}

// ticketsFor lists the notification service's tickets addressed to email.
func ticketsFor(n *notiService, email string) []ticket {
	n.t.Helper()
	var out []ticket
	for _, tk := range n.tickets() {
		for _, r := range tk.RecepientEmails {
			if strings.EqualFold(r, email) {
				out = append(out, tk)
				break
			}
		}
	}
	return out
}

// checkConfirmation checks that a ticket confirms bk to email, naming everything a customer
// needs at the door.
func checkConfirmation(t *testing.T, tk ticket, email string, bk core.Booking, nm names) {
	t.Helper()
	if len(tk.RecepientEmails) != 1 || tk.RecepientEmails[0] != email {
		t.Errorf("ticket recipients %v, want only %s", tk.RecepientEmails, email)
	}
	if tk.Status != "PENDING" || tk.Subject == "" {
		t.Errorf("ticket status %q subject %q", tk.Status, tk.Subject)
	}
	want := append([]string{nm.movie, nm.theatre, bk.Timing, bk.ID}, bk.Seats...)
	for _, w := range want {
		if !mentions(tk.Content, w) {
			t.Errorf("ticket content does not name %q:\n%s", w, tk.Content)
		}
	}
}

func paidKey(bookingID string) string { return booking.PaidEmailKind + ":" + bookingID }

// scrapeGauge reads one unlabelled sample from GET /metrics, as Prometheus would.
func scrapeGauge(t *testing.T, s *service, name string) (float64, bool) {
	t.Helper()
	resp, err := s.client.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

func (s *service) pay(tok, bookingID string, amount float64, header map[string]string) response {
	s.t.Helper()
	return s.do(req{method: "POST", path: base + "/payments", token: tok, header: header,
		body: map[string]any{"bookingId": bookingID, "amount": amount}})
}

// TestPaymentEmailSurvivesNotificationOutage pays a booking while the notification service
// is down: the confirmation waits in the outbox, is delivered once the service comes up,
// exactly once, and a second payment attempt queues nothing more.
func TestPaymentEmailSurvivesNotificationOutage(t *testing.T) {
	t.Parallel()
	n := newNotiService(t) // not started: nothing listens on its port yet
	s := startPayRelaying(t, n)
	f := s.newShow(30, 120.5)
	nm := s.showNames(f)
	tok, u := s.customer()
	bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(3)}), 201))
	if len(bk.Seats) != 3 || bk.TotalCost != 361.5 {
		t.Fatalf("booking %+v", bk)
	}
	s.expect(s.pay(tok, bk.ID, bk.TotalCost, nil), 200)

	// The email is owed durably, and the relay keeps trying while the service is down.
	key := paidKey(bk.ID)
	var doc struct {
		Recipients []string `bson:"recipients"`
		Content    string   `bson:"content"`
		Kind       string   `bson:"kind"`
		Ref        string   `bson:"ref"`
		Attempts   int      `bson:"attempts"`
		LastError  string   `bson:"lastError"`
	}
	eventually(t, 10*time.Second, "the relay meets the outage at least twice", func() bool {
		if !outboxDoc(t, s, key, &doc) {
			t.Fatal("the confirmation is not in the outbox")
		}
		return doc.Attempts >= 2 && doc.LastError != ""
	})
	if doc.Kind != booking.PaidEmailKind || doc.Ref != bk.ID || len(doc.Recipients) != 1 || doc.Recipients[0] != u.Email ||
		!mentions(doc.Content, bk.ID) {
		t.Fatalf("outbox document %+v", doc)
	}
	if v, ok := scrapeGauge(t, s, "cineflow_core_outbox_pending"); !ok || v < 1 {
		t.Fatalf("GET /metrics: cineflow_core_outbox_pending %v (present %v), want >= 1 while the service is down", v, ok)
	}

	// A second payment while the service is down: 409, and the outbox gains nothing.
	before := outboxCount(t, s, bson.M{})
	s.expect(s.pay(tok, bk.ID, bk.TotalCost, nil), 409)
	s.expect(s.pay(tok, bk.ID, bk.TotalCost, map[string]string{"Idempotency-Key": "second-try"}), 409)
	if after := outboxCount(t, s, bson.M{}); after != before {
		t.Fatalf("outbox %d -> %d after a refused second payment", before, after)
	}

	// The service comes up on the port the core was told about.
	n.start()
	var got []ticket
	eventually(t, 15*time.Second, "the confirmation ticket is created", func() bool {
		got = ticketsFor(n, u.Email)
		return len(got) >= 1
	})
	if len(got) != 1 {
		t.Fatalf("%d tickets for %s, want 1: %+v", len(got), u.Email, got)
	}
	checkConfirmation(t, got[0], u.Email, bk, nm)

	eventually(t, 10*time.Second, "the outbox empties", func() bool { return outboxCount(t, s, bson.M{}) == 0 })
	time.Sleep(3 * payRelayInterval) // two more relay passes, and some
	if got = ticketsFor(n, u.Email); len(got) != 1 {
		t.Fatalf("%d tickets for %s after more relay passes, want 1", len(got), u.Email)
	}
	if c := outboxCount(t, s, bson.M{}); c != 0 {
		t.Fatalf("outbox holds %d emails, want 0", c)
	}

	// A second payment after the delivery: 409, nothing queued, nothing sent again.
	s.expect(s.pay(tok, bk.ID, bk.TotalCost, nil), 409)
	if c := outboxCount(t, s, bson.M{"_id": key}); c != 0 {
		t.Fatalf("a refused payment queued the confirmation again (%d)", c)
	}
	time.Sleep(3 * payRelayInterval)
	if got = ticketsFor(n, u.Email); len(got) != 1 {
		t.Fatalf("%d tickets for %s after a refused payment, want 1", len(got), u.Email)
	}
	if v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": booking.PaidEmailKind, "result": "sent"}); v != 1 {
		t.Fatalf("cineflow_core_outbox_relayed_total{kind=booking-paid,result=sent} = %v, want 1", v)
	}
	if v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": booking.PaidEmailKind, "result": "retry"}); v < 2 {
		t.Fatalf("cineflow_core_outbox_relayed_total{kind=booking-paid,result=retry} = %v, want >= 2 (the outage)", v)
	}
	if strings.Contains(s.logs.String(), notiToken) {
		t.Fatal("the notification token appears in core's logs")
	}
}

// TestPaymentEmailOnlyWhenPaid: a confirmation is sent for a paid booking and for no other:
// not after a payment of the wrong amount, not for a cancelled booking, and not when a cancel
// wins the race against a payment (whose email is in the outbox before the decision).
func TestPaymentEmailOnlyWhenPaid(t *testing.T) {
	t.Parallel()
	n := newNotiService(t)
	n.start()
	s := startPayRelaying(t, n)
	f := s.newShow(40, 100)
	nm := s.showNames(f)
	tok, u := s.customer()
	book := func(seats int) core.Booking {
		t.Helper()
		return bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(seats)}), 201))
	}
	cancel := func(id string) response {
		return s.do(req{method: "PATCH", path: base + "/bookings/" + id, token: tok, body: map[string]string{"status": "CANCELLED"}})
	}
	never := map[string]string{} // booking id -> why no email may ever name it

	// Wrong amounts: 400 as in the original (also for amounts that are not amounts); the booking stays open.
	wrong := book(2)
	s.expect(s.pay(tok, wrong.ID, wrong.TotalCost-1, nil), 400)
	s.expect(s.pay(tok, wrong.ID, wrong.TotalCost+0.01, nil), 400)
	s.expect(s.pay(tok, wrong.ID, 0, nil), 400)
	s.expect(s.pay(tok, wrong.ID, -wrong.TotalCost, nil), 400)
	if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + wrong.ID, token: tok}), 200)); got.Status != core.BookingInProcess {
		t.Fatalf("after wrong amounts: %s", got.Status)
	}
	never[wrong.ID] = "paid with the wrong amount only"

	// Cancelled, then paid: 409.
	cancelled := book(1)
	s.expect(cancel(cancelled.ID), 200)
	s.expect(s.pay(tok, cancelled.ID, cancelled.TotalCost, nil), 409)
	never[cancelled.ID] = "cancelled, then paid"

	// A wrong amount, a cancel, then the right amount: 409.
	both := book(1)
	s.expect(s.pay(tok, both.ID, 1, nil), 400)
	s.expect(cancel(both.ID), 200)
	s.expect(s.pay(tok, both.ID, both.TotalCost, nil), 409)
	never[both.ID] = "wrong amount, cancelled, then paid"

	// Pay and cancel at once: exactly one wins; a cancel that wins finds the payment's email
	// already in the outbox, and the relay must drop it.
	const races = 6
	paid := map[string]core.Booking{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	raced := make([]core.Booking, races)
	for i := range raced {
		raced[i] = book(1)
	}
	for _, bk := range raced {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var payR, cancelR response
			var inner sync.WaitGroup
			inner.Add(2)
			go func() { defer inner.Done(); payR = s.pay(tok, bk.ID, bk.TotalCost, nil) }()
			go func() { defer inner.Done(); cancelR = cancel(bk.ID) }()
			inner.Wait()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case payR.status == 200 && cancelR.status == 409:
				paid[bk.ID] = bk
			case payR.status == 409 && cancelR.status == 200:
				never[bk.ID] = "cancelled while being paid"
			default:
				t.Errorf("booking %s: pay %d, cancel %d: want exactly one to win", bk.ID, payR.status, cancelR.status)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// And a booking simply paid: its email proves the relay delivers here.
	ok := book(2)
	s.expect(s.pay(tok, ok.ID, ok.TotalCost, nil), 200)
	paid[ok.ID] = ok
	t.Logf("pay/cancel races: %d paid, %d cancelled", len(paid)-1, races-(len(paid)-1))

	eventually(t, 20*time.Second, "every paid booking's confirmation arrives and the outbox empties", func() bool {
		return len(ticketsFor(n, u.Email)) >= len(paid) && outboxCount(t, s, bson.M{}) == 0
	})
	time.Sleep(5 * payRelayInterval) // a few more relay passes: nothing else may come
	if c := outboxCount(t, s, bson.M{}); c != 0 {
		t.Fatalf("outbox holds %d emails", c)
	}
	got := ticketsFor(n, u.Email)
	if len(got) != len(paid) {
		t.Fatalf("%d tickets for %s, want %d (one per paid booking)", len(got), u.Email, len(paid))
	}
	confirmed := map[string]bool{}
	for _, tk := range got {
		for id, why := range never {
			if mentions(tk.Content, id) {
				t.Errorf("a ticket names booking %s (%s):\n%s", id, why, tk.Content)
			}
		}
		for id, bk := range paid {
			if mentions(tk.Content, id) {
				if confirmed[id] {
					t.Errorf("booking %s confirmed twice", id)
				}
				confirmed[id] = true
				checkConfirmation(t, tk, u.Email, bk, nm)
			}
		}
	}
	if len(confirmed) != len(paid) {
		t.Fatalf("confirmed %v, want every one of %d paid bookings", confirmed, len(paid))
	}
	if v, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": booking.PaidEmailKind, "result": "sent"}); v != float64(len(paid)) {
		t.Fatalf("cineflow_core_outbox_relayed_total{kind=booking-paid,result=sent} = %v, want %d", v, len(paid))
	}
	dropped, _ := gather(t, s, "cineflow_core_outbox_relayed_total", map[string]string{"kind": booking.PaidEmailKind, "result": "dropped"})
	t.Logf("confirmations queued for a booking whose cancel won, then dropped by the guard: %v", dropped)
	for id := range never {
		if got := bookingOf(t, s.expect(s.do(req{method: "GET", path: base + "/bookings/" + id, token: tok}), 200)); got.Status == core.BookingPaid {
			t.Errorf("booking %s (%s) is %s", id, never[id], got.Status)
		}
	}
}

// TestPaymentTraceReachesNotification runs alone (no t.Parallel): it installs a span recorder
// as the global tracer provider (the core's spans); the notification service exports its own
// to an OTLP receiver. The trace of the client's POST /payments goes on through the
// core's server span, the relay's attempt and the notification service's server span, and
// the ticket keeps it.
func TestPaymentTraceReachesNotification(t *testing.T) {
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
		_ = tp.Shutdown(t.Context())
	})

	otlp, otlpURL := otlptest.Start(t) // the notification service's spans
	n := newNotiService(t, otlpURL)
	n.start()
	s := startPayRelaying(t, n)
	f := s.newShow(10, 80)
	tok, u := s.customer()
	bk := bookingOf(t, s.expect(s.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201))

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	s.expect(s.pay(tok, bk.ID, bk.TotalCost, map[string]string{"traceparent": "00-" + traceID + "-" + clientSpan + "-01"}), 200)

	var tks []ticket
	eventually(t, 15*time.Second, "the confirmation ticket is created", func() bool {
		tks = ticketsFor(n, u.Email)
		return len(tks) > 0
	})
	if len(tks) != 1 {
		t.Fatalf("%d tickets, want 1", len(tks))
	}
	var tk ticket
	if err := json.Unmarshal(n.get("/"+tks[0].ID).Data, &tk); err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(tk.TraceParent, "-"); len(parts) != 4 || parts[1] != traceID {
		t.Fatalf("ticket traceparent %q, want trace %s", tk.TraceParent, traceID)
	}

	coreRoute := "POST " + base + "/payments"
	notiRoute := "POST " + notitest.BasePath
	var (
		spans                 map[trace.SpanID]sdktrace.ReadOnlySpan
		coreSpan              sdktrace.ReadOnlySpan
		notiSpan              *otlptest.Span // the notification service's, received by OTLP
		relaySent, relayTried int
	)
	eventually(t, 10*time.Second, "the core, relay and notification spans of the trace end", func() bool {
		spans = map[trace.SpanID]sdktrace.ReadOnlySpan{}
		coreSpan, notiSpan, relaySent, relayTried = nil, nil, 0, 0
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID().String() != traceID {
				continue
			}
			spans[sp.SpanContext().SpanID()] = sp
			switch {
			case sp.Name() == coreRoute && sp.SpanKind() == trace.SpanKindServer:
				coreSpan = sp
			case sp.Name() == "outbox.relay":
				relayTried++
				if attr(sp, "outbox.result") == string(outbox.RelaySent) {
					relaySent++
				}
			}
		}
		received, _, _ := otlp.Snapshot()
		for i, sp := range received {
			if sp.TraceID == traceID && sp.Name == notiRoute && sp.Kind == otlptest.KindServer {
				notiSpan = &received[i]
			}
		}
		return coreSpan != nil && notiSpan != nil && relaySent > 0
	})
	if relaySent != 1 {
		t.Errorf("%d relay spans sent the email (of %d attempts), want 1", relaySent, relayTried)
	}
	// The core's server span continues the client's span.
	if p := coreSpan.Parent(); p.TraceID().String() != traceID || p.SpanID().String() != clientSpan || !p.IsRemote() {
		t.Errorf("core server span's parent %v, want the client's span %s", p, clientSpan)
	}
	if st := attrInt(coreSpan, "http.response.status_code"); st != 200 {
		t.Errorf("core server span status %d", st)
	}
	// The notification service's span descends from the relay's sending attempt, which
	// descends from the core's server span: one chain back to the client.
	chain := []string{notiSpan.Name}
	sawRelay := false
	parent, err := trace.SpanIDFromHex(notiSpan.ParentID)
	sp, ok := spans[parent]
	if err != nil || !ok {
		t.Fatalf("the notification span's parent %q is none of the core's spans in the trace", notiSpan.ParentID)
	}
	for sp != nil {
		chain = append(chain, sp.Name())
		if sp.Name() == "outbox.relay" {
			sawRelay = true
			if k := attr(sp, "outbox.key"); k != paidKey(bk.ID) {
				t.Errorf("relay span key %q, want %q", k, paidKey(bk.ID))
			}
		}
		if sp == coreSpan {
			break
		}
		next, ok := spans[sp.Parent().SpanID()]
		if !ok {
			t.Fatalf("the chain from the notification span breaks at %q (parent %s): %v", sp.Name(), sp.Parent().SpanID(), chain)
		}
		sp = next
	}
	if !sawRelay || chain[len(chain)-1] != coreRoute {
		t.Fatalf("chain from the notification span: %v, want it through outbox.relay to %q", chain, coreRoute)
	}
	t.Logf("trace %s: %s (relay attempts in the trace: %d)", traceID, strings.Join(chain, " <- "), relayTried)
}

func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func attrInt(sp sdktrace.ReadOnlySpan, key string) int64 {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key && kv.Value.Type() == attribute.INT64 {
			return kv.Value.AsInt64()
		}
	}
	return -1
}
