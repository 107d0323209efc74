package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/notification"
)

func TestMain(m *testing.M) {
	// Spans are recorded as in the service, so tickets carry a traceparent.
	if _, err := telemetry.Setup(context.Background(), "notification-test", "test"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// mockStore is a notification.TicketStore for handler tests.
type mockStore struct {
	CreateFn  func(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error)
	GetFn     func(ctx context.Context, id notification.ID) (*notification.Ticket, error)
	ListFn    func(ctx context.Context, f notification.ListFilter) (notification.Page, error)
	RequeueFn func(ctx context.Context, id notification.ID) (*notification.Ticket, error)
	StatsFn   func(ctx context.Context) (notification.Stats, error)
	PingFn    func(ctx context.Context) error
}

func (m *mockStore) Create(ctx context.Context, t *notification.Ticket) (*notification.Ticket, bool, error) {
	if m.CreateFn == nil {
		t.ID, t.Status = notification.NewID(), notification.StatusPending
		return t, true, nil
	}
	return m.CreateFn(ctx, t)
}

func (m *mockStore) Get(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	if m.GetFn == nil {
		return nil, errs.E(errs.NotFound, "ticket %s not found", id.Hex())
	}
	return m.GetFn(ctx, id)
}

func (m *mockStore) List(ctx context.Context, f notification.ListFilter) (notification.Page, error) {
	if m.ListFn == nil {
		return notification.Page{}, nil
	}
	return m.ListFn(ctx, f)
}

func (m *mockStore) Requeue(ctx context.Context, id notification.ID) (*notification.Ticket, error) {
	if m.RequeueFn == nil {
		return nil, errs.E(errs.Conflict, "not FAILED")
	}
	return m.RequeueFn(ctx, id)
}

func (m *mockStore) Stats(ctx context.Context) (notification.Stats, error) {
	if m.StatsFn == nil {
		return notification.Stats{ByStatus: map[notification.Status]int64{}}, nil
	}
	return m.StatsFn(ctx)
}

func (m *mockStore) Ping(ctx context.Context) error {
	if m.PingFn == nil {
		return nil
	}
	return m.PingFn(ctx)
}

const testToken = "unit-token"

func newTestServer(store notification.TicketStore) *httpx.Server {
	return New(store, Options{Token: testToken, Logger: quiet})
}

type result struct {
	status int
	header http.Header
	env    struct {
		Success bool            `json:"success"`
		Error   json.RawMessage `json:"error"`
		Data    json.RawMessage `json:"data"`
		Message string          `json:"message"`
	}
	raw string
}

func call(t *testing.T, srv *httpx.Server, method, path, body string, header map[string]string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	resp, err := srv.App.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.env); err != nil {
		t.Fatalf("%s %s: not an envelope: %s", method, path, raw)
	}
	return r
}

const validBody = `{"subject":"Hi","content":"Body","recepientEmails":["a@example.com"]}`

func TestStoreErrorsMapToEnvelope(t *testing.T) {
	t.Parallel()
	secret := errors.New("dial tcp 10.1.2.3:27017: auth failed for db-password-xyz")
	id := notification.NewID().Hex()
	cases := []struct {
		name           string
		store          *mockStore
		method, path   string
		body           string
		status         int
		wantMsg, never string
	}{
		{"unavailable", &mockStore{GetFn: func(context.Context, notification.ID) (*notification.Ticket, error) {
			return nil, errs.Wrap(errs.Unavailable, secret, "database unavailable: could not read the ticket")
		}}, "GET", BasePath + "/" + id, "", 503, "database unavailable", "db-password-xyz"},
		{"unexpected", &mockStore{ListFn: func(context.Context, notification.ListFilter) (notification.Page, error) {
			return notification.Page{}, secret
		}}, "GET", BasePath, "", 500, "internal error", "db-password-xyz"},
		{"unprocessable", &mockStore{CreateFn: func(context.Context, *notification.Ticket) (*notification.Ticket, bool, error) {
			return nil, false, errs.E(errs.Unprocessable, "Idempotency-Key was already used with a different request")
		}}, "POST", BasePath, validBody, 422, "different request", ""},
		{"create unavailable", &mockStore{CreateFn: func(context.Context, *notification.Ticket) (*notification.Ticket, bool, error) {
			return nil, false, errs.Wrap(errs.Unavailable, secret, "database unavailable: could not store the ticket")
		}}, "POST", BasePath, validBody, 503, "could not store", "10.1.2.3"},
		{"conflict", &mockStore{}, "POST", BasePath + "/" + id + "/retry", "", 409, "not FAILED", ""},
		{"not found", &mockStore{}, "GET", BasePath + "/" + id, "", 404, "not found", ""},
		{"panic", &mockStore{GetFn: func(context.Context, notification.ID) (*notification.Ticket, error) {
			panic("db-password-xyz")
		}}, "GET", BasePath + "/" + id, "", 500, "internal error", "db-password-xyz"},
	}
	for _, c := range cases {
		srv := newTestServer(c.store)
		r := call(t, srv, c.method, c.path, c.body, nil)
		if r.status != c.status || r.env.Success || !strings.Contains(string(r.env.Error), c.wantMsg) || string(r.env.Data) != "{}" {
			t.Errorf("%s: %d %s, want %d with %q", c.name, r.status, r.raw, c.status, c.wantMsg)
		}
		if c.never != "" && strings.Contains(r.raw, c.never) {
			t.Errorf("%s: response leaks the cause: %s", c.name, r.raw)
		}
	}
}

func TestCreatePassesOnlyClientFields(t *testing.T) {
	t.Parallel()
	var got *notification.Ticket
	srv := newTestServer(&mockStore{CreateFn: func(_ context.Context, tk *notification.Ticket) (*notification.Ticket, bool, error) {
		c := *tk
		got = &c
		tk.ID, tk.Status = notification.NewID(), notification.StatusPending
		return tk, true, nil
	}})
	body := `{"subject":" S ","content":"C","recepientEmails":["b@example.com","a@example.com","B@example.com"],` +
		`"status":"SUCCESS","attempts":3,"generation":2,"batch":"x","traceparent":"00-evil","idempotencyKey":"k2",` +
		`"requestHash":"h","sentAt":"2020-01-01T00:00:00Z","providerMessageId":"p","lastError":"e","_id":"0123456789abcdef01234567"}`
	r := call(t, srv, "POST", BasePath, body, map[string]string{"Idempotency-Key": "key-1"})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if got.Status != "" || got.Attempts != 0 || got.Generation != 0 || got.Batch != "" || got.SentAt != nil ||
		got.ProviderMessageID != "" || got.LastError != "" || !got.ID.IsZero() || !got.CreatedAt.IsZero() {
		t.Errorf("the handler passed client-chosen server fields: %+v", got)
	}
	if got.IdempotencyKey != "key-1" || got.Subject != "S" {
		t.Errorf("ticket %+v", got)
	}
	want := RequestHash(&notification.NewTicket{Subject: "S", Content: "C", RecipientEmails: []string{"a@example.com", "b@example.com"}})
	if got.RequestHash != want {
		t.Errorf("RequestHash %s, want %s", got.RequestHash, want)
	}
	if !strings.HasPrefix(got.TraceParent, "00-") || len(got.TraceParent) != 55 {
		t.Errorf("traceparent %q", got.TraceParent)
	}
	if r.header.Get(HeaderIdempotentReplay) != "" {
		t.Error("fresh ticket marked as replay")
	}
	// Without a key, no hash is computed.
	call(t, srv, "POST", BasePath, validBody, nil)
	if got.IdempotencyKey != "" || got.RequestHash != "" {
		t.Errorf("no key, yet key %q hash %q", got.IdempotencyKey, got.RequestHash)
	}
}

func TestReplayHeaderAndCounter(t *testing.T) {
	t.Parallel()
	prev := &notification.Ticket{ID: notification.NewID(), Status: notification.StatusSuccess, Subject: "first"}
	var created atomic.Bool
	srv := newTestServer(&mockStore{CreateFn: func(_ context.Context, tk *notification.Ticket) (*notification.Ticket, bool, error) {
		if created.CompareAndSwap(false, true) {
			tk.ID = prev.ID
			return tk, true, nil
		}
		return prev, false, nil
	}})
	first := call(t, srv, "POST", BasePath, validBody, map[string]string{"Idempotency-Key": "k"})
	second := call(t, srv, "POST", BasePath, validBody, map[string]string{"Idempotency-Key": "k"})
	if first.status != 201 || second.status != 201 || second.header.Get(HeaderIdempotentReplay) != "true" ||
		first.header.Get(HeaderIdempotentReplay) != "" {
		t.Errorf("first %d %v, second %d %v", first.status, first.header, second.status, second.header)
	}
	if !strings.Contains(string(second.env.Data), `"status":"SUCCESS"`) || !strings.Contains(string(second.env.Data), `"errors":[]`) {
		t.Errorf("replay data %s", second.env.Data)
	}
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "cineflow_notification_tickets_created_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Errorf("created_total %v, want 1", v)
			}
			return
		}
	}
	t.Error("cineflow_notification_tickets_created_total not registered")
}

func TestIdempotencyKeyHeader(t *testing.T) {
	t.Parallel()
	srv := newTestServer(&mockStore{})
	for key, want := range map[string]int{
		"a":                            201,
		strings.Repeat("k", 255):       201,
		"order 42 / confirmation ~!@#": 201,
		strings.Repeat("k", 256):       400,
		"":                             400,
		"ключ":                         400,
	} {
		r := call(t, srv, "POST", BasePath, validBody, map[string]string{"Idempotency-Key": key})
		if r.status != want {
			t.Errorf("key %q: %d, want %d: %s", key, r.status, want, r.raw)
		}
		if want == 400 && !strings.Contains(string(r.env.Error), "Idempotency-Key") {
			t.Errorf("key %q: error %s", key, r.env.Error)
		}
	}
}

func TestRequestHash(t *testing.T) {
	t.Parallel()
	h := func(s, c, r string, rcpt ...string) string {
		return RequestHash(&notification.NewTicket{Subject: s, Content: c, Requester: r, RecipientEmails: rcpt})
	}
	base := h("s", "c", "", "a@x.io", "b@x.io")
	if h("s", "c", "", "B@x.io", "a@x.io") != base {
		t.Error("recipient order or case changes the hash")
	}
	for name, other := range map[string]string{
		"subject":    h("s2", "c", "", "a@x.io", "b@x.io"),
		"content":    h("s", "c2", "", "a@x.io", "b@x.io"),
		"requester":  h("s", "c", "r", "a@x.io", "b@x.io"),
		"recipients": h("s", "c", "", "a@x.io"),
		"shifted":    h("sc", "", "", "a@x.io", "b@x.io"),
		"moved":      h("s", "c", "a@x.io", "b@x.io"),
	} {
		if other == base {
			t.Errorf("a different %s hashes the same", name)
		}
	}
	if len(base) != 64 {
		t.Errorf("hash %q is not hex SHA-256", base)
	}
}

func TestListParameters(t *testing.T) {
	t.Parallel()
	var got notification.ListFilter
	ids := []notification.ID{notification.NewID(), notification.NewID()}
	srv := newTestServer(&mockStore{ListFn: func(_ context.Context, f notification.ListFilter) (notification.Page, error) {
		got = f
		var page notification.Page
		for i := 0; i < f.Limit && i < len(ids); i++ {
			page.Tickets = append(page.Tickets, notification.Ticket{ID: ids[i]})
		}
		if f.Limit <= len(ids) {
			page.Next = "p12.-3~4"
		}
		return page, nil
	}})
	r := call(t, srv, "GET", BasePath, "", nil)
	if r.status != 200 || got != (notification.ListFilter{Limit: 20}) || r.header.Get(HeaderNextCursor) != "" || r.header.Get("Link") != "" {
		t.Errorf("defaults: %d %+v %v", r.status, got, r.header)
	}
	if !strings.HasPrefix(string(r.env.Data), "[") {
		t.Errorf("data %s is not an array", r.env.Data)
	}
	// The cursor of earlier versions (a ticket id), and the store's own.
	cursor := notification.NewID()
	r = call(t, srv, "GET", BasePath+"?status=failed&limit=2&skip=7&cursor="+cursor.Hex(), "", nil)
	want := notification.ListFilter{Status: notification.StatusFailed, Limit: 2, Skip: 7, Before: cursor}
	if r.status != 200 || got != want {
		t.Errorf("filter %+v, want %+v", got, want)
	}
	if r.header.Get(HeaderNextCursor) != "p12.-3~4" {
		t.Errorf("next page: cursor %q", r.header.Get(HeaderNextCursor))
	}
	if link := r.header.Get("Link"); link != `</notiservice/api/v1/notifications?cursor=p12.-3~4&limit=2&status=FAILED>; rel="next"` {
		t.Errorf("Link %q", link)
	}
	r = call(t, srv, "GET", BasePath+"?limit=1&cursor=p12.-3~4", "", nil)
	if want := (notification.ListFilter{Limit: 1, Cursor: "p12.-3~4"}); r.status != 200 || got != want {
		t.Errorf("filter %+v, want %+v", got, want)
	}
	for _, bad := range []string{"zzzzzzzzzzzzzzzzzzzzzzzz", "a%20b", "t1%3Cx", strings.Repeat("t1", 40)} {
		r = call(t, srv, "GET", BasePath+"?cursor="+bad, "", nil)
		if r.status != 400 || !strings.Contains(string(r.env.Error), "cursor") {
			t.Errorf("cursor %q: %d %s", bad, r.status, r.raw)
		}
	}
	r = call(t, srv, "GET", BasePath+"/", "", nil) // trailing slash: the same route
	if r.status != 200 {
		t.Errorf("GET %s/: %d", BasePath, r.status)
	}
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestStatsCollectorCaches(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	oldest := clock.t.Add(-90 * time.Second)
	var calls atomic.Int32
	var fail atomic.Bool
	pending := atomic.Int64{}
	pending.Store(4)
	store := &mockStore{StatsFn: func(context.Context) (notification.Stats, error) {
		calls.Add(1)
		if fail.Load() {
			return notification.Stats{}, errors.New("database down")
		}
		return notification.Stats{ByStatus: map[notification.Status]int64{
			notification.StatusPending: pending.Load(), notification.StatusSuccess: 10}, OldestPending: &oldest}, nil
	}}
	c := NewStatsCollector(store, 5*time.Second, quiet)
	c.now = clock.now
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	expect := func(want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
			t.Error(err)
		}
	}
	const head = `
# HELP cineflow_notification_oldest_pending_age_seconds Age of the oldest PENDING ticket (0 when none is pending).
# TYPE cineflow_notification_oldest_pending_age_seconds gauge
# HELP cineflow_notification_ticket_stats_up 1 if the last read of the ticket figures from the database succeeded, else 0.
# TYPE cineflow_notification_ticket_stats_up gauge
# HELP cineflow_notification_tickets Tickets in the database by delivery status.
# TYPE cineflow_notification_tickets gauge
# HELP cineflow_notification_tickets_delivered_total Tickets delivered (status SUCCESS) since the database began.
# TYPE cineflow_notification_tickets_delivered_total counter
`
	expect(head + `
cineflow_notification_oldest_pending_age_seconds 90
cineflow_notification_ticket_stats_up 1
cineflow_notification_tickets{status="FAILED"} 0
cineflow_notification_tickets{status="PENDING"} 4
cineflow_notification_tickets{status="SUCCESS"} 10
cineflow_notification_tickets_delivered_total 10
`)
	// Within the window: no query, but the age keeps growing.
	pending.Store(5)
	clock.add(3 * time.Second)
	for range 10 {
		_, _ = reg.Gather()
	}
	expect(head + `
cineflow_notification_oldest_pending_age_seconds 93
cineflow_notification_ticket_stats_up 1
cineflow_notification_tickets{status="FAILED"} 0
cineflow_notification_tickets{status="PENDING"} 4
cineflow_notification_tickets{status="SUCCESS"} 10
cineflow_notification_tickets_delivered_total 10
`)
	if n := calls.Load(); n != 1 {
		t.Errorf("%d Stats calls within the window, want 1", n)
	}
	// After the window: one new query.
	clock.add(2 * time.Second)
	_, _ = reg.Gather()
	if n := calls.Load(); n != 2 {
		t.Errorf("%d Stats calls after the window, want 2", n)
	}
	// A failed read keeps the last figures, says so, and is not retried within the window.
	fail.Store(true)
	clock.add(6 * time.Second)
	expect(head + `
cineflow_notification_oldest_pending_age_seconds 101
cineflow_notification_ticket_stats_up 0
cineflow_notification_tickets{status="FAILED"} 0
cineflow_notification_tickets{status="PENDING"} 5
cineflow_notification_tickets{status="SUCCESS"} 10
cineflow_notification_tickets_delivered_total 10
`)
	_, _ = reg.Gather()
	if n := calls.Load(); n != 3 {
		t.Errorf("%d Stats calls, want 3 (a failure is cached too)", n)
	}
}

func TestStatsCollectorConcurrentScrapesShareOneQuery(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	store := &mockStore{StatsFn: func(context.Context) (notification.Stats, error) {
		calls.Add(1)
		<-release
		return notification.Stats{ByStatus: map[notification.Status]int64{}}, nil
	}}
	srv := New(store, Options{Logger: quiet})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := srv.App.Test(httptest.NewRequest("GET", "/metrics", nil), -1)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(b, []byte(`cineflow_notification_tickets{status="FAILED"} 0`)) ||
				!bytes.Contains(b, []byte("cineflow_notification_oldest_pending_age_seconds 0")) {
				t.Errorf("scrape:\n%s", b)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d Stats queries for 8 concurrent scrapes, want 1", n)
	}
}

func TestStatsCollectorNeverRead(t *testing.T) {
	t.Parallel()
	store := &mockStore{StatsFn: func(context.Context) (notification.Stats, error) {
		return notification.Stats{}, errors.New("down")
	}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStatsCollector(store, time.Second, quiet))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cineflow_notification_ticket_stats_up 1 if the last read of the ticket figures from the database succeeded, else 0.
# TYPE cineflow_notification_ticket_stats_up gauge
cineflow_notification_ticket_stats_up 0
`)); err != nil {
		t.Error(err)
	}
}

func TestReadyzUsesStorePing(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	srv := newTestServer(&mockStore{PingFn: func(context.Context) error {
		if down.Load() {
			return errors.New("no route to host")
		}
		return nil
	}})
	if r := call(t, srv, "GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("/readyz %d", r.status)
	}
	down.Store(true)
	if r := call(t, srv, "GET", "/readyz", "", nil); r.status != 503 || r.env.Success {
		t.Errorf("/readyz with the database down: %d %s", r.status, r.raw)
	}
}
