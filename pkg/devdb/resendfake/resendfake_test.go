package resendfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resend/resend-go/v2"

	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
)

const apiKey = "re_test_123"

func newFake(t *testing.T, opts resendfake.Options) (*resendfake.Server, *httptest.Server) {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = apiKey
	}
	fake := resendfake.New(opts)
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, ts
}

func newClient(t *testing.T, ts *httptest.Server, key string) *resend.Client {
	t.Helper()
	c := resend.NewCustomClient(&http.Client{Timeout: 5 * time.Second}, key)
	u, err := url.Parse(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL = u
	return c
}

func email(ticket, to string) *resend.SendEmailRequest {
	return &resend.SendEmailRequest{
		From:    "Cineflow <tickets@cineflow.test>",
		To:      []string{to},
		Subject: "Your ticket " + ticket,
		Text:    "Hello, here is ticket " + ticket,
		Tags:    []resend.Tag{{Name: "ticket_id", Value: ticket}},
		Headers: map[string]string{"X-Entity-Ref-ID": ticket},
	}
}

// post sends a raw request, for what resend-go hides (status codes, headers).
func post(t *testing.T, ts *httptest.Server, path, key string, body any, headers map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("bad JSON %q: %v", raw, err)
		}
	}
	return resp.StatusCode, resp.Header, m
}

func TestSingle(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	resp, err := c.Emails.SendWithOptions(context.Background(), email("t1", "ann@example.com"),
		&resend.SendEmailOptions{IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Id) != 36 {
		t.Fatalf("id %q is not uuid-like", resp.Id)
	}
	ds := fake.Deliveries()
	if len(ds) != 1 {
		t.Fatalf("deliveries = %d", len(ds))
	}
	d := ds[0]
	if d.ID != resp.Id || d.TicketID != "t1" || d.IdempotencyKey != "k1" || d.Subject != "Your ticket t1" ||
		d.Text != "Hello, here is ticket t1" || d.To[0] != "ann@example.com" || d.Headers["X-Entity-Ref-ID"] != "t1" || d.At.IsZero() {
		t.Fatalf("delivery = %+v", d)
	}
	if n := fake.DeliveredCount("t1"); n != 1 {
		t.Fatalf("DeliveredCount = %d", n)
	}
	if in := fake.Inbox("ANN@example.com"); len(in) != 1 {
		t.Fatalf("inbox = %v", in)
	}
	if fake.Requests() != 1 {
		t.Fatalf("requests = %d", fake.Requests())
	}
}

func TestAuth(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	status, _, body := post(t, ts, "/emails", "", email("t1", "a@example.com"), nil)
	if status != 401 || body["name"] != "missing_api_key" || body["statusCode"] != 401.0 {
		t.Fatalf("missing key: %d %v", status, body)
	}
	status, _, body = post(t, ts, "/emails", "wrong", email("t1", "a@example.com"), nil)
	if status != 403 || body["name"] != "invalid_api_key" {
		t.Fatalf("wrong key: %d %v", status, body)
	}
	if _, err := newClient(t, ts, "wrong").Emails.Send(email("t1", "a@example.com")); err == nil {
		t.Fatal("resend-go: want error for a wrong key")
	}
	if len(fake.Deliveries()) != 0 {
		t.Fatal("delivered without auth")
	}
}

func TestValidation(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{Reject: []string{"Bounce@Example.com"}})
	cases := map[string]*resend.SendEmailRequest{
		"no from":    {To: []string{"a@example.com"}, Subject: "s"},
		"no to":      {From: "f@example.com", Subject: "s"},
		"no subject": {From: "f@example.com", To: []string{"a@example.com"}},
		"bad to":     {From: "f@example.com", To: []string{"not-an-email"}, Subject: "s"},
		"rejected":   {From: "f@example.com", To: []string{"bounce@example.com"}, Subject: "s"},
		"51 to":      {From: "f@example.com", To: strings.Split(strings.Repeat("a@example.com,", 51), ",")[:51], Subject: "s"},
	}
	for name, e := range cases {
		status, h, body := post(t, ts, "/emails", apiKey, e, map[string]string{"Idempotency-Key": "v-" + name})
		if status != 422 || body["name"] != "validation_error" || body["message"] == "" || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	// A 4xx does not store the key: fixing the email and reusing the key works.
	c := newClient(t, ts, apiKey)
	if _, err := c.Emails.SendWithOptions(context.Background(), email("t1", "ok@example.com"),
		&resend.SendEmailOptions{IdempotencyKey: "v-rejected"}); err != nil {
		t.Fatalf("key of a refused request was stored: %v", err)
	}
	if len(fake.Deliveries()) != 1 {
		t.Fatalf("deliveries = %d", len(fake.Deliveries()))
	}
}

func TestBatchStrict(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{Reject: []string{"bounce@example.com"}})
	c := newClient(t, ts, apiKey)
	ctx := context.Background()

	resp, err := c.Batch.SendWithOptions(ctx, []*resend.SendEmailRequest{
		email("t1", "a@example.com"), email("t2", "b@example.com"), email("t3", "c@example.com"),
	}, &resend.BatchSendEmailOptions{IdempotencyKey: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 3 || len(resp.Errors) != 0 {
		t.Fatalf("resp = %+v", resp)
	}
	for i, d := range fake.Deliveries() {
		if d.ID != resp.Data[i].Id || !d.Batch || d.TicketID != fmt.Sprintf("t%d", i+1) {
			t.Fatalf("delivery %d = %+v", i, d)
		}
	}

	// One invalid email refuses the whole batch.
	status, _, body := post(t, ts, "/emails/batch", apiKey, []*resend.SendEmailRequest{
		email("t4", "d@example.com"), email("t5", "bounce@example.com"),
	}, nil)
	if status != 422 || body["name"] != "validation_error" || !strings.Contains(body["message"].(string), "emails[1]") {
		t.Fatalf("strict batch: %d %v", status, body)
	}
	if _, err := c.Batch.SendWithOptions(ctx, []*resend.SendEmailRequest{email("t4", "d@example.com"), email("t5", "bounce@example.com")},
		&resend.BatchSendEmailOptions{BatchValidation: resend.BatchValidationStrict}); err == nil {
		t.Fatal("want error")
	}
	if fake.DeliveredCount("t4") != 0 || len(fake.Deliveries()) != 3 {
		t.Fatalf("strict batch delivered: %v", fake.Deliveries())
	}

	// Too many emails.
	var many []*resend.SendEmailRequest
	for i := range 101 {
		many = append(many, email(fmt.Sprint(i), "a@example.com"))
	}
	if status, _, _ := post(t, ts, "/emails/batch", apiKey, many, nil); status != 422 {
		t.Fatalf("101 emails: %d", status)
	}
}

func TestBatchPermissive(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{Reject: []string{"bounce@example.com"}})
	c := newClient(t, ts, apiKey)
	resp, err := c.Batch.SendWithOptions(context.Background(), []*resend.SendEmailRequest{
		email("t1", "a@example.com"), email("t2", "BOUNCE@example.com"), email("t3", "c@example.com"),
		{From: "f@example.com", To: []string{"d@example.com"}}, // no subject
	}, &resend.BatchSendEmailOptions{IdempotencyKey: "p1", BatchValidation: resend.BatchValidationPermissive})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Errors) != 2 || resp.Errors[0].Index != 1 || resp.Errors[1].Index != 3 ||
		!strings.Contains(resp.Errors[0].Message, "bounce@example.com") {
		t.Fatalf("resp = %+v", resp)
	}
	ds := fake.Deliveries()
	if len(ds) != 2 || ds[0].TicketID != "t1" || ds[1].TicketID != "t3" || ds[0].ID != resp.Data[0].Id || ds[1].ID != resp.Data[1].Id {
		t.Fatalf("deliveries = %+v", ds)
	}
	// Replay: same errors and ids, nothing new delivered.
	again, err := c.Batch.SendWithOptions(context.Background(), []*resend.SendEmailRequest{
		email("t1", "a@example.com"), email("t2", "BOUNCE@example.com"), email("t3", "c@example.com"),
		{From: "f@example.com", To: []string{"d@example.com"}},
	}, &resend.BatchSendEmailOptions{IdempotencyKey: "p1", BatchValidation: resend.BatchValidationPermissive})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(resp) || len(fake.Deliveries()) != 2 {
		t.Fatalf("replay = %+v, deliveries %d", again, len(fake.Deliveries()))
	}
}

func TestIdempotentReplay(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	ctx := context.Background()
	opts := &resend.SendEmailOptions{IdempotencyKey: "same"}
	first, err := c.Emails.SendWithOptions(ctx, email("t1", "a@example.com"), opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := c.Emails.SendWithOptions(ctx, email("t1", "a@example.com"), opts)
		if err != nil {
			t.Fatal(err)
		}
		if again.Id != first.Id {
			t.Fatalf("replay id %q != %q", again.Id, first.Id)
		}
	}
	if fake.DeliveredCount("t1") != 1 || len(fake.Duplicates()) != 0 {
		t.Fatalf("delivered %d, duplicates %v", fake.DeliveredCount("t1"), fake.Duplicates())
	}
	// Without a key every request delivers.
	for range 2 {
		if _, err := c.Emails.Send(email("t2", "a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if d := fake.Duplicates(); d["t2"] != 2 || len(d) != 1 {
		t.Fatalf("duplicates = %v", d)
	}
	if st := fake.Stats(); st.Replayed != 3 || st.Deliveries != 3 {
		t.Fatalf("stats = %+v", st)
	}
	fake.Reset()
	if len(fake.Deliveries()) != 0 || fake.Requests() != 0 {
		t.Fatal("reset kept state")
	}
	// Reset forgets keys.
	if _, err := c.Emails.SendWithOptions(ctx, email("t1", "a@example.com"), opts); err != nil || fake.DeliveredCount("t1") != 1 {
		t.Fatalf("after reset: %v, %d", err, fake.DeliveredCount("t1"))
	}
}

func TestKeyReusedWithAnotherBody(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	if _, err := c.Emails.SendWithOptions(context.Background(), email("t1", "a@example.com"),
		&resend.SendEmailOptions{IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	status, _, body := post(t, ts, "/emails", apiKey, email("t2", "a@example.com"), map[string]string{"Idempotency-Key": "k"})
	if status != 409 || body["name"] != "invalid_idempotent_request" {
		t.Fatalf("%d %v", status, body)
	}
	_, err := c.Emails.SendWithOptions(context.Background(), email("t2", "a@example.com"), &resend.SendEmailOptions{IdempotencyKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "different request payload") {
		t.Fatalf("resend-go err = %v", err)
	}
	if len(fake.Deliveries()) != 1 {
		t.Fatalf("deliveries = %d", len(fake.Deliveries()))
	}
}

func TestConcurrentInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	fake, ts := newFake(t, resendfake.Options{Hook: func(r *http.Request, emails []resendfake.Email) (int, bool) {
		if emails[0].Tag("ticket_id") == "slow" {
			once.Do(func() { close(entered); <-release })
		}
		return 0, false
	}})
	c := newClient(t, ts, apiKey)
	ctx := context.Background()
	opts := &resend.SendEmailOptions{IdempotencyKey: "inflight"}

	type result struct {
		resp *resend.SendEmailResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Emails.SendWithOptions(ctx, email("slow", "a@example.com"), opts)
		done <- result{resp, err}
	}()
	<-entered
	status, _, body := post(t, ts, "/emails", apiKey, email("slow", "a@example.com"), map[string]string{"Idempotency-Key": "inflight"})
	if status != 409 || body["name"] != "concurrent_idempotent_requests" {
		t.Fatalf("same body: %d %v", status, body)
	}
	status, _, body = post(t, ts, "/emails", apiKey, email("other", "a@example.com"), map[string]string{"Idempotency-Key": "inflight"})
	if status != 409 || body["name"] != "invalid_idempotent_request" {
		t.Fatalf("other body: %d %v", status, body)
	}
	releaseOnce.Do(func() { close(release) })
	first := <-done
	if first.err != nil {
		t.Fatal(first.err)
	}
	again, err := c.Emails.SendWithOptions(ctx, email("slow", "a@example.com"), opts)
	if err != nil || again.Id != first.resp.Id {
		t.Fatalf("replay: %v %v", again, err)
	}
	if fake.DeliveredCount("slow") != 1 || fake.Stats().Conflicts != 2 {
		t.Fatalf("delivered %d, stats %+v", fake.DeliveredCount("slow"), fake.Stats())
	}
}

func TestHookHandled(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	fake.SetHook(func(r *http.Request, emails []resendfake.Email) (int, bool) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Contains(b, []byte("hooked")) {
			return 0, false
		}
		return http.StatusForbidden, true
	})
	status, _, body := post(t, ts, "/emails", apiKey, email("hooked", "a@example.com"), map[string]string{"Idempotency-Key": "h"})
	if status != 403 || body["name"] == "" {
		t.Fatalf("%d %v", status, body)
	}
	fake.SetHook(nil)
	// The key was not stored.
	if status, _, _ := post(t, ts, "/emails", apiKey, email("hooked", "a@example.com"), map[string]string{"Idempotency-Key": "h"}); status != 200 {
		t.Fatalf("after hook: %d", status)
	}
	if fake.DeliveredCount("hooked") != 1 {
		t.Fatal("want one delivery")
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fake, ts := newFake(t, resendfake.Options{RateLimit: 2, Now: clock})
	c := newClient(t, ts, apiKey)
	for i := range 2 {
		if _, err := c.Emails.SendWithOptions(context.Background(), email(fmt.Sprint(i), "a@example.com"),
			&resend.SendEmailOptions{IdempotencyKey: fmt.Sprint("rl", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Emails.SendWithOptions(context.Background(), email("x", "a@example.com"), &resend.SendEmailOptions{IdempotencyKey: "rlx"})
	var rl *resend.RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, resend.ErrRateLimit) {
		t.Fatalf("err = %v", err)
	}
	if rl.RetryAfter != "1" || rl.Limit != "2" || rl.Remaining != "0" || rl.Reset != "1" || !strings.Contains(rl.Message, "2 requests per second") {
		t.Fatalf("rate limit error = %+v", rl)
	}
	status, h, body := post(t, ts, "/emails", apiKey, email("x", "a@example.com"), nil)
	if status != 429 || body["name"] != "rate_limit_exceeded" || h.Get("Retry-After") != "1" {
		t.Fatalf("%d %v %v", status, h, body)
	}
	if fake.RateLimited() != 2 || fake.DeliveredCount("x") != 0 {
		t.Fatalf("rate limited %d, delivered %d", fake.RateLimited(), fake.DeliveredCount("x"))
	}
	// The 429 did not store the key; the next window admits it.
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if _, err := c.Emails.SendWithOptions(context.Background(), email("x", "a@example.com"), &resend.SendEmailOptions{IdempotencyKey: "rlx"}); err != nil {
		t.Fatal(err)
	}
	if fake.DeliveredCount("x") != 1 {
		t.Fatal("want one delivery")
	}
}

func TestRateLimitRealClock(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{RateLimit: 1})
	statuses := map[int]int{}
	var retry string
	for i := range 3 {
		status, h, _ := post(t, ts, "/emails", apiKey, email(fmt.Sprint(i), "a@example.com"), nil)
		statuses[status]++
		if status == 429 {
			retry = h.Get("retry-after")
		}
	}
	if statuses[429] < 1 || retry == "" || retry == "0" || fake.RateLimited() != statuses[429] {
		t.Fatalf("statuses %v retry-after %q", statuses, retry)
	}
}

func TestFailBefore(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	fake.FailNext(2)
	opts := &resend.SendEmailOptions{IdempotencyKey: "fb"}
	for range 2 {
		if _, err := c.Emails.SendWithOptions(context.Background(), email("t1", "a@example.com"), opts); err == nil {
			t.Fatal("want injected 500")
		}
	}
	if len(fake.Deliveries()) != 0 {
		t.Fatal("delivered despite failure before processing")
	}
	if _, err := c.Emails.SendWithOptions(context.Background(), email("t1", "a@example.com"), opts); err != nil {
		t.Fatal(err)
	}
	if fake.DeliveredCount("t1") != 1 || fake.Stats().FailedBefore != 2 {
		t.Fatalf("stats %+v", fake.Stats())
	}
}

func TestLostResponseThenReplay(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	fake.LoseNext(1)
	opts := &resend.BatchSendEmailOptions{IdempotencyKey: "lost", BatchValidation: resend.BatchValidationPermissive}
	batch := []*resend.SendEmailRequest{email("t1", "a@example.com"), email("t2", "b@example.com")}
	if _, err := c.Batch.SendWithOptions(context.Background(), batch, opts); err == nil {
		t.Fatal("want injected 500")
	}
	if len(fake.Deliveries()) != 2 {
		t.Fatal("a lost response must still deliver")
	}
	resp, err := c.Batch.SendWithOptions(context.Background(), batch, opts)
	if err != nil {
		t.Fatal(err)
	}
	ds := fake.Deliveries()
	if len(ds) != 2 || resp.Data[0].Id != ds[0].ID || resp.Data[1].Id != ds[1].ID {
		t.Fatalf("replay %+v, deliveries %+v", resp, ds)
	}
	if fake.DeliveredCount("t1") != 1 || fake.DeliveredCount("t2") != 1 || len(fake.Duplicates()) != 0 {
		t.Fatal("delivered more than once")
	}
}

func TestDelayClientTimeout(t *testing.T) {
	fake, ts := newFake(t, resendfake.Options{})
	c := newClient(t, ts, apiKey)
	fake.DelayNext(1, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	opts := &resend.SendEmailOptions{IdempotencyKey: "slow"}
	if _, err := c.Emails.SendWithOptions(ctx, email("t1", "a@example.com"), opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if fake.DeliveredCount("t1") != 1 {
		t.Fatal("the email is delivered before the delay")
	}
	start := time.Now()
	resp, err := c.Emails.SendWithOptions(context.Background(), email("t1", "a@example.com"), opts)
	if err != nil || resp.Id != fake.Deliveries()[0].ID || time.Since(start) > time.Second {
		t.Fatalf("replay: %v %v after %v", resp, err, time.Since(start))
	}
	if fake.DeliveredCount("t1") != 1 {
		t.Fatal("delivered twice")
	}
}

func TestFaultRatesRepeatable(t *testing.T) {
	run := func() []int {
		fake, ts := newFake(t, resendfake.Options{Seed: 42, Faults: resendfake.Faults{FailRate: 0.3, LoseRate: 0.3}})
		_ = fake
		var out []int
		for i := range 30 {
			status, _, _ := post(t, ts, "/emails", apiKey, email(fmt.Sprint(i), "a@example.com"), nil)
			out = append(out, status)
		}
		return out
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("not repeatable:\n%v\n%v", a, b)
	}
	n500 := strings.Count(fmt.Sprint(a), "500")
	if n500 == 0 || n500 == 30 {
		t.Fatalf("statuses %v", a)
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	_, ts := newFake(t, resendfake.Options{})
	if status, _, body := post(t, ts, "/domains", apiKey, map[string]any{}, nil); status != 404 || body["name"] != "not_found" {
		t.Fatalf("%d %v", status, body)
	}
	resp, err := http.Get(ts.URL + "/emails")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET /emails: %d", resp.StatusCode)
	}
}
