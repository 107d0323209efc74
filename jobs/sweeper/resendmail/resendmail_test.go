package resendmail_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/resendmail"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
)

const apiKey = "re_secret_KEY_42"

// keyCheck collects every error string so that the test can assert the key never leaks.
type keyCheck struct {
	mu   sync.Mutex
	errs []string
}

func (k *keyCheck) add(err error) {
	if err == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.errs = append(k.errs, err.Error())
	var se *sweeper.SendError
	if errors.As(err, &se) {
		k.errs = append(k.errs, se.Message, se.Name)
	}
}

var leaks keyCheck

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range leaks.errs {
		if strings.Contains(s, apiKey) {
			fmt.Printf("FAIL: API key leaked into an error: %q\n", s)
			code = 1
		}
	}
	if code == 0 {
		fmt.Printf("API key absent from %d error strings\n", len(leaks.errs))
	}
	os.Exit(code)
}

func setup(t *testing.T, opts resendfake.Options, timeout time.Duration) (*resendfake.Server, *httptest.Server, *resendmail.Mailer) {
	t.Helper()
	opts.APIKey = apiKey
	fake := resendfake.New(opts)
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, ts, resendmail.New(apiKey, ts.URL, timeout, nil)
}

func mail(ticket, to string) sweeper.Email {
	return sweeper.Email{
		TicketID: ticket,
		From:     "Cineflow <tickets@cineflow.test>",
		To:       []string{to},
		Subject:  "Your ticket " + ticket,
		Text:     "Enjoy the film, ticket " + ticket,
	}
}

func send(m *resendmail.Mailer, key string, emails ...sweeper.Email) ([]sweeper.Outcome, *sweeper.SendError, error) {
	out, err := m.Send(context.Background(), key, emails)
	leaks.add(err)
	if err == nil {
		return out, nil, nil
	}
	var se *sweeper.SendError
	if !errors.As(err, &se) {
		return nil, nil, err
	}
	return out, se, err
}

func wantKind(t *testing.T, se *sweeper.SendError, err error, kind sweeper.ErrorKind, status int, name string) {
	t.Helper()
	if se == nil {
		t.Fatalf("want %v error, got %v", kind, err)
	}
	if se.Kind != kind || se.Status != status || (name != "" && se.Name != name) {
		t.Fatalf("got %+v (%v), want kind %v status %d name %q", se, se, kind, status, name)
	}
	if se.Message == "" {
		t.Fatalf("empty message in %+v", se)
	}
}

func TestSingle(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	out, se, err := send(m, "k1", mail("t1", "ann@example.com"))
	if err != nil {
		t.Fatal(err, se)
	}
	ds := fake.Deliveries()
	if len(out) != 1 || len(ds) != 1 || out[0].MessageID != ds[0].ID || out[0].Rejected != "" {
		t.Fatalf("out %+v deliveries %+v", out, ds)
	}
	d := ds[0]
	if d.TicketID != "t1" || d.Headers["X-Entity-Ref-ID"] != "t1" || d.IdempotencyKey != "k1" ||
		d.Text != "Enjoy the film, ticket t1" || d.Subject != "Your ticket t1" || d.Batch {
		t.Fatalf("delivery %+v", d)
	}
}

func TestBatch(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	out, _, err := send(m, "b1", mail("t1", "a@example.com"), mail("t2", "b@example.com"), mail("t3", "c@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	ds := fake.Deliveries()
	if len(out) != 3 || len(ds) != 3 {
		t.Fatalf("out %+v deliveries %+v", out, ds)
	}
	for i := range out {
		if out[i].MessageID != ds[i].ID || ds[i].TicketID != fmt.Sprintf("t%d", i+1) || !ds[i].Batch || ds[i].IdempotencyKey != "b1" {
			t.Fatalf("email %d: %+v / %+v", i, out[i], ds[i])
		}
	}
	// Replay: same ids, no new delivery.
	again, _, err := send(m, "b1", mail("t1", "a@example.com"), mail("t2", "b@example.com"), mail("t3", "c@example.com"))
	if err != nil || fmt.Sprint(again) != fmt.Sprint(out) || len(fake.Deliveries()) != 3 {
		t.Fatalf("replay %+v %v, %d deliveries", again, err, len(fake.Deliveries()))
	}
}

func TestBatchPermissiveRejection(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{Reject: []string{"bounce@example.com"}}, 5*time.Second)
	out, _, err := send(m, "p1", mail("t1", "a@example.com"), mail("t2", "Bounce@Example.com"), mail("t3", "c@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	ds := fake.Deliveries()
	if len(out) != 3 || len(ds) != 2 {
		t.Fatalf("out %+v deliveries %+v", out, ds)
	}
	if out[0].MessageID != ds[0].ID || out[2].MessageID != ds[1].ID || out[1].MessageID != "" ||
		!strings.Contains(out[1].Rejected, "bounce@example.com") || out[0].Rejected != "" || out[2].Rejected != "" {
		t.Fatalf("out %+v", out)
	}
	if fake.DeliveredCount("t2") != 0 {
		t.Fatal("rejected email delivered")
	}
}

func TestSingleRejectedIsPermanent(t *testing.T) {
	_, _, m := setup(t, resendfake.Options{Reject: []string{"bounce@example.com"}}, 5*time.Second)
	_, se, err := send(m, "s1", mail("t1", "bounce@example.com"))
	wantKind(t, se, err, sweeper.Permanent, 422, "validation_error")
	wantClass(t, se, sweeper.Class4xx)
}

func TestAuth(t *testing.T) {
	fake, ts, _ := setup(t, resendfake.Options{}, 5*time.Second)
	m := resendmail.New(apiKey+"-wrong", ts.URL, 5*time.Second, nil)
	_, se, err := send(m, "a1", mail("t1", "a@example.com"))
	wantKind(t, se, err, sweeper.Auth, 403, "invalid_api_key")

	// No key configured: refused without a request.
	before := fake.Requests()
	_, se, err = send(resendmail.New("", ts.URL, 5*time.Second, nil), "a1", mail("t1", "a@example.com"))
	wantKind(t, se, err, sweeper.Auth, 0, "")
	wantClass(t, se, sweeper.Class4xx)
	if fake.Requests() != before {
		t.Fatal("sent without a key")
	}
	if len(fake.Deliveries()) != 0 {
		t.Fatal("delivered")
	}
}

func TestRateLimited(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fake, _, m := setup(t, resendfake.Options{RateLimit: 1, Now: func() time.Time { return now }}, 5*time.Second)
	if _, _, err := send(m, "r1", mail("t1", "a@example.com")); err != nil {
		t.Fatal(err)
	}
	_, se, err := send(m, "r2", mail("t2", "a@example.com"))
	wantKind(t, se, err, sweeper.RateLimited, 429, "rate_limit_exceeded")
	wantClass(t, se, sweeper.Class429)
	if se.RetryAfter != time.Second {
		t.Fatalf("retry after %v", se.RetryAfter)
	}
	if fake.RateLimited() != 1 || fake.DeliveredCount("t2") != 0 {
		t.Fatal("bad fake counters")
	}
}

func TestInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	fake, _, m := setup(t, resendfake.Options{Hook: func(r *http.Request, emails []resendfake.Email) (int, bool) {
		once.Do(func() { close(entered); <-release })
		return 0, false
	}}, 5*time.Second)
	type result struct {
		out []sweeper.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := m.Send(context.Background(), "f1", []sweeper.Email{mail("t1", "a@example.com")})
		done <- result{out, err}
	}()
	<-entered
	_, se, err := send(m, "f1", mail("t1", "a@example.com"))
	wantKind(t, se, err, sweeper.InFlight, 409, "concurrent_idempotent_requests")
	releaseOnce.Do(func() { close(release) })
	first := <-done
	if first.err != nil {
		t.Fatal(first.err)
	}
	out, _, err := send(m, "f1", mail("t1", "a@example.com"))
	if err != nil || out[0].MessageID != first.out[0].MessageID || fake.DeliveredCount("t1") != 1 {
		t.Fatalf("replay %+v %v", out, err)
	}
}

func TestKeyReusedWithOtherEmailsIsPermanent(t *testing.T) {
	_, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	if _, _, err := send(m, "k", mail("t1", "a@example.com"), mail("t2", "b@example.com")); err != nil {
		t.Fatal(err)
	}
	_, se, err := send(m, "k", mail("t1", "a@example.com"), mail("t3", "b@example.com"))
	wantKind(t, se, err, sweeper.Permanent, 409, "invalid_idempotent_request")
}

func TestServerErrorIsTransient(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	fake.FailNext(1)
	_, se, err := send(m, "e1", mail("t1", "a@example.com"), mail("t2", "b@example.com"))
	wantKind(t, se, err, sweeper.Transient, 500, "internal_server_error")
	wantClass(t, se, sweeper.Class5xx)
	if len(fake.Deliveries()) != 0 {
		t.Fatal("delivered")
	}
	if _, _, err := send(m, "e1", mail("t1", "a@example.com"), mail("t2", "b@example.com")); err != nil {
		t.Fatal(err)
	}
}

func TestLostResponseThenReplay(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	fake.LoseNext(1)
	_, se, err := send(m, "l1", mail("t1", "a@example.com"), mail("t2", "b@example.com"))
	wantKind(t, se, err, sweeper.Transient, 500, "")
	out, _, err := send(m, "l1", mail("t1", "a@example.com"), mail("t2", "b@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	ds := fake.Deliveries()
	if len(ds) != 2 || out[0].MessageID != ds[0].ID || out[1].MessageID != ds[1].ID || len(fake.Duplicates()) != 0 {
		t.Fatalf("out %+v deliveries %+v", out, ds)
	}
}

func TestTimeoutThenReplay(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 200*time.Millisecond)
	fake.DelayNext(1, 3*time.Second)
	start := time.Now()
	_, se, err := send(m, "slow", mail("t1", "a@example.com"), mail("t2", "b@example.com"))
	wantKind(t, se, err, sweeper.Transient, 0, "")
	wantClass(t, se, sweeper.ClassTimeout)
	if time.Since(start) > 2*time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
	out, _, err := send(m, "slow", mail("t1", "a@example.com"), mail("t2", "b@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	ds := fake.Deliveries()
	if len(ds) != 2 || out[0].MessageID != ds[0].ID || out[1].MessageID != ds[1].ID ||
		fake.DeliveredCount("t1") != 1 || fake.DeliveredCount("t2") != 1 {
		t.Fatalf("out %+v deliveries %+v", out, ds)
	}
}

func TestContextDeadlineIsTransient(t *testing.T) {
	fake, _, m := setup(t, resendfake.Options{}, 5*time.Second)
	fake.DelayNext(1, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := m.Send(ctx, "ctx", []sweeper.Email{mail("t1", "a@example.com")})
	leaks.add(err)
	var se *sweeper.SendError
	if !errors.As(err, &se) || se.Kind != sweeper.Transient || se.Status != 0 {
		t.Fatalf("err %v", err)
	}
	wantClass(t, se, sweeper.ClassTimeout)
}

func TestNetworkErrorIsTransient(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	_, se, err := send(resendmail.New(apiKey, url, time.Second, nil), "n1", mail("t1", "a@example.com"))
	wantKind(t, se, err, sweeper.Transient, 0, "")
	wantClass(t, se, sweeper.ClassNetwork)
}

// wantClass checks the class a failed request is counted under.
func wantClass(t *testing.T, se *sweeper.SendError, class sweeper.ErrorClass) {
	t.Helper()
	if got := se.Class(); got != class {
		t.Fatalf("%+v: class %q, want %q", se, got, class)
	}
}

// TestRawResponses covers what the fake does not produce: other error names, non-JSON bodies,
// a key echoed by the provider, odd batch responses.
func TestRawResponses(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		headers     map[string]string
		body        string
		emails      int
		kind        sweeper.ErrorKind
		errName     string
		retry       time.Duration
		wantMessage string
	}{
		{"restricted key", 403, nil, `{"statusCode":403,"name":"restricted_api_key","message":"This API key is restricted to only send emails"}`, 1, sweeper.Auth, "restricted_api_key", 0, "restricted"},
		{"401 any", 401, nil, `{"statusCode":401,"name":"restricted_api_key","message":"restricted"}`, 2, sweeper.Auth, "restricted_api_key", 0, ""},
		{"403 domain", 403, nil, `{"statusCode":403,"name":"validation_error","message":"The cineflow.test domain is not verified."}`, 1, sweeper.Permanent, "validation_error", 0, "not verified"},
		{"400", 400, nil, `{"statusCode":400,"name":"invalid_idempotency_key","message":"The key must be between 1-256 chars."}`, 1, sweeper.Permanent, "invalid_idempotency_key", 0, ""},
		{"409 other", 409, nil, `{"statusCode":409,"name":"something_else","message":"x"}`, 1, sweeper.Permanent, "something_else", 0, ""},
		{"429 retry 7", 429, map[string]string{"Retry-After": "7"}, `{"statusCode":429,"name":"rate_limit_exceeded","message":"slow down"}`, 2, sweeper.RateLimited, "rate_limit_exceeded", 7 * time.Second, ""},
		{"429 reset only", 429, map[string]string{"Ratelimit-Reset": "3"}, `{"statusCode":429,"name":"daily_quota_exceeded","message":"quota"}`, 1, sweeper.RateLimited, "daily_quota_exceeded", 3 * time.Second, ""},
		{"429 no header", 429, nil, `{}`, 1, sweeper.RateLimited, "", time.Second, ""},
		{"502 html", 502, map[string]string{"Content-Type": "text/html"}, `<html>bad gateway</html>`, 1, sweeper.Transient, "", 0, "502"},
		{"503 text", 503, map[string]string{"Content-Type": "text/plain"}, `upstream down`, 2, sweeper.Transient, "", 0, "upstream down"},
		{"key echoed", 403, nil, `{"statusCode":403,"name":"invalid_api_key","message":"API key ` + apiKey + ` is invalid"}`, 1, sweeper.Auth, "invalid_api_key", 0, "[redacted]"},
		{"408", 408, nil, `{"message":"timeout"}`, 1, sweeper.Transient, "", 0, ""},
		{"huge body", 500, nil, `{"name":"x","message":"` + strings.Repeat("a", 100<<10) + `"}`, 1, sweeper.Transient, "", 0, ""},
		{"batch mismatch", 200, nil, `{"data":[{"id":"1"}]}`, 2, sweeper.Permanent, "", 0, "unexpected batch response"},
		{"batch bad index", 200, nil, `{"data":[{"id":"1"}],"errors":[{"index":5,"message":"x"}]}`, 2, sweeper.Permanent, "", 0, "bad error index"},
		{"2xx garbage", 200, nil, `not json`, 1, sweeper.Transient, "", 0, "reading response"},
	}
	// The class each case is counted under: by status; refused for good without an error
	// status counts as 4xx; an answer that cannot be read as a network error.
	classOf := map[string]sweeper.ErrorClass{"batch mismatch": sweeper.Class4xx, "batch bad index": sweeper.Class4xx,
		"2xx garbage": sweeper.ClassNetwork}
	for _, c := range cases {
		if _, ok := classOf[c.name]; !ok {
			switch {
			case c.status == 429:
				classOf[c.name] = sweeper.Class429
			case c.status >= 500:
				classOf[c.name] = sweeper.Class5xx
			default:
				classOf[c.name] = sweeper.Class4xx
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				for k, v := range c.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				fmt.Fprint(w, c.body)
			}))
			defer ts.Close()
			m := resendmail.New(apiKey, ts.URL, 5*time.Second, nil)
			var emails []sweeper.Email
			for i := range c.emails {
				emails = append(emails, mail(fmt.Sprint(i), "a@example.com"))
			}
			_, se, err := send(m, "raw", emails...)
			if se == nil {
				t.Fatalf("want SendError, got %v", err)
			}
			if se.Kind != c.kind || (c.errName != "" && se.Name != c.errName) || (c.retry != 0 && se.RetryAfter != c.retry) ||
				!strings.Contains(se.Message, c.wantMessage) {
				t.Fatalf("got %+v", se)
			}
			if c.status >= 400 && se.Status != c.status {
				t.Fatalf("status %d", se.Status)
			}
			wantClass(t, se, classOf[c.name])
		})
	}
}

func TestPermissiveAllRejected(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-batch-validation") != "permissive" || r.Header.Get("Idempotency-Key") != "all" || r.URL.Path != "/api/emails/batch" {
			w.WriteHeader(400)
			return
		}
		fmt.Fprint(w, `{"data":[],"errors":[{"index":1,"message":"bad b"},{"index":0,"message":""}]}`)
	}))
	defer ts.Close()
	m := resendmail.New(apiKey, ts.URL+"/api", 5*time.Second, nil) // base URL without trailing slash keeps its path
	out, _, err := send(m, "all", mail("a", "a@example.com"), mail("b", "b@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Rejected == "" || out[1].Rejected != "bad b" || out[0].MessageID != "" {
		t.Fatalf("out %+v", out)
	}
}

type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestUsesGivenTransport(t *testing.T) {
	fake := resendfake.New(resendfake.Options{APIKey: apiKey, Reject: []string{"x@example.com"}})
	ts := httptest.NewServer(fake)
	defer ts.Close()
	ct := &countingTransport{}
	m := resendmail.New(apiKey, ts.URL+"/", 5*time.Second, ct)
	if _, _, err := send(m, "t", mail("t1", "a@example.com")); err != nil {
		t.Fatal(err)
	}
	_, se, err := send(m, "t2", mail("t2", "x@example.com"))
	wantKind(t, se, err, sweeper.Permanent, 422, "validation_error")
	if ct.n.Load() != 2 {
		t.Fatalf("transport used %d times", ct.n.Load())
	}
}

func TestBadInput(t *testing.T) {
	_, _, m := setup(t, resendfake.Options{}, time.Second)
	_, se, err := send(m, "x")
	wantKind(t, se, err, sweeper.Permanent, 0, "")
	many := make([]sweeper.Email, sweeper.MaxBatch+1)
	_, se, err = send(m, "x", many...)
	wantKind(t, se, err, sweeper.Permanent, 0, "")
	_, se, err = send(resendmail.New(apiKey, "://bad", time.Second, nil), "x", mail("t", "a@example.com"))
	wantKind(t, se, err, sweeper.Auth, 0, "")
}
