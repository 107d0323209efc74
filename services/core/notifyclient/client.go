// Package notifyclient posts emails to the notification service: the outbox.Notifier the
// outbox relay uses.
package notifyclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// DefaultURL is the notification service's ticket endpoint when NOTIFICATION_SERVICE_URL is
// unset.
const DefaultURL = "http://localhost:3001/notiservice/api/v1/notifications"

// maxRetryAfter caps a Retry-After the service asks for.
const maxRetryAfter = time.Hour

// maxReason bounds how much of the service's answer an error quotes, in bytes.
const maxReason = 300

// Options configure a Client.
type Options struct {
	// URL is the ticket endpoint (default DefaultURL).
	URL string
	// Token is NOTIFICATION_API_TOKEN, sent as "Authorization: Bearer <Token>" when set. It
	// never appears in an error.
	Token string
	// Timeout bounds each POST (default 5s).
	Timeout time.Duration
	// Transport is the base round tripper (default http.DefaultTransport); it is wrapped by
	// telemetry.Transport so requests carry the traceparent of their context.
	Transport http.RoundTripper
}

// Client is a outbox.Notifier over HTTP.
type Client struct {
	url   string
	token string
	http  *http.Client
}

var _ outbox.Notifier = (*Client)(nil)

// New returns a client; the URL must be absolute http(s).
func New(opts Options) (*Client, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if err := CheckURL(opts.URL); err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	return &Client{url: opts.URL, token: opts.Token,
		http: &http.Client{Timeout: opts.Timeout, Transport: telemetry.Transport(opts.Transport)}}, nil
}

// CheckURL says what is wrong with a NOTIFICATION_SERVICE_URL (nil when fine).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("NOTIFICATION_SERVICE_URL must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("NOTIFICATION_SERVICE_URL must not carry credentials: use NOTIFICATION_API_TOKEN")
	}
	return nil
}

// request is the body of the POST: the original service's field names.
type request struct {
	Subject         string   `json:"subject"`
	Content         string   `json:"content"`
	RecepientEmails []string `json:"recepientEmails"`
}

// Notify posts e as a ticket, with e.Key as its Idempotency-Key. A 2xx answer means the
// service has it. Errors are *outbox.NotifyError: Permanent for a 4xx other than 401, 403,
// 408, 409 and 429 (the email itself is refused); retryable otherwise (5xx, 429 with its
// Retry-After, timeouts, connection refused), and Config for 401 and 403.
func (c *Client) Notify(ctx context.Context, e core.Email) error {
	body, err := json.Marshal(request{Subject: e.Subject, Content: e.Content, RecepientEmails: e.Recipients})
	if err != nil {
		return &outbox.NotifyError{Err: fmt.Errorf("notification request: %w", err), Permanent: true}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &outbox.NotifyError{Err: fmt.Errorf("notification request: %w", err), Permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", e.Key)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The error names the URL (never the token: it travels in a header).
		return &outbox.NotifyError{Err: fmt.Errorf("notification service unreachable: %w", err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("notification service answered %d%s", resp.StatusCode, reason(raw))
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return &outbox.NotifyError{Err: err, Config: true}
	case s == http.StatusTooManyRequests || s == http.StatusServiceUnavailable:
		return &outbox.NotifyError{Err: err, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case s == http.StatusRequestTimeout || s == http.StatusConflict:
		return &outbox.NotifyError{Err: err}
	case s >= 400 && s < 500:
		return &outbox.NotifyError{Err: err, Permanent: true}
	default: // 5xx, and anything unexpected (1xx, 3xx)
		return &outbox.NotifyError{Err: err, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
}

// reason quotes the envelope's message and error from an answer, shortened.
func reason(raw []byte) string {
	var env struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &env) != nil {
		return ""
	}
	parts := []string{}
	if env.Message != "" {
		parts = append(parts, env.Message)
	}
	if e := strings.TrimSpace(string(env.Error)); e != "" && e != "{}" && e != "null" && e != `""` {
		parts = append(parts, e)
	}
	s := strings.Join(parts, ": ")
	if len(s) > maxReason {
		s = s[:maxReason] + "..."
	}
	if s == "" {
		return ""
	}
	return ": " + s
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date (0 when absent or bad).
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
