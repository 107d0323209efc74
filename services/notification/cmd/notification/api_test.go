package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

var hexID = regexp.MustCompile(`^[0-9a-f]{24}$`)

func TestHealthEndpointsAreOpen(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		r := s.do(req{method: "GET", path: path, noAuth: true})
		wantStatus(t, r, 200)
	}
	resp, err := s.client.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics without a token: %d", resp.StatusCode)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	tk := s.create(1)
	id := tk.ID.Hex()
	routes := []req{
		{method: "POST", path: base, body: newTicketBody(2)},
		{method: "POST", path: base + "/", body: newTicketBody(3)},
		{method: "GET", path: base},
		{method: "GET", path: base + "/" + id},
		{method: "POST", path: base + "/" + id + "/retry"},
	}
	for _, rt := range routes {
		for _, bad := range []struct{ name, header string }{
			{"missing", "<delete>"},
			{"wrong", "Bearer wrong-" + s.token},
			{"prefix", "Bearer " + s.token[:len(s.token)-1]},
			{"basic", "Basic " + s.token},
			{"empty bearer", "Bearer "},
		} {
			r := rt
			r.noAuth = true
			r.header = map[string]string{"Authorization": bad.header}
			got := s.do(r)
			if got.status != 401 {
				t.Errorf("%s %s with %s token: %d, want 401: %s", r.method, r.path, bad.name, got.status, got.raw)
			}
			if got.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", r.method, r.path)
			}
		}
		r := rt
		r.header = map[string]string{"Authorization": "bearer " + s.token} // scheme is case-insensitive
		got := s.do(r)
		if got.status == 401 {
			t.Errorf("%s %s with the right token: 401: %s", r.method, r.path, got.raw)
		}
	}
	if n := s.count(bson.M{}); n != 3 {
		t.Errorf("%d tickets, want 3 (rejected requests must create none)", n)
	}
	if strings.Contains(s.logs.String(), s.token) {
		t.Errorf("logs contain the API token:\n%s", s.logs.String())
	}
}

func TestAuthDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.APIToken = "" })
	r := s.do(req{method: "POST", path: base, body: newTicketBody(1), noAuth: true})
	wantStatus(t, r, 201)
	if !strings.Contains(s.logs.String(), "NOTIFICATION_API_TOKEN is not set") {
		t.Errorf("no warning about the open API in the logs:\n%s", s.logs.String())
	}
}

func TestCreateTicket(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	before := time.Now().Add(-time.Second)
	r := s.do(req{method: "POST", path: base, body: map[string]any{
		"subject":         "  Your booking  ",
		"content":         "Seats A1, A2",
		"recepientEmails": []string{" Ann@Example.com", "bob@example.org", "ann@example.com"},
		"requester":       "core-api",
		// server-owned and unknown fields are ignored
		"status": "SUCCESS", "attempts": 9, "_id": "0123456789abcdef01234567", "generation": 7,
		"batch": "b1", "sentAt": "2020-01-01T00:00:00Z", "idempotencyKey": "x", "requestHash": "y",
		"lastError": "none", "errors": []any{map[string]any{"attempt": 1}}, "createdAt": "2001-01-01T00:00:00Z",
		"providerMessageId": "pm", "nextAttemptAt": "2100-01-01T00:00:00Z", "whatever": map[string]any{"$set": 1},
	}, header: map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}})
	wantStatus(t, r, 201)
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("first create marked as a replay")
	}
	tk := r.ticket(t)
	var raw map[string]any
	json.Unmarshal(r.env.Data, &raw)
	if id, _ := raw["_id"].(string); !hexID.MatchString(id) {
		t.Errorf("_id = %v, want a hex ObjectId string", raw["_id"])
	}
	for _, k := range []string{"createdAt", "updatedAt"} {
		v, _ := raw[k].(string)
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			t.Errorf("%s = %v, want RFC 3339", k, raw[k])
		}
	}
	if errsField, ok := raw["errors"].([]any); !ok || len(errsField) != 0 {
		t.Errorf("errors = %v, want []", raw["errors"])
	}
	for _, k := range []string{"idempotencyKey", "requestHash", "batch"} {
		if _, ok := raw[k]; ok {
			t.Errorf("internal field %q is exposed", k)
		}
	}
	if tk.Status != notification.StatusPending || tk.Attempts != 0 || tk.Generation != 0 || tk.SentAt != nil ||
		tk.LastError != "" || tk.ProviderMessageID != "" || tk.ID.Hex() == "0123456789abcdef01234567" {
		t.Errorf("server-owned fields were set by the client: %+v", tk)
	}
	if tk.CreatedAt.Before(before) || tk.NextAttemptAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("createdAt %v / nextAttemptAt %v not from the server", tk.CreatedAt, tk.NextAttemptAt)
	}
	if tk.Subject != "Your booking" || tk.Content != "Seats A1, A2" || tk.Requester != "core-api" {
		t.Errorf("ticket = %+v", tk)
	}
	if want := []string{"Ann@Example.com", "bob@example.org"}; fmt.Sprint(tk.RecipientEmails) != fmt.Sprint(want) {
		t.Errorf("recipients %v, want %v (trimmed, duplicates removed)", tk.RecipientEmails, want)
	}
	if !strings.HasPrefix(tk.TraceParent, "00-"+traceID+"-") {
		t.Errorf("traceparent %q does not continue the caller's trace %s", tk.TraceParent, traceID)
	}
	if loc := r.header.Get("Location"); loc != base+"/"+tk.ID.Hex() {
		t.Errorf("Location %q", loc)
	}

	// GET returns the same ticket.
	g := s.do(req{method: "GET", path: base + "/" + tk.ID.Hex()})
	wantStatus(t, g, 200)
	got := g.ticket(t)
	if got.ID != tk.ID || got.Subject != tk.Subject || got.Status != notification.StatusPending ||
		!got.CreatedAt.Equal(tk.CreatedAt) || got.TraceParent != tk.TraceParent {
		t.Errorf("GET = %+v, want %+v", got, tk)
	}
	var graw map[string]any
	json.Unmarshal(g.env.Data, &graw)
	if e, ok := graw["errors"].([]any); !ok || len(e) != 0 {
		t.Errorf("GET errors = %v, want []", graw["errors"])
	}

	// In the database: PENDING, no client-chosen state.
	var doc bson.M
	if err := s.db.Collection("tickets").FindOne(context.Background(), bson.M{"_id": tk.ID}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["status"] != "PENDING" || doc["whatever"] != nil || doc["idempotencyKey"] != nil || doc["batch"] != "" {
		t.Errorf("stored document %v", doc)
	}

	// The other spelling, and no traceparent from the caller: a new trace is recorded.
	r2 := s.do(req{method: "POST", path: base, body: map[string]any{
		"subject": "s", "content": "c", "recipientEmails": []string{"c@example.com"},
	}})
	wantStatus(t, r2, 201)
	tk2 := r2.ticket(t)
	if fmt.Sprint(tk2.RecipientEmails) != "[c@example.com]" {
		t.Errorf("recipientEmails spelling: %v", tk2.RecipientEmails)
	}
	if !regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`).MatchString(tk2.TraceParent) {
		t.Errorf("traceparent %q is not a W3C traceparent", tk2.TraceParent)
	}

	// The limits themselves are accepted.
	fifty := make([]string, 50)
	for i := range fifty {
		fifty[i] = fmt.Sprintf("u%d@example.com", i)
	}
	r3 := s.do(req{method: "POST", path: base, body: map[string]any{
		"subject": strings.Repeat("s", notification.MaxSubjectLen), "content": strings.Repeat("c", notification.MaxContentBytes),
		"recepientEmails": fifty, "requester": strings.Repeat("r", notification.MaxRequesterLen),
		"recipientEmails": fifty,
	}, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
	wantStatus(t, r3, 201)
	if n := len(r3.ticket(t).RecipientEmails); n != 50 {
		t.Errorf("%d recipients, want 50", n)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	ok := func(edit func(m map[string]any)) map[string]any {
		m := map[string]any{"subject": "Hello", "content": "Body", "recepientEmails": []string{"a@example.com"}}
		edit(m)
		return m
	}
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf("u%d@example.com", i)
	}
	cases := []struct {
		name   string
		body   any
		header map[string]string
		field  string // a key of the error's field map, or
		msg    string // a substring of the error string
	}{
		{"missing subject", ok(func(m map[string]any) { delete(m, "subject") }), nil, "subject", ""},
		{"empty subject", ok(func(m map[string]any) { m["subject"] = "  \t " }), nil, "subject", ""},
		{"null subject", ok(func(m map[string]any) { m["subject"] = nil }), nil, "subject", ""},
		{"subject too long", ok(func(m map[string]any) { m["subject"] = strings.Repeat("x", 999) }), nil, "subject", ""},
		{"subject on two lines", ok(func(m map[string]any) { m["subject"] = "a\nBcc: x@example.com" }), nil, "subject", ""},
		{"missing content", ok(func(m map[string]any) { delete(m, "content") }), nil, "content", ""},
		{"empty content", ok(func(m map[string]any) { m["content"] = " \n " }), nil, "content", ""},
		{"content too long", ok(func(m map[string]any) { m["content"] = strings.Repeat("c", notification.MaxContentBytes+1) }), nil, "content", ""},
		{"requester too long", ok(func(m map[string]any) { m["requester"] = strings.Repeat("r", 201) }), nil, "requester", ""},
		{"no recipients field", ok(func(m map[string]any) { delete(m, "recepientEmails") }), nil, "recepientEmails", ""},
		{"zero recipients", ok(func(m map[string]any) { m["recepientEmails"] = []string{} }), nil, "recepientEmails", ""},
		{"51 recipients", ok(func(m map[string]any) { m["recepientEmails"] = many }), nil, "recepientEmails", ""},
		{"bad address", ok(func(m map[string]any) { m["recepientEmails"] = []string{"a@example.com", "not-an-email"} }), nil, "recepientEmails", ""},
		{"display name", ok(func(m map[string]any) { m["recepientEmails"] = []string{"Ann <a@example.com>"} }), nil, "recepientEmails", ""},
		{"no dot in domain", ok(func(m map[string]any) { m["recepientEmails"] = []string{"root@localhost"} }), nil, "recepientEmails", ""},
		{"header injection", ok(func(m map[string]any) { m["recepientEmails"] = []string{"a@example.com\r\nBcc: b@example.com"} }), nil, "recepientEmails", ""},
		{"empty address", ok(func(m map[string]any) { m["recepientEmails"] = []string{""} }), nil, "recepientEmails", ""},
		{"null address", ok(func(m map[string]any) { m["recepientEmails"] = []any{nil} }), nil, "recepientEmails", ""},
		{"both spellings differ", ok(func(m map[string]any) { m["recipientEmails"] = []string{"b@example.com"} }), nil, "recipientEmails", ""},
		{"subject a number", ok(func(m map[string]any) { m["subject"] = 5 }), nil, "subject", ""},
		{"content an object", ok(func(m map[string]any) { m["content"] = map[string]any{"html": "x"} }), nil, "content", ""},
		{"recipients a string", ok(func(m map[string]any) { m["recepientEmails"] = "a@example.com" }), nil, "recepientEmails", ""},
		{"recipient a number", ok(func(m map[string]any) { m["recepientEmails"] = []any{42} }), nil, "recepientEmails", ""},
		{"requester a bool", ok(func(m map[string]any) { m["requester"] = true }), nil, "requester", ""},
		{"all missing", "{}", nil, "subject", ""},
		{"null body", "null", nil, "recepientEmails", ""},
		{"array body", "[]", nil, "", "JSON object"},
		{"string body", `"hello"`, nil, "", "JSON object"},
		{"malformed JSON", `{"subject": "x",`, nil, "", "malformed JSON"},
		{"not JSON", `subject=x&content=y`, nil, "", "malformed JSON"},
		{"two objects", `{"subject":"a"} {"subject":"b"}`, nil, "", "single JSON object"},
		{"empty body", "", nil, "", "empty"},
		{"blank body", "  \n ", nil, "", "empty"},
		{"text/plain", ok(func(map[string]any) {}), map[string]string{"Content-Type": "text/plain"}, "", "Content-Type"},
		{"form", ok(func(map[string]any) {}), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "", "Content-Type"},
		{"empty idempotency key", ok(func(map[string]any) {}), map[string]string{"Idempotency-Key": ""}, "Idempotency-Key", ""},
		{"long idempotency key", ok(func(map[string]any) {}), map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, "Idempotency-Key", ""},
		{"non-ASCII idempotency key", ok(func(map[string]any) {}), map[string]string{"Idempotency-Key": "clé"}, "Idempotency-Key", ""},
	}
	for _, c := range cases {
		r := s.do(req{method: "POST", path: base, body: c.body, header: c.header})
		if r.status != 400 {
			t.Errorf("%s: status %d, want 400: %s", c.name, r.status, r.raw)
			continue
		}
		if c.field != "" {
			if _, ok := r.fields()[c.field]; !ok {
				t.Errorf("%s: error %s lacks field %q", c.name, r.errorText(), c.field)
			}
			if r.env.Message != "validation failed" {
				t.Errorf("%s: message %q", c.name, r.env.Message)
			}
		}
		if c.msg != "" && !strings.Contains(r.errorText(), c.msg) {
			t.Errorf("%s: error %s does not mention %q", c.name, r.errorText(), c.msg)
		}
	}
	// Keys the Go client refuses to send.
	for _, key := range []string{"a\x01b", "a\x7fb", "tab\there"} {
		body := `{"subject":"s","content":"c","recepientEmails":["a@example.com"]}`
		resp := rawRequest(t, s, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
			base, s.token, key, len(body), body))
		r := checkEnvelope(t, "raw POST", resp)
		if r.status != 400 {
			t.Errorf("Idempotency-Key %q: %d, want 400: %s", key, r.status, r.raw)
		}
	}
	// An encoded body: 415, whatever it holds (TestCompressedBombsAre415 sends real bombs).
	for _, enc := range []string{"gzip", "br", "zstd", "identity, gzip"} {
		r := s.do(req{method: "POST", path: base, body: ok(func(map[string]any) {}), header: map[string]string{"Content-Encoding": enc}})
		if r.status != 415 || !strings.Contains(r.errorText(), "Content-Encoding") {
			t.Errorf("Content-Encoding %s: %d %s, want 415", enc, r.status, r.raw)
		}
	}
	if n := s.count(bson.M{}); n != 0 {
		t.Errorf("%d tickets stored from invalid requests", n)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.BodyLimit = 64 << 10 })
	big := fmt.Sprintf(`{"subject":"s","recepientEmails":["a@example.com"],"content":"%s"}`, strings.Repeat("x", 64<<10))
	r := s.do(req{method: "POST", path: base, body: big})
	wantStatus(t, r, 413)
	if !strings.Contains(r.errorText(), "too large") {
		t.Errorf("413 error %s", r.errorText())
	}
	// Announced, and only its start sent: answered from Content-Length, without waiting for
	// the rest.
	wantStatus(t, checkEnvelope(t, "POST announced", rawPost(t, s, len(big))), 413)
	if n := s.count(bson.M{}); n != 0 {
		t.Errorf("%d tickets stored", n)
	}
	// A body at the limit is fine.
	fit := fmt.Sprintf(`{"subject":"s","recepientEmails":["a@example.com"],"content":"%s"}`, strings.Repeat("x", 60<<10))
	wantStatus(t, s.do(req{method: "POST", path: base, body: fit}), 201)
}

// rawPost announces a body of n bytes and sends only its first 16 KiB (fasthttp reads the
// first 8 KiB of a body before any handler runs).
func rawPost(t *testing.T, s *service, n int) *http.Response {
	t.Helper()
	return rawRequest(t, s, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", base, s.token, n, strings.Repeat("x", 16<<10)))
}

// rawRequest writes an HTTP request as given and reads the response.
func rawRequest(t *testing.T, s *service, raw string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	body := map[string]any{"subject": "Receipt", "content": "Paid", "recepientEmails": []string{"a@example.com", "b@example.com"}}
	key := map[string]string{"Idempotency-Key": "payment-42-confirmation"}

	first := s.do(req{method: "POST", path: base, body: body, header: key})
	wantStatus(t, first, 201)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Error("first request marked as replayed")
	}
	second := s.do(req{method: "POST", path: base, body: body, header: key})
	wantStatus(t, second, 201)
	if second.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay without Idempotent-Replayed: true (headers %v)", second.header)
	}
	if a, b := first.ticket(t), second.ticket(t); a.ID != b.ID || !a.CreatedAt.Equal(b.CreatedAt) {
		t.Errorf("replay returned %s, first %s", b.ID.Hex(), a.ID.Hex())
	}
	// The same request normalised (recipients reordered, different case, padded subject).
	same := map[string]any{"subject": " Receipt ", "content": "Paid", "recepientEmails": []string{"B@example.com", "a@example.com"}}
	third := s.do(req{method: "POST", path: base, body: same, header: key})
	wantStatus(t, third, 201)
	if third.ticket(t).ID != first.ticket(t).ID {
		t.Error("the same request, normalised differently, made a second ticket")
	}
	// A different request with the same key.
	for _, diff := range []map[string]any{
		{"subject": "Receipt!", "content": "Paid", "recepientEmails": []string{"a@example.com", "b@example.com"}},
		{"subject": "Receipt", "content": "Paid.", "recepientEmails": []string{"a@example.com", "b@example.com"}},
		{"subject": "Receipt", "content": "Paid", "recepientEmails": []string{"a@example.com"}},
		{"subject": "Receipt", "content": "Paid", "recepientEmails": []string{"a@example.com", "b@example.com"}, "requester": "x"},
	} {
		r := s.do(req{method: "POST", path: base, body: diff, header: key})
		wantStatus(t, r, 422)
	}
	// An invalid request with a used key is still just invalid.
	wantStatus(t, s.do(req{method: "POST", path: base, body: "{}", header: key}), 400)
	// Other keys and no key make new tickets.
	wantStatus(t, s.do(req{method: "POST", path: base, body: body, header: map[string]string{"Idempotency-Key": "other key with spaces ~!"}}), 201)
	wantStatus(t, s.do(req{method: "POST", path: base, body: body}), 201)
	wantStatus(t, s.do(req{method: "POST", path: base, body: body}), 201)
	if n := s.count(bson.M{}); n != 4 {
		t.Errorf("%d tickets, want 4", n)
	}
	if n, err := s.db.Collection("ticket_idempotency").CountDocuments(context.Background(), bson.M{}); err != nil || n != 2 {
		t.Errorf("%d Idempotency-Key records, want 2 (%v)", n, err)
	}
	m := s.metrics()
	if v := metricValue(t, m, "cineflow_notification_tickets_created_total"); v != 4 {
		t.Errorf("cineflow_notification_tickets_created_total = %v, want 4 (replays are not creations)", v)
	}
}

func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	const n = 20
	body := newTicketBody(7)
	ids := make([]string, n)
	statuses := make([]int, n)
	replays := make([]bool, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := s.send(req{method: "POST", path: base, body: body, header: map[string]string{"Idempotency-Key": "race-1"}})
			if err != nil {
				t.Error(err)
				return
			}
			r := checkEnvelope(t, "POST", resp)
			statuses[i] = r.status
			replays[i] = r.header.Get("Idempotent-Replayed") == "true"
			if r.status == 201 {
				ids[i] = r.ticket(t).ID.Hex()
			}
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if statuses[i] != 201 {
			t.Errorf("request %d: status %d", i, statuses[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("request %d got ticket %s, request 0 got %s", i, ids[i], ids[0])
		}
		if !replays[i] {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d responses were not replays, want exactly 1", fresh)
	}
	if c := s.count(bson.M{}); c != 1 {
		t.Errorf("%d tickets in the database, want 1", c)
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	const total = 23
	var created []notification.Ticket
	for i := range total {
		created = append(created, s.create(i))
	}
	newestFirst := make([]string, total)
	for i, tk := range created {
		newestFirst[total-1-i] = tk.ID.Hex()
	}
	ids := func(ts []notification.Ticket) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.ID.Hex()
		}
		return out
	}

	// Default limit 20, newest first, more follow: a cursor and a Link to the next page.
	r := s.do(req{method: "GET", path: base})
	wantStatus(t, r, 200)
	page := r.tickets(t)
	if fmt.Sprint(ids(page)) != fmt.Sprint(newestFirst[:20]) {
		t.Errorf("default page = %v, want %v", ids(page), newestFirst[:20])
	}
	next := r.header.Get("X-Next-Cursor")
	if next == "" || r.header.Get("Link") != "<"+base+"?cursor="+url.QueryEscape(next)+`&limit=20>; rel="next"` {
		t.Errorf("X-Next-Cursor %q, Link %q", next, r.header.Get("Link"))
	}
	// Walk with the cursor: every ticket once, in order, no gaps.
	var walked []string
	cursor, pages := "", 0
	for {
		path := base + "?limit=5"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := s.do(req{method: "GET", path: path})
		wantStatus(t, r, 200)
		page := r.tickets(t)
		pages++
		walked = append(walked, ids(page)...)
		next := r.header.Get("X-Next-Cursor")
		if (next == "") != (len(walked) == total) {
			t.Fatalf("after %d of %d tickets: cursor %q", len(walked), total, next)
		}
		if next == "" || pages > 10 {
			break
		}
		cursor = next
	}
	if fmt.Sprint(walked) != fmt.Sprint(newestFirst) || pages != 5 {
		t.Errorf("walked %d pages: %v\nwant %v", pages, walked, newestFirst)
	}
	// Exactly the tickets there are: nothing follows, no cursor, no Link.
	r = s.do(req{method: "GET", path: base + "?limit=23"})
	if len(r.tickets(t)) != 23 || r.header.Get("X-Next-Cursor") != "" || r.header.Get("Link") != "" {
		t.Errorf("limit=23: %d tickets, cursor %q, Link %q", len(r.tickets(t)), r.header.Get("X-Next-Cursor"), r.header.Get("Link"))
	}
	// The cursor of earlier versions, a ticket id: the tickets older than it.
	r = s.do(req{method: "GET", path: base + "?limit=3&cursor=" + newestFirst[4]})
	if got := ids(r.tickets(t)); fmt.Sprint(got) != fmt.Sprint(newestFirst[5:8]) || r.header.Get("X-Next-Cursor") == "" {
		t.Errorf("older than %s: %v, want %v", newestFirst[4], got, newestFirst[5:8])
	}
	r = s.do(req{method: "GET", path: base + "?cursor=" + newestFirst[total-1]})
	wantStatus(t, r, 200)
	if string(r.env.Data) != "[]" || r.header.Get("X-Next-Cursor") != "" {
		t.Errorf("after the oldest: data %s, cursor %q", r.env.Data, r.header.Get("X-Next-Cursor"))
	}
	// Skip and limit.
	r = s.do(req{method: "GET", path: base + "?skip=5&limit=4"})
	if fmt.Sprint(ids(r.tickets(t))) != fmt.Sprint(newestFirst[5:9]) {
		t.Errorf("skip=5&limit=4: %v, want %v", ids(r.tickets(t)), newestFirst[5:9])
	}
	r = s.do(req{method: "GET", path: base + "?skip=100000"})
	wantStatus(t, r, 200)
	if string(r.env.Data) != "[]" {
		t.Errorf("skip past the end: %s", r.env.Data)
	}
	r = s.do(req{method: "GET", path: base + "?limit=100&skip=0"})
	if len(r.tickets(t)) != total {
		t.Errorf("limit=100: %d tickets", len(r.tickets(t)))
	}
	// Status filter (with cursor).
	failed := []notification.ID{created[3].ID, created[10].ID, created[17].ID}
	for _, id := range failed {
		s.setFailed(id, 1)
	}
	s.setStatus(created[5].ID, notification.StatusSuccess)
	r = s.do(req{method: "GET", path: base + "?status=FAILED&limit=2"})
	got := ids(r.tickets(t))
	if fmt.Sprint(got) != fmt.Sprint([]string{failed[2].Hex(), failed[1].Hex()}) {
		t.Errorf("FAILED page 1: %v", got)
	}
	r = s.do(req{method: "GET", path: base + "?status=failed&limit=2&cursor=" + r.header.Get("X-Next-Cursor")})
	if got := ids(r.tickets(t)); fmt.Sprint(got) != fmt.Sprint([]string{failed[0].Hex()}) {
		t.Errorf("FAILED page 2: %v", got)
	}
	r = s.do(req{method: "GET", path: base + "?status=SUCCESS"})
	if got := r.tickets(t); len(got) != 1 || got[0].Status != notification.StatusSuccess {
		t.Errorf("SUCCESS: %v", got)
	}
	r = s.do(req{method: "GET", path: base + "?status=PENDING&limit=100"})
	if got := r.tickets(t); len(got) != total-4 {
		t.Errorf("PENDING: %d tickets, want %d", len(got), total-4)
	}
	// Bad parameters.
	for _, q := range []struct{ query, field string }{
		{"status=SENT", "status"}, {"status=pending%00", "status"},
		{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=-1", "limit"}, {"limit=ten", "limit"}, {"limit=1.5", "limit"},
		{"skip=-1", "skip"}, {"skip=100001", "skip"}, {"skip=x", "skip"},
		{"cursor=xyz", "cursor"}, {"cursor=0123456789abcdef0123456", "cursor"}, {"cursor=0123456789abcdef012345678", "cursor"},
		{"cursor=zzzzzzzzzzzzzzzzzzzzzzzz", "cursor"},
	} {
		r := s.do(req{method: "GET", path: base + "?" + q.query})
		if r.status != 400 {
			t.Errorf("?%s: %d, want 400", q.query, r.status)
			continue
		}
		if _, ok := r.fields()[q.field]; !ok {
			t.Errorf("?%s: error %s lacks %q", q.query, r.errorText(), q.field)
		}
	}
}

// linkNext is the URL of a response's Link rel="next" ("" without one).
var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// A client that knows nothing but the Link header pages through every ticket once, newest
// first, with and without a status filter.
func TestListFollowsLinkHeaders(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	const total = 17
	var newestFirst []string
	for i := range total {
		newestFirst = append([]string{s.create(i).ID.Hex()}, newestFirst...)
	}
	walk := func(first string) (seen []string, pages int) {
		t.Helper()
		path := first
		for path != "" {
			if pages++; pages > 20 {
				t.Fatalf("paging from %s does not end", first)
			}
			r := s.do(req{method: "GET", path: path})
			wantStatus(t, r, 200)
			for _, tk := range r.tickets(t) {
				seen = append(seen, tk.ID.Hex())
			}
			link := r.header.Get("Link")
			path = ""
			if link != "" {
				m := linkNext.FindStringSubmatch(link)
				if m == nil || !strings.HasPrefix(m[1], base+"?") {
					t.Fatalf("Link %q", link)
				}
				path = m[1]
				if u, err := url.Parse(path); err != nil || u.Query().Get("cursor") != r.header.Get("X-Next-Cursor") {
					t.Errorf("Link %q does not carry X-Next-Cursor %q", link, r.header.Get("X-Next-Cursor"))
				}
			} else if r.header.Get("X-Next-Cursor") != "" {
				t.Errorf("X-Next-Cursor %q without a Link", r.header.Get("X-Next-Cursor"))
			}
		}
		return seen, pages
	}
	seen, pages := walk(base + "?limit=4")
	if fmt.Sprint(seen) != fmt.Sprint(newestFirst) || pages != 5 {
		t.Errorf("%d pages: %v\nwant %v", pages, seen, newestFirst)
	}
	// The sweeper delivers five (most recent delivery first in SUCCESS), fails two.
	for _, i := range []int{16, 3, 9, 0, 12} {
		s.decide(mustID(t, newestFirst[total-1-i]), notification.StatusSuccess)
	}
	for _, i := range []int{5, 6} {
		s.decide(mustID(t, newestFirst[total-1-i]), notification.StatusFailed)
	}
	byIndex := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, newestFirst[total-1-i])
		}
		return out
	}
	for status, want := range map[string][]string{
		"SUCCESS": byIndex(12, 0, 9, 3, 16),
		"failed":  byIndex(6, 5),
		"PENDING": byIndex(15, 14, 13, 11, 10, 8, 7, 4, 2, 1),
	} {
		seen, _ := walk(base + "?limit=3&status=" + status)
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("%s: %v\nwant %v", status, seen, want)
		}
	}
}

func mustID(t *testing.T, hex string) notification.ID {
	t.Helper()
	id, err := notification.ParseID(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGetTicketIDs(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	tk := s.create(1)
	wantStatus(t, s.do(req{method: "GET", path: base + "/" + tk.ID.Hex()}), 200)
	wantStatus(t, s.do(req{method: "GET", path: base + "/" + strings.ToUpper(tk.ID.Hex())}), 200)
	for _, id := range []string{"123", "not-an-id", "zzzzzzzzzzzzzzzzzzzzzzzz", tk.ID.Hex() + "0", "%20", "null"} {
		r := s.do(req{method: "GET", path: base + "/" + id})
		if r.status != 400 {
			t.Errorf("GET /%s: %d, want 400: %s", id, r.status, r.raw)
		}
	}
	r := s.do(req{method: "GET", path: base + "/" + notification.NewID().Hex()})
	wantStatus(t, r, 404)
	if !strings.Contains(r.errorText(), "not found") {
		t.Errorf("404 error %s", r.errorText())
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	tk := s.create(1)
	path := base + "/" + tk.ID.Hex() + "/retry"

	r := s.do(req{method: "POST", path: path})
	wantStatus(t, r, 409)
	if !strings.Contains(string(r.raw), `"code":"not_failed"`) {
		t.Errorf("retry of a PENDING ticket: want code not_failed: %s", r.raw)
	}

	s.setFailed(tk.ID, 3)
	r = s.do(req{method: "POST", path: path})
	wantStatus(t, r, 200)
	got := r.ticket(t)
	if got.Status != notification.StatusPending || got.Generation != 1 || len(got.Errors) != 3 ||
		got.Attempts != 3 || got.LastError != "mailbox unavailable" {
		t.Errorf("re-queued ticket %+v", got)
	}
	if got.NextAttemptAt.Before(tk.NextAttemptAt) || got.UpdatedAt.Before(tk.UpdatedAt) {
		t.Errorf("nextAttemptAt/updatedAt not advanced: %+v", got)
	}
	// Now PENDING again: another retry conflicts.
	wantStatus(t, s.do(req{method: "POST", path: path}), 409)
	g := s.do(req{method: "GET", path: base + "/" + tk.ID.Hex()}).ticket(t)
	if g.Status != notification.StatusPending || g.Generation != 1 || len(g.Errors) != 3 {
		t.Errorf("stored after retry: %+v", g)
	}
	// It fails again: a second re-queue is a new generation.
	s.setFailed(tk.ID, 4)
	r = s.do(req{method: "POST", path: path})
	wantStatus(t, r, 200)
	if got := r.ticket(t); got.Generation != 2 || got.Status != notification.StatusPending {
		t.Errorf("second re-queue: %+v", got)
	}
	// SUCCESS cannot be re-queued.
	s.setStatus(tk.ID, notification.StatusSuccess)
	wantStatus(t, s.do(req{method: "POST", path: path}), 409)

	wantStatus(t, s.do(req{method: "POST", path: base + "/nope/retry"}), 400)
	wantStatus(t, s.do(req{method: "POST", path: base + "/" + notification.NewID().Hex() + "/retry"}), 404)
	wantStatus(t, s.do(req{method: "GET", path: path}), 405)
}

func TestRetryConcurrent(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	for round := range 3 {
		tk := s.create(round)
		s.setFailed(tk.ID, 2)
		path := base + "/" + tk.ID.Hex() + "/retry"
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		start := make(chan struct{})
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := s.send(req{method: "POST", path: path})
				if err != nil {
					t.Error(err)
					return
				}
				statuses[i] = checkEnvelope(t, "retry", resp).status
			}()
		}
		close(start)
		wg.Wait()
		if !(statuses[0] == 200 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 200) {
			t.Errorf("round %d: statuses %v, want one 200 and one 409", round, statuses)
		}
		g := s.do(req{method: "GET", path: base + "/" + tk.ID.Hex()}).ticket(t)
		if g.Generation != 1 || g.Status != notification.StatusPending || len(g.Errors) != 2 {
			t.Errorf("round %d: ticket %+v", round, g)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	var ids []notification.ID
	for i := range 6 {
		ids = append(ids, s.create(i).ID)
	}
	s.setFailed(ids[1], 1)
	s.setStatus(ids[2], notification.StatusSuccess)
	s.setStatus(ids[3], notification.StatusSuccess)
	s.setStatus(ids[4], notification.StatusSuccess)
	// The oldest pending ticket has waited an hour.
	if _, err := s.db.Collection(mongostore.QueueShardCollection(notification.QueueShard(ids[0]))).UpdateOne(context.Background(), bson.M{"_id": ids[0].Hex() + ":0"},
		bson.M{"$set": bson.M{"queuedAt": time.Now().UTC().Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	m := s.metrics()
	for name, want := range map[string]float64{
		`cineflow_notification_tickets{status="PENDING"}`:                                                               2,
		`cineflow_notification_tickets{status="SUCCESS"}`:                                                               3,
		`cineflow_notification_tickets{status="FAILED"}`:                                                                1,
		"cineflow_notification_tickets_delivered_total":                                                                 3,
		"cineflow_notification_tickets_created_total":                                                                   6,
		"cineflow_notification_ticket_stats_up":                                                                         1,
		`cineflow_notification_http_requests_total{code="201",method="POST",route="/notiservice/api/v1/notifications"}`: 6,
	} {
		if got := metricValue(t, m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if age := metricValue(t, m, "cineflow_notification_oldest_pending_age_seconds"); age < 3599 || age > 3700 {
		t.Errorf("cineflow_notification_oldest_pending_age_seconds = %v, want about 3600", age)
	}
	for _, want := range []string{"# TYPE cineflow_notification_tickets gauge", "# TYPE cineflow_notification_tickets_delivered_total counter",
		"# TYPE cineflow_notification_oldest_pending_age_seconds gauge", "# TYPE cineflow_notification_tickets_created_total counter",
		"cineflow_notification_http_request_duration_seconds_bucket", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(m, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(m, ids[0].Hex()) {
		t.Error("a ticket id appears in a metric label")
	}
}

func TestMetricsEmptyDatabase(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.MetricsStatsTTL = time.Minute })
	m := s.metrics()
	for _, name := range []string{`cineflow_notification_tickets{status="PENDING"}`, `cineflow_notification_tickets{status="SUCCESS"}`,
		`cineflow_notification_tickets{status="FAILED"}`, "cineflow_notification_tickets_delivered_total",
		"cineflow_notification_oldest_pending_age_seconds", "cineflow_notification_tickets_created_total"} {
		if got := metricValue(t, m, name); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	// The figures are cached: a ticket created now shows in the next window, not this one.
	s.create(1)
	m = s.metrics()
	if got := metricValue(t, m, `cineflow_notification_tickets{status="PENDING"}`); got != 0 {
		t.Errorf("PENDING = %v within the cache window, want the cached 0", got)
	}
	if got := metricValue(t, m, "cineflow_notification_tickets_created_total"); got != 1 {
		t.Errorf("created_total = %v, want 1 (a live counter)", got)
	}
}

func TestEnvelopeOnUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	tk := s.create(1)
	for _, c := range []struct {
		r      req
		status int
	}{
		{req{method: "GET", path: "/nope", noAuth: true}, 404},
		{req{method: "GET", path: "/", noAuth: true}, 404},
		{req{method: "GET", path: "/notiservice/api/v1/other"}, 404},
		{req{method: "GET", path: base + "/" + tk.ID.Hex() + "/history"}, 404},
		{req{method: "POST", path: base + "/" + tk.ID.Hex() + "/retry/now"}, 404},
		{req{method: "DELETE", path: base + "/" + tk.ID.Hex()}, 405},
		{req{method: "PUT", path: base + "/" + tk.ID.Hex(), body: "{}"}, 405},
		{req{method: "PATCH", path: base, body: "{}"}, 405},
		{req{method: "DELETE", path: base}, 405},
		{req{method: "POST", path: "/healthz", noAuth: true}, 405},
		{req{method: "PUT", path: "/readyz", noAuth: true}, 405},
		// Unknown paths under the API still need the token (nothing leaks without it).
		{req{method: "GET", path: base + "/" + tk.ID.Hex() + "/history", noAuth: true}, 401},
	} {
		got := s.do(c.r)
		if got.status != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.r.method, c.r.path, got.status, c.status, got.raw)
		}
	}
}

func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	r := s.do(req{method: "POST", path: base, body: newTicketBody(1),
		header: map[string]string{"Idempotency-Key": strings.Repeat("k", 8000)}})
	wantStatus(t, r, 431)
	if n := s.count(bson.M{}); n != 0 {
		t.Errorf("%d tickets stored", n)
	}
}

func TestReadinessDuringShutdown(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.ShutdownDelay = 2 * time.Second })
	wantStatus(t, s.do(req{method: "GET", path: "/readyz", noAuth: true}), 200)
	closed := make(chan error, 1)
	go func() { closed <- s.m.Close() }()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for {
		r := s.do(req{method: "GET", path: "/readyz", noAuth: true})
		if r.status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not fail during the shutdown delay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Still serving requests while load balancers catch up.
	wantStatus(t, s.do(req{method: "POST", path: base, body: newTicketBody(1)}), 201)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.send(req{method: "GET", path: "/healthz"}); err == nil {
		t.Error("still serving after Close")
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	var (
		mu      sync.Mutex
		created []notification.ID
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := s.send(req{method: "POST", path: base, body: newTicketBody(w*1000 + i)})
				if err != nil {
					return // the server has stopped accepting
				}
				r := checkEnvelope(t, "POST during shutdown", resp)
				if r.status != 201 {
					t.Errorf("status %d during shutdown: %s", r.status, r.raw)
					return
				}
				mu.Lock()
				created = append(created, r.ticket(t).ID)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := s.m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
	if len(created) == 0 {
		t.Fatal("no request succeeded before the shutdown")
	}
	// Every answered create is in the database (reopen: Close disconnected Main's client).
	cl := connect(t, s.m.Config.DBURL)
	db := cl.Database(s.db.Name())
	for _, id := range created {
		if n, err := db.Collection("tickets").CountDocuments(context.Background(), bson.M{"_id": id}); err != nil || n != 1 {
			t.Fatalf("ticket %s answered 201 but is not stored (%v)", id.Hex(), err)
		}
	}
}

// idemRecord is the Idempotency-Key record a create writes before storing its ticket.
func idemRecord(key string, ticket notification.ID, at time.Time) bson.M {
	sum := sha256.Sum256([]byte(key))
	return bson.M{"_id": hex.EncodeToString(sum[:]) + ":0", "ticket": ticket, "requestHash": "", "createdAt": at}
}

// A key whose first request is still storing its ticket is answered 409 with Retry-After;
// once that request is past its lease (its process died), a retry takes the key over and
// creates the ticket, and the key then replays it.
func TestIdempotencyClaimInProgressThenTakenOver(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	ctx := context.Background()
	body := newTicketBody(9)
	key := map[string]string{"Idempotency-Key": "booking-paid:dead-process"}
	// The request hash of this body, as the first request would have recorded it.
	r := s.do(req{method: "POST", path: base, body: body, header: map[string]string{"Idempotency-Key": "probe"}})
	wantStatus(t, r, 201)
	var probe struct {
		Hash string `bson:"requestHash"`
	}
	sum := sha256.Sum256([]byte("probe"))
	if err := s.db.Collection("ticket_idempotency").FindOne(ctx, bson.M{"_id": hex.EncodeToString(sum[:]) + ":0"}).Decode(&probe); err != nil {
		t.Fatal(err)
	}
	rec := idemRecord(key["Idempotency-Key"], notification.NewID(), time.Now().UTC())
	rec["requestHash"] = probe.Hash
	if _, err := s.db.Collection("ticket_idempotency").InsertOne(ctx, rec); err != nil {
		t.Fatal(err)
	}
	r = s.do(req{method: "POST", path: base, body: body, header: key})
	wantStatus(t, r, 409)
	if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.raw), `"code":"key_in_progress"`) {
		t.Errorf("409 in progress without Retry-After or code key_in_progress: %v %s", r.header, r.raw)
	}
	if _, err := s.db.Collection("ticket_idempotency").UpdateOne(ctx, bson.M{"_id": rec["_id"]},
		bson.M{"$set": bson.M{"createdAt": time.Now().UTC().Add(-2 * time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	first := s.do(req{method: "POST", path: base, body: body, header: key})
	wantStatus(t, first, 201)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Error("the take-over was marked as a replay")
	}
	again := s.do(req{method: "POST", path: base, body: body, header: key})
	wantStatus(t, again, 201)
	if again.header.Get("Idempotent-Replayed") != "true" || again.ticket(t).ID != first.ticket(t).ID {
		t.Errorf("after the take-over the key does not replay its ticket")
	}
}

// Without TTL indexes (the embedded database) the service removes Idempotency-Key records
// older than 24 hours by itself, and keeps younger ones.
func TestExpiredIdempotencyKeysAreCleanedUp(t *testing.T) {
	t.Parallel()
	s := startService(t, func(c *Config) { c.IdempotencyCleanup = 50 * time.Millisecond })
	if s.m.Store.IdempotencyTTL() {
		t.Skip("the database expires the records itself (TTL index)")
	}
	ctx := context.Background()
	idem := s.db.Collection("ticket_idempotency")
	old := idemRecord("expired", notification.NewID(), time.Now().UTC().Add(-25*time.Hour))
	young := idemRecord("young", notification.NewID(), time.Now().UTC().Add(-23*time.Hour))
	for _, r := range []bson.M{old, young} {
		if _, err := idem.InsertOne(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := idem.CountDocuments(ctx, bson.M{"_id": old["_id"]})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired record is still there after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := idem.CountDocuments(ctx, bson.M{"_id": young["_id"]}); n != 1 {
		t.Fatal("a record younger than 24 hours was removed")
	}
}
