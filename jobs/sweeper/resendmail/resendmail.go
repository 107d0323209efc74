// Package resendmail is the sweeper.Mailer that sends through Resend (resend-go v2).
//
// One email goes to POST /emails, several to POST /emails/batch in permissive validation
// mode, both with the caller's idempotency key. Failures are classified into
// *sweeper.SendError. resend-go turns most HTTP errors into a bare string, so the Mailer's
// transport records the status, error name, message and retry-after of every error response
// before resend-go reads it.
package resendmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/resend/resend-go/v2"

	"github.com/cineflow/cineflow/jobs/sweeper"
)

// DefaultTimeout is the HTTP client timeout used when New is given none (resend-go's own).
const DefaultTimeout = time.Minute

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// TicketTag is the name of the tag (and the X-Entity-Ref-ID header value) carrying the ticket id.
const TicketTag = "ticket_id"

// Mailer sends emails through Resend. It is safe for concurrent use.
type Mailer struct {
	client  *resend.Client
	apiKey  string
	initErr *sweeper.SendError
}

var _ sweeper.Mailer = (*Mailer)(nil)

// New returns a Mailer using apiKey. baseURL "" keeps resend-go's default, which honours the
// RESEND_BASE_URL environment variable (read when the process starts). timeout bounds each
// HTTP request (0 means DefaultTimeout). transport nil means http.DefaultTransport; pass an
// instrumented one (e.g. otelhttp) to trace requests.
//
// A baseURL that does not parse, or an empty apiKey, makes every Send fail with an Auth
// error: nothing can succeed until the configuration is fixed.
func New(apiKey, baseURL string, timeout time.Duration, transport http.RoundTripper) *Mailer {
	if transport == nil {
		transport = http.DefaultTransport
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	apiKey = strings.Trim(strings.TrimSpace(apiKey), "'")
	httpClient := &http.Client{Timeout: timeout, Transport: &recordingTransport{base: transport}}
	m := &Mailer{client: resend.NewCustomClient(httpClient, apiKey), apiKey: apiKey}
	if baseURL != "" {
		u, err := url.Parse(baseURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			m.initErr = &sweeper.SendError{Kind: sweeper.Auth, Message: fmt.Sprintf("invalid Resend base URL %q", baseURL)}
		} else {
			m.client.BaseURL = u
		}
	}
	if m.client.BaseURL != nil && !strings.HasSuffix(m.client.BaseURL.Path, "/") {
		// resend-go resolves "emails" against the base URL: without the slash, a path
		// prefix such as /api would be dropped.
		u := *m.client.BaseURL
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
		m.client.BaseURL = &u
	}
	if apiKey == "" && m.initErr == nil {
		m.initErr = &sweeper.SendError{Kind: sweeper.Auth, Message: "no Resend API key configured"}
	}
	return m
}

// Send implements sweeper.Mailer.
func (m *Mailer) Send(ctx context.Context, idempotencyKey string, emails []sweeper.Email) ([]sweeper.Outcome, error) {
	if m.initErr != nil {
		e := *m.initErr
		return nil, &e
	}
	if len(emails) == 0 || len(emails) > sweeper.MaxBatch {
		return nil, &sweeper.SendError{Kind: sweeper.Permanent,
			Message: fmt.Sprintf("a send carries 1 to %d emails, got %d", sweeper.MaxBatch, len(emails))}
	}
	rec := &recorder{}
	ctx = context.WithValue(ctx, recorderKey{}, rec)
	reqs := make([]*resend.SendEmailRequest, len(emails))
	for i, e := range emails {
		reqs[i] = request(e)
	}

	if len(emails) == 1 {
		resp, err := m.client.Emails.SendWithOptions(ctx, reqs[0], &resend.SendEmailOptions{IdempotencyKey: idempotencyKey})
		if err != nil {
			return nil, m.classify(rec, err)
		}
		return []sweeper.Outcome{{MessageID: resp.Id}}, nil
	}

	resp, err := m.client.Batch.SendWithOptions(ctx, reqs, &resend.BatchSendEmailOptions{
		IdempotencyKey:  idempotencyKey,
		BatchValidation: resend.BatchValidationPermissive,
	})
	if err != nil {
		return nil, m.classify(rec, err)
	}
	return m.outcomes(len(emails), resp)
}

// request builds the resend-go request of one email.
func request(e sweeper.Email) *resend.SendEmailRequest {
	r := &resend.SendEmailRequest{
		From:    e.From,
		To:      e.To,
		Subject: e.Subject,
		Text:    e.Text,
	}
	if e.TicketID != "" {
		r.Tags = []resend.Tag{{Name: TicketTag, Value: tagValue(e.TicketID)}}
		r.Headers = map[string]string{"X-Entity-Ref-ID": e.TicketID}
	}
	return r
}

// tagValue makes s a valid Resend tag value: ASCII letters, digits, '_' and '-', at most 256
// characters. Ticket ids (ObjectIDs, UUIDs) pass unchanged.
func tagValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return string(b)
}

// outcomes maps a permissive batch response to one Outcome per email: errors by index are
// rejections, the ids fill the other emails in order.
func (m *Mailer) outcomes(n int, resp *resend.BatchEmailResponse) ([]sweeper.Outcome, error) {
	out := make([]sweeper.Outcome, n)
	rejected := make([]bool, n)
	bad := func(why string) error {
		return &sweeper.SendError{Kind: sweeper.Permanent, Status: http.StatusOK,
			Message: fmt.Sprintf("unexpected batch response (%d ids, %d errors for %d emails): %s",
				len(resp.Data), len(resp.Errors), n, why)}
	}
	for _, e := range resp.Errors {
		if e.Index < 0 || e.Index >= n || rejected[e.Index] {
			return nil, bad(fmt.Sprintf("bad error index %d", e.Index))
		}
		rejected[e.Index] = true
		msg := m.scrub(e.Message)
		if msg == "" {
			msg = "rejected by Resend"
		}
		out[e.Index].Rejected = msg
	}
	if len(resp.Data) != n-len(resp.Errors) {
		return nil, bad("ids and errors do not add up")
	}
	j := 0
	for i := range out {
		if !rejected[i] {
			out[i].MessageID = resp.Data[j].Id
			j++
		}
	}
	return out, nil
}

// classify turns a resend-go error into a *sweeper.SendError.
func (m *Mailer) classify(rec *recorder, err error) *sweeper.SendError {
	r := rec.get()
	if r.status >= 400 {
		se := &sweeper.SendError{Status: r.status, Name: r.name, Message: r.message}
		if se.Message == "" {
			se.Message = strings.TrimPrefix(err.Error(), "[ERROR]: ")
		}
		switch {
		case r.status == http.StatusTooManyRequests:
			se.Kind = sweeper.RateLimited
			se.RetryAfter = retryAfter(r.retryAfter, r.reset)
		case r.status == http.StatusConflict && r.name == "concurrent_idempotent_requests":
			se.Kind = sweeper.InFlight
		case r.status == http.StatusUnauthorized:
			se.Kind = sweeper.Auth
		case r.status == http.StatusForbidden &&
			(r.name == "missing_api_key" || r.name == "invalid_api_key" || r.name == "restricted_api_key"):
			se.Kind = sweeper.Auth
		case r.status >= 500 || r.status == http.StatusRequestTimeout:
			se.Kind = sweeper.Transient
		default: // other 4xx, including 409 invalid_idempotent_request
			se.Kind = sweeper.Permanent
		}
		se.Message = m.scrub(se.Message)
		return se
	}

	var urlErr *url.Error
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &urlErr), errors.As(err, &netErr):
		// No answer: timeout, cancellation or network error. Resend may have accepted it.
		timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
		return &sweeper.SendError{Kind: sweeper.Transient, Message: m.scrub(err.Error()), Timeout: timeout}
	case r.status != 0:
		// A 2xx whose body could not be read: accepted, but we do not know the ids.
		return &sweeper.SendError{Kind: sweeper.Transient, Status: r.status,
			Message: m.scrub("reading response: " + err.Error())}
	default:
		// resend-go failed before sending (building the request).
		return &sweeper.SendError{Kind: sweeper.Permanent, Message: m.scrub(strings.TrimPrefix(err.Error(), "[ERROR]: "))}
	}
}

// scrub removes the API key from s.
func (m *Mailer) scrub(s string) string {
	if m.apiKey == "" {
		return s
	}
	return strings.ReplaceAll(s, m.apiKey, "[redacted]")
}

// retryAfter parses retry-after (seconds or an HTTP date), falling back on ratelimit-reset
// and then on one second.
func retryAfter(header, reset string) time.Duration {
	for _, v := range []string{header, reset} {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if secs, err := strconv.ParseFloat(v, 64); err == nil {
			if secs > 0 && secs < 24*3600 {
				return time.Duration(secs * float64(time.Second))
			}
			continue
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := time.Until(t); d > 0 {
				return d
			}
		}
	}
	return time.Second
}

// recorder holds what the transport saw of a request's response.
type recorder struct {
	mu         sync.Mutex
	status     int
	name       string
	message    string
	retryAfter string
	reset      string
}

type recorded struct {
	status                           int
	name, message, retryAfter, reset string
}

func (r *recorder) get() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{r.status, r.name, r.message, r.retryAfter, r.reset}
}

type recorderKey struct{}

// recordingTransport records, into the recorder carried by the request's context, the status
// of every response and, for errors (>= 400), Resend's error name and message and the
// retry-after headers. It reads error bodies (up to maxErrorBody) and puts them back for
// resend-go.
type recordingTransport struct {
	base http.RoundTripper
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	rec, _ := req.Context().Value(recorderKey{}).(*recorder)
	if err != nil || rec == nil {
		return resp, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.status = resp.StatusCode
	rec.name, rec.message = "", ""
	rec.retryAfter = resp.Header.Get("Retry-After")
	rec.reset = resp.Header.Get("Ratelimit-Reset")
	if resp.StatusCode < 400 || resp.Body == nil {
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	var e struct {
		Name    string `json:"name"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		rec.name, rec.message = e.Name, e.Message
		if rec.message == "" {
			rec.message = e.Error
		}
	}
	if rec.message == "" {
		rec.message = resp.Status
		if text := strings.TrimSpace(string(body)); text != "" && len(text) <= 200 && !strings.HasPrefix(text, "<") {
			rec.message += ": " + text
		}
	}
	return resp, nil
}
