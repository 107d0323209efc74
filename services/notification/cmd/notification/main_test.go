package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/httpapi"
)

const base = httpapi.BasePath

// Many Mains run in this process at once; the global tracer provider is installed once, so
// that one test's Close cannot switch tracing off under another.
var telemetryOnce sync.Once

func sharedTelemetry(context.Context) (func(context.Context) error, error) {
	var err error
	telemetryOnce.Do(func() { _, err = telemetry.Setup(context.Background(), "notification-test", "test") })
	return func(context.Context) error { return nil }, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// syncBuffer collects log lines from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testDBURL is the URL of a database of this test's own on the test server.
func testDBURL(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(devdb.TestURI(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + devdb.TestDatabase(t)
	return u.String()
}

// service is a Main running on a free port against a database of its own.
type service struct {
	t      *testing.T
	m      *Main
	base   string // http://127.0.0.1:port
	token  string
	db     *mongo.Database
	logs   *syncBuffer
	client *http.Client
}

func testConfig(t testing.TB) Config {
	cfg := Config{
		Settings: httpx.Settings{Host: "127.0.0.1", BodyLimit: 1 << 20, ShutdownTimeout: 10 * time.Second},
		Port:     0, DBURL: testDBURL(t), DBConnectTimeout: 20 * time.Second,
		APIToken: "test-token-" + notification.NewID().Hex(), MetricsStatsTTL: 5 * time.Second,
	}
	cfg.AppEnv, cfg.LogLevel = "development", "debug"
	return cfg
}

func startService(t *testing.T, edit func(*Config)) *service {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	m := &Main{Config: cfg, Logger: logging.NewTo(logs, "debug", "notification"), SetupTelemetry: sharedTelemetry}
	if err := m.Run(t.Context()); err != nil {
		m.Close()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &service{t: t, m: m, base: "http://" + m.Addr(), token: cfg.APIToken, logs: logs,
		db:     m.Client.Database(mongox.DatabaseName(cfg.DBURL, "noti")),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// envelope is a decoded response body.
type envelope struct {
	Success bool            `json:"success"`
	Error   json.RawMessage `json:"error"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

type response struct {
	status int
	header http.Header
	env    envelope
	raw    []byte
}

// errorText is the error as a string (or the JSON of a field map).
func (r response) errorText() string { return string(r.env.Error) }

// fields is the error's field map (nil if the error is a string).
func (r response) fields() map[string]string {
	var f map[string]string
	_ = json.Unmarshal(r.env.Error, &f)
	return f
}

type req struct {
	method, path string
	body         any // string, []byte, or a value to marshal; nil for none
	header       map[string]string
	noAuth       bool
}

// do sends r and checks that the answer is a well-formed envelope whose success matches
// the status.
func (s *service) do(r req) response {
	s.t.Helper()
	resp, err := s.send(r)
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return checkEnvelope(s.t, r.method+" "+r.path, resp)
}

func (s *service) send(r req) (*http.Response, error) {
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(j)
	}
	hr, err := http.NewRequest(r.method, s.base+r.path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if !r.noAuth {
		hr.Header.Set("Authorization", "Bearer "+s.token)
	}
	for k, v := range r.header {
		if v == "<delete>" {
			hr.Header.Del(k)
			continue
		}
		hr.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	return s.client.Do(hr)
}

func checkEnvelope(t testing.TB, what string, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", what, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: Content-Type %q, body %s", what, ct, raw)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("%s: body is not a JSON object: %v: %s", what, err, raw)
	}
	// success, error, data, message; and a failure's code.
	if _, coded := keys["code"]; len(keys) != 4 && !(resp.StatusCode >= 400 && coded && len(keys) == 5) ||
		resp.StatusCode >= 400 && !coded {
		t.Fatalf("%s: envelope has keys %v, want success,error,data,message (and code on a failure): %s", what, keys, raw)
	}
	if err := json.Unmarshal(raw, &r.env); err != nil {
		t.Fatalf("%s: envelope: %v: %s", what, err, raw)
	}
	for _, k := range []string{"success", "error", "data", "message"} {
		if _, ok := keys[k]; !ok {
			t.Fatalf("%s: envelope lacks %q: %s", what, k, raw)
		}
	}
	if r.env.Success != (resp.StatusCode < 400) {
		t.Fatalf("%s: success=%v with status %d: %s", what, r.env.Success, resp.StatusCode, raw)
	}
	if r.env.Message == "" {
		t.Fatalf("%s: empty message: %s", what, raw)
	}
	if r.env.Success {
		if string(r.env.Error) != "{}" {
			t.Fatalf("%s: success with error %s", what, r.env.Error)
		}
	} else {
		if string(r.env.Data) != "{}" {
			t.Fatalf("%s: failure with data %s", what, r.env.Data)
		}
		e := strings.TrimSpace(string(r.env.Error))
		if e == "" || e == "{}" || e == `""` || e == "null" {
			t.Fatalf("%s: failure without a reason: %s", what, raw)
		}
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		t.Fatalf("%s: status %d: %s", what, resp.StatusCode, raw)
	}
	return r
}

func (r response) ticket(t testing.TB) notification.Ticket {
	t.Helper()
	var tk notification.Ticket
	if err := json.Unmarshal(r.env.Data, &tk); err != nil {
		t.Fatalf("data is not a ticket: %v: %s", err, r.env.Data)
	}
	return tk
}

func (r response) tickets(t testing.TB) []notification.Ticket {
	t.Helper()
	var tk []notification.Ticket
	if err := json.Unmarshal(r.env.Data, &tk); err != nil {
		t.Fatalf("data is not a list of tickets: %v: %s", err, r.env.Data)
	}
	return tk
}

func wantStatus(t testing.TB, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
}

func newTicketBody(i int) map[string]any {
	return map[string]any{
		"subject":         fmt.Sprintf("Booking %d confirmed", i),
		"content":         "<p>Enjoy the show</p>",
		"recepientEmails": []string{fmt.Sprintf("user%d@example.com", i)},
	}
}

func (s *service) create(i int) notification.Ticket {
	s.t.Helper()
	r := s.do(req{method: "POST", path: base, body: newTicketBody(i)})
	wantStatus(s.t, r, 201)
	return r.ticket(s.t)
}

// decide records the outcome of the ticket's current generation as the sweeper does: its
// queue entry is taken, the outcome inserted and counted (the store counts and resolves from
// these records, before any projection onto the ticket).
func (s *service) decide(id notification.ID, st notification.Status) {
	s.t.Helper()
	ctx := context.Background()
	tk, err := s.m.Store.Get(ctx, id)
	if err != nil {
		s.t.Fatal(err)
	}
	key := notification.AssignmentKey(id, tk.Generation)
	if err := s.m.Store.Dequeue(ctx, []string{key}); err != nil {
		s.t.Fatal(err)
	}
	o := notification.Outcome{Key: key, Ticket: id, Generation: tk.Generation, Status: st, At: time.Now().UTC()}
	tally := notification.Tally{Success: 1}
	if st == notification.StatusFailed {
		o.Error, tally = "mailbox unavailable", notification.Tally{Failed: 1}
	}
	if _, err := s.m.Store.Decide(ctx, []notification.Outcome{o}); err != nil {
		s.t.Fatalf("record the outcome: %v", err)
	}
	if err := s.m.Store.AppendTally(ctx, "test:"+key, tally); err != nil {
		s.t.Fatal(err)
	}
}

// setFailed marks a ticket FAILED directly in the database, as the sweeper would.
func (s *service) setFailed(id notification.ID, attempts int) {
	s.t.Helper()
	s.decide(id, notification.StatusFailed)
	var history bson.A
	for i := 1; i <= attempts; i++ {
		history = append(history, bson.M{"at": time.Now().UTC(), "attempt": i, "error": fmt.Sprintf("mailbox unavailable (%d)", i)})
	}
	res, err := s.db.Collection("tickets").UpdateOne(context.Background(), bson.M{"_id": id}, bson.M{"$set": bson.M{
		"status": notification.StatusFailed, "attempts": attempts, "lastError": "mailbox unavailable", "errors": history,
	}})
	if err != nil || res.MatchedCount != 1 {
		s.t.Fatalf("set FAILED: %v (matched %v)", err, res)
	}
}

func (s *service) setStatus(id notification.ID, st notification.Status) {
	s.t.Helper()
	if st != notification.StatusPending {
		s.decide(id, st)
	}
	if _, err := s.db.Collection("tickets").UpdateOne(context.Background(), bson.M{"_id": id},
		bson.M{"$set": bson.M{"status": st}}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *service) count(filter bson.M) int64 {
	s.t.Helper()
	n, err := s.db.Collection("tickets").CountDocuments(context.Background(), filter)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *service) metrics() string {
	s.t.Helper()
	resp, err := s.client.Get(s.base + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		s.t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// metricValue finds "name value" (name includes any labels) in a scrape.
func metricValue(t testing.TB, scrape, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s missing from scrape:\n%s", name, scrape)
	return 0
}
