package notifyclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/outbox"
)

const token = "s3cret-token-value"

func TestMain(m *testing.M) {
	// What telemetry.Setup installs in the binaries: the W3C propagator.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

func email() core.Email {
	return core.Email{Key: "booking-paid:64b0c0ffee", Recipients: []string{"ann@example.com"}, Subject: "Booked",
		Content: "Seats A1, A2", Kind: "booking-paid", Ref: "64b0c0ffee"}
}

type seen struct {
	mu     sync.Mutex
	header http.Header
	body   map[string]any
}

func recorder(t *testing.T, status int, hdr map[string]string, body string) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.header = r.Header.Clone()
		s.body = nil
		_ = json.Unmarshal(raw, &s.body)
		s.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/notiservice/api/v1/notifications" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func newClient(t *testing.T, url, tok string) *Client {
	t.Helper()
	c, err := New(Options{URL: url + "/notiservice/api/v1/notifications", Token: tok, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNotifySendsTheTicketWithHeaders(t *testing.T) {
	t.Parallel()
	srv, s := recorder(t, http.StatusCreated, nil, `{"success":true,"data":{"_id":"x"}}`)
	c := newClient(t, srv.URL, token)

	// A context inside a span: the request carries its traceparent (telemetry.Transport).
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(t.Context(), "payment")
	defer span.End()
	if err := c.Notify(ctx, email()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, want := range map[string]string{
		"Authorization":   "Bearer " + token,
		"Idempotency-Key": "booking-paid:64b0c0ffee",
		"Content-Type":    "application/json",
	} {
		if got := s.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	tpHeader := s.header.Get("Traceparent")
	if !strings.Contains(tpHeader, span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q does not carry the trace %s", tpHeader, span.SpanContext().TraceID())
	}
	if s.body["subject"] != "Booked" || s.body["content"] != "Seats A1, A2" {
		t.Errorf("body %v", s.body)
	}
	if r, _ := s.body["recepientEmails"].([]any); len(r) != 1 || r[0] != "ann@example.com" {
		t.Errorf("recepientEmails (the original's spelling) %v", s.body["recepientEmails"])
	}
}

func TestNotifyWithoutTokenSendsNoAuthorization(t *testing.T) {
	t.Parallel()
	srv, s := recorder(t, http.StatusCreated, nil, `{}`)
	if err := newClient(t, srv.URL, "").Notify(t.Context(), email()); err != nil {
		t.Fatal(err)
	}
	if h := s.header.Get("Authorization"); h != "" {
		t.Fatalf("Authorization %q without a token", h)
	}
}

func TestNotifyClassifiesStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status            int
		ok, perm, config  bool
		retryAfterHeader  string
		wantRetryAfterMin time.Duration
	}{
		{status: 200, ok: true},
		{status: 201, ok: true},
		{status: 400, perm: true},
		{status: 404, perm: true},
		{status: 413, perm: true},
		{status: 422, perm: true},
		{status: 401, config: true},
		{status: 403, config: true},
		{status: 408},
		{status: 409},
		{status: 429, retryAfterHeader: "7", wantRetryAfterMin: 7 * time.Second},
		{status: 429},
		{status: 500},
		{status: 502},
		{status: 503, retryAfterHeader: "2"},
		{status: 503, retryAfterHeader: time.Now().Add(time.Minute).UTC().Format(http.TimeFormat), wantRetryAfterMin: 50 * time.Second},
	} {
		hdr := map[string]string{}
		if tc.retryAfterHeader != "" {
			hdr["Retry-After"] = tc.retryAfterHeader
		}
		srv, _ := recorder(t, tc.status, hdr,
			`{"success":false,"error":{"subject":"is required"},"data":null,"message":"invalid request"}`)
		err := newClient(t, srv.URL, token).Notify(t.Context(), email())
		if tc.ok {
			if err != nil {
				t.Errorf("%d: %v", tc.status, err)
			}
			continue
		}
		var ne *outbox.NotifyError
		if !errors.As(err, &ne) {
			t.Errorf("%d: error %v is not a *outbox.NotifyError", tc.status, err)
			continue
		}
		if ne.Permanent != tc.perm || ne.Config != tc.config {
			t.Errorf("%d: permanent %v config %v, want %v %v", tc.status, ne.Permanent, ne.Config, tc.perm, tc.config)
		}
		if ne.RetryAfter < tc.wantRetryAfterMin || (tc.wantRetryAfterMin == 0 && tc.retryAfterHeader == "" && ne.RetryAfter != 0) {
			t.Errorf("%d: RetryAfter %v, want at least %v", tc.status, ne.RetryAfter, tc.wantRetryAfterMin)
		}
		if !strings.Contains(err.Error(), "invalid request") || !strings.Contains(err.Error(), "subject") {
			t.Errorf("%d: error %q does not quote the service's reason", tc.status, err)
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("%d: error carries the token: %q", tc.status, err)
		}
	}
}

func TestNotifyUnreachableAndTimeoutAreRetryable(t *testing.T) {
	t.Parallel()
	// Connection refused: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = newClient(t, "http://"+addr, token).Notify(t.Context(), email())
	var ne *outbox.NotifyError
	if !errors.As(err, &ne) || ne.Permanent || ne.Config {
		t.Fatalf("connection refused: %#v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error carries the token: %q", err)
	}

	// A service slower than the timeout.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	c, err := New(Options{URL: slow.URL, Token: token, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Notify(context.Background(), email())
	if !errors.As(err, &ne) || ne.Permanent {
		t.Fatalf("timeout: %#v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestNewChecksTheURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"localhost:3001", "ftp://x/y", "http://", "http://user:" + token + "@host/"} {
		_, err := New(Options{URL: u, Token: token})
		if err == nil {
			t.Errorf("%q accepted", u)
			continue
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("error carries the token: %q", err)
		}
	}
	if c, err := New(Options{}); err != nil || c.url != DefaultURL {
		t.Fatalf("default URL: %v %v", c, err)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "-5": 0, "junk": 0, "999999": time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", h, got, want)
		}
	}
}
