// Package resendfake is a fake of the Resend HTTP API (https://resend.com/docs/api-reference)
// for tests: POST /emails and POST /emails/batch with bearer auth, validation, idempotency
// keys, rate limiting and fault injection. It records every email it "delivers" so that a
// test can count what a person would actually receive.
//
// Server is an http.Handler; serve it with httptest.NewServer or, for end-to-end tests, with
// the resendfake command (cmd/resendfake). The package uses the standard library only and does
// not import testing.
package resendfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxBatch is the most emails one POST /emails/batch may carry.
const MaxBatch = 100

// MaxRecipients is the most addresses the "to" field may hold.
const MaxRecipients = 50

// maxBody bounds a request body (Resend allows 40 MB with attachments; tests need far less).
const maxBody = 10 << 20

// Hook is called for each well-formed, authenticated request that got past rate limiting and
// injected failures, while the request holds its idempotency key (it is "in flight": a request
// with the same key gets 409 concurrent_idempotent_requests), and before validation and
// delivery. r.Body holds the request body again. Returning handled=true answers the request
// with status (500 if 0) and a JSON error body; nothing is delivered and the key is not stored.
// A hook may block, e.g. to hold a request in flight.
type Hook func(r *http.Request, emails []Email) (status int, handled bool)

// Options configure a Server.
type Options struct {
	// APIKey is the key clients must send as "Authorization: Bearer <APIKey>". Empty accepts
	// any non-empty key.
	APIKey string
	// RateLimit is how many requests per second are allowed (a fixed one-second window);
	// 0 means unlimited. Over it the fake answers 429 rate_limit_exceeded.
	RateLimit int
	// Reject lists recipient addresses (case-insensitive) that the fake refuses, as Resend
	// refuses invalid recipients: 422 validation_error for a single email or strict batch, a
	// per-index error in a permissive batch.
	Reject []string
	// Seed seeds the random numbers used for fault fractions and ids, so runs repeat.
	Seed int64
	// Faults are the initial injected faults (see SetFaults).
	Faults Faults
	// Hook, if set, is the initial hook (see SetHook).
	Hook Hook
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Faults are failures injected into requests. Fractions are 0..1 and drawn from the seeded
// random source; "Next" counters are consumed one per affected request.
type Faults struct {
	// FailRate and FailNext: answer 500 BEFORE processing; nothing is delivered and the
	// idempotency key is not stored.
	FailRate float64 `json:"fail_rate"`
	FailNext int     `json:"fail_next"`
	// LoseRate and LoseNext: process the request (deliver, store the key and its response),
	// THEN answer 500, as if the response were lost. A replay with the same key gets the
	// stored response.
	LoseRate float64 `json:"lose_rate"`
	LoseNext int     `json:"lose_next"`
	// Delay is how long a processed request waits, after delivery and storing its key,
	// before it is answered: to make clients time out on an accepted request. It applies to
	// the next DelayNext processed requests and to a DelayRate fraction of the others.
	// Replays and errors are not delayed. The wait ends early if the client goes away.
	Delay     time.Duration `json:"delay"`
	DelayRate float64       `json:"delay_rate"`
	DelayNext int           `json:"delay_next"`
}

// Tag is a name/value pair attached to an email.
type Tag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Email is one email of a request, as resend-go's SendEmailRequest sends it. Address fields
// accept a string or a list, as the Resend API does.
type Email struct {
	From        string            `json:"from"`
	To          Addresses         `json:"to"`
	Subject     string            `json:"subject"`
	Bcc         Addresses         `json:"bcc,omitempty"`
	Cc          Addresses         `json:"cc,omitempty"`
	ReplyTo     Addresses         `json:"reply_to,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Text        string            `json:"text,omitempty"`
	Tags        []Tag             `json:"tags,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	ScheduledAt string            `json:"scheduled_at,omitempty"`
	Attachments json.RawMessage   `json:"attachments,omitempty"`
}

// Tag returns the value of the email's tag called name, or "".
func (e Email) Tag(name string) string {
	for _, t := range e.Tags {
		if t.Name == name {
			return t.Value
		}
	}
	return ""
}

// Addresses is a list of email addresses that unmarshals from a JSON string or array.
type Addresses []string

// UnmarshalJSON accepts "a@x" as well as ["a@x", "b@x"].
func (a *Addresses) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Addresses{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// Delivery is one email the fake accepted: what a person would receive.
type Delivery struct {
	ID             string            `json:"id"`
	TicketID       string            `json:"ticket_id"` // the "ticket_id" tag, or ""
	From           string            `json:"from"`
	To             []string          `json:"to"`
	Cc             []string          `json:"cc,omitempty"`
	Bcc            []string          `json:"bcc,omitempty"`
	Subject        string            `json:"subject"`
	Text           string            `json:"text,omitempty"`
	HTML           string            `json:"html,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Batch          bool              `json:"batch"`
	At             time.Time         `json:"at"`
}

// Stats are the fake's counters.
type Stats struct {
	Requests     int            `json:"requests"`      // HTTP requests served
	RateLimited  int            `json:"rate_limited"`  // 429s served
	FailedBefore int            `json:"failed_before"` // injected 500s before processing
	Lost         int            `json:"lost"`          // injected 500s after processing
	Delayed      int            `json:"delayed"`       // processed requests delayed
	Replayed     int            `json:"replayed"`      // idempotent replays served
	Conflicts    int            `json:"conflicts"`     // 409s served
	Deliveries   int            `json:"deliveries"`    // emails delivered
	Duplicates   map[string]int `json:"duplicates"`    // ticket id -> deliveries, when > 1
}

// Server is the fake Resend API. It is safe for concurrent use.
type Server struct {
	apiKey string
	now    func() time.Time

	mu          sync.Mutex
	rateLimit   int
	reject      map[string]bool
	faults      Faults
	hook        Hook
	rng         *rand.Rand // faults
	idRng       *rand.Rand // ids
	windowStart time.Time
	windowCount int
	keys        map[string]*idemEntry
	deliveries  []Delivery
	stats       Stats
}

type idemEntry struct {
	fingerprint [32]byte
	done        bool
	status      int
	body        []byte
}

// New returns a fake configured by opts.
func New(opts Options) *Server {
	s := &Server{
		apiKey:    opts.APIKey,
		now:       opts.Now,
		rateLimit: opts.RateLimit,
		faults:    opts.Faults,
		hook:      opts.Hook,
		rng:       rand.New(rand.NewSource(opts.Seed)),
		idRng:     rand.New(rand.NewSource(opts.Seed ^ 0x5eed1d5)),
		keys:      map[string]*idemEntry{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.SetReject(opts.Reject...)
	return s
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// UpdateFaults changes the injected faults atomically.
func (s *Server) UpdateFaults(update func(*Faults)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	update(&s.faults)
}

// Faults returns the injected faults as they are now (counters partly consumed).
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// FailNext makes the next n requests fail with 500 before processing.
func (s *Server) FailNext(n int) { s.UpdateFaults(func(f *Faults) { f.FailNext = n }) }

// LoseNext makes the next n requests be processed and then answered 500.
func (s *Server) LoseNext(n int) { s.UpdateFaults(func(f *Faults) { f.LoseNext = n }) }

// DelayNext delays the answer to the next n processed requests by d.
func (s *Server) DelayNext(n int, d time.Duration) {
	s.UpdateFaults(func(f *Faults) { f.DelayNext, f.Delay = n, d })
}

// SetHook sets (or, with nil, removes) the hook.
func (s *Server) SetHook(h Hook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// SetRateLimit sets the requests allowed per second; 0 means unlimited.
func (s *Server) SetRateLimit(perSecond int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = perSecond
}

// SetReject replaces the set of refused recipient addresses.
func (s *Server) SetReject(addresses ...string) {
	m := map[string]bool{}
	for _, a := range addresses {
		if a = normalize(a); a != "" {
			m[a] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = m
}

// Deliveries returns a copy of every delivered email, in delivery order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = d.clone()
	}
	return out
}

// DeliveredCount returns how many emails carrying ticketID were delivered.
func (s *Server) DeliveredCount(ticketID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.deliveries {
		if d.TicketID == ticketID {
			n++
		}
	}
	return n
}

// Duplicates returns the ticket ids delivered more than once, with their delivery counts.
// Emails without a ticket id are not counted.
func (s *Server) Duplicates() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.duplicatesLocked()
}

func (s *Server) duplicatesLocked() map[string]int {
	counts := map[string]int{}
	for _, d := range s.deliveries {
		if d.TicketID != "" {
			counts[d.TicketID]++
		}
	}
	for k, n := range counts {
		if n < 2 {
			delete(counts, k)
		}
	}
	return counts
}

// Inbox returns the deliveries addressed (to, cc or bcc) to address, case-insensitively.
func (s *Server) Inbox(address string) []Delivery {
	want := normalize(address)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Delivery
	for _, d := range s.deliveries {
		if slices.ContainsFunc(d.To, func(a string) bool { return normalize(a) == want }) ||
			slices.ContainsFunc(d.Cc, func(a string) bool { return normalize(a) == want }) ||
			slices.ContainsFunc(d.Bcc, func(a string) bool { return normalize(a) == want }) {
			out = append(out, d.clone())
		}
	}
	return out
}

// Requests returns how many HTTP requests the fake served.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Requests
}

// RateLimited returns how many 429s the fake served.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.RateLimited
}

// Stats returns the fake's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Deliveries = len(s.deliveries)
	st.Duplicates = s.duplicatesLocked()
	return st
}

// Reset forgets deliveries, stored idempotency keys, counters and the rate-limit window.
// Configuration (API key, rate limit, reject list, faults, hook) is kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = nil
	s.keys = map[string]*idemEntry{}
	s.stats = Stats{}
	s.windowStart, s.windowCount = time.Time{}, 0
}

func (d Delivery) clone() Delivery {
	d.To = slices.Clone(d.To)
	d.Cc = slices.Clone(d.Cc)
	d.Bcc = slices.Clone(d.Bcc)
	if d.Headers != nil {
		h := make(map[string]string, len(d.Headers))
		for k, v := range d.Headers {
			h[k] = v
		}
		d.Headers = h
	}
	return d
}

// apiError is Resend's error body.
type apiError struct {
	StatusCode int    `json:"statusCode"`
	Name       string `json:"name"`
	Message    string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func errorBody(status int, name, message string) []byte {
	b, _ := json.Marshal(apiError{StatusCode: status, Name: name, Message: message})
	return b
}

func writeError(w http.ResponseWriter, status int, name, message string) {
	writeJSON(w, status, errorBody(status, name, message))
}

// nameForStatus is the error name the fake uses for a hook's status.
func nameForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return "validation_error"
	case http.StatusUnauthorized:
		return "missing_api_key"
	case http.StatusForbidden:
		return "invalid_api_key"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "invalid_idempotent_request"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	}
	if status >= 500 {
		return "internal_server_error"
	}
	return "application_error"
}

// ServeHTTP implements the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()

	var batch bool
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/emails":
	case "/emails/batch":
		batch = true
	default:
		writeError(w, http.StatusNotFound, "not_found", "The requested endpoint does not exist.")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method is not allowed for the requested route.")
		return
	}

	// Auth.
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		writeError(w, http.StatusUnauthorized, "missing_api_key",
			"Missing API key in the authorization header. Include the following header Authorization: Bearer YOUR_API_KEY in the request.")
		return
	}
	if s.apiKey != "" && token != s.apiKey {
		writeError(w, http.StatusForbidden, "invalid_api_key", "API key is invalid")
		return
	}

	// Rate limit, then failures injected before processing.
	if !s.admit(w) {
		return
	}
	if s.failBefore() {
		writeError(w, http.StatusInternalServerError, "internal_server_error",
			"An unexpected error occurred (injected by resendfake before processing).")
		return
	}

	// Read and parse the body.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "validation_error", "Could not read the request body: "+err.Error())
		return
	}
	var emails []Email
	if batch {
		err = json.Unmarshal(raw, &emails)
	} else {
		var e Email
		err = json.Unmarshal(raw, &e)
		emails = []Email{e}
	}
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "validation_error", "Invalid JSON body: "+err.Error())
		return
	}
	if batch && (len(emails) == 0 || len(emails) > MaxBatch) {
		writeError(w, http.StatusUnprocessableEntity, "validation_error",
			fmt.Sprintf("Batch must contain between 1 and %d emails, got %d.", MaxBatch, len(emails)))
		return
	}
	permissive := false
	if batch {
		switch mode := strings.ToLower(strings.TrimSpace(r.Header.Get("x-batch-validation"))); mode {
		case "", "strict":
		case "permissive":
			permissive = true
		default:
			writeError(w, http.StatusUnprocessableEntity, "validation_error",
				"Invalid `x-batch-validation` header: must be `strict` or `permissive`.")
			return
		}
	}

	// Idempotency.
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if len(key) > 256 {
			writeError(w, http.StatusBadRequest, "invalid_idempotency_key",
				"The key must be between 1-256 chars.")
			return
		}
		fp := fingerprint(r.URL.Path, permissive, raw)
		s.mu.Lock()
		if e, ok := s.keys[key]; ok {
			switch {
			case e.fingerprint != fp:
				s.stats.Conflicts++
				s.mu.Unlock()
				writeError(w, http.StatusConflict, "invalid_idempotent_request",
					"Same idempotency key used with a different request payload. Change your idempotency key or payload.")
			case !e.done:
				s.stats.Conflicts++
				s.mu.Unlock()
				writeError(w, http.StatusConflict, "concurrent_idempotent_requests",
					"Same idempotency key used while original request is still in progress. Try the request again later.")
			default:
				s.stats.Replayed++
				status, body := e.status, e.body
				s.mu.Unlock()
				w.Header().Set("Idempotent-Replayed", "true")
				writeJSON(w, status, body)
			}
			return
		}
		s.keys[key] = &idemEntry{fingerprint: fp}
		s.mu.Unlock()
	}
	// forget drops the key of a request that failed before processing.
	forget := func() {
		if key != "" {
			s.mu.Lock()
			delete(s.keys, key)
			s.mu.Unlock()
		}
	}

	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		r.Body = io.NopCloser(bytes.NewReader(raw))
		if status, handled := hook(r, emails); handled {
			forget()
			if status == 0 {
				status = http.StatusInternalServerError
			}
			writeError(w, status, nameForStatus(status), "Request answered by the resendfake hook.")
			return
		}
	}

	// Validate.
	s.mu.Lock()
	reject := s.reject
	s.mu.Unlock()
	problems := make([]string, len(emails))
	invalid := 0
	for i, e := range emails {
		if p := validate(e, batch, reject); p != "" {
			problems[i] = p
			invalid++
		}
	}
	if invalid > 0 && !permissive {
		forget()
		msg := ""
		for i, p := range problems {
			if p != "" {
				msg = p
				if batch {
					msg = fmt.Sprintf("emails[%d]: %s", i, p)
				}
				break
			}
		}
		writeError(w, http.StatusUnprocessableEntity, "validation_error", msg)
		return
	}

	// Deliver and store the response.
	var body []byte
	s.mu.Lock()
	now := s.now()
	type idOnly struct {
		ID string `json:"id"`
	}
	type batchError struct {
		Index   int    `json:"index"`
		Message string `json:"message"`
	}
	var ids []idOnly
	var errs []batchError
	for i, e := range emails {
		if problems[i] != "" {
			errs = append(errs, batchError{Index: i, Message: problems[i]})
			continue
		}
		d := Delivery{
			ID:             s.newIDLocked(),
			TicketID:       e.Tag("ticket_id"),
			From:           e.From,
			To:             slices.Clone([]string(e.To)),
			Cc:             slices.Clone([]string(e.Cc)),
			Bcc:            slices.Clone([]string(e.Bcc)),
			Subject:        e.Subject,
			Text:           e.Text,
			HTML:           e.HTML,
			Headers:        e.Headers,
			IdempotencyKey: key,
			Batch:          batch,
			At:             now,
		}
		s.deliveries = append(s.deliveries, d)
		ids = append(ids, idOnly{ID: d.ID})
	}
	switch {
	case !batch:
		body, _ = json.Marshal(ids[0])
	case permissive:
		body, _ = json.Marshal(struct {
			Data   []idOnly     `json:"data"`
			Errors []batchError `json:"errors"`
		}{Data: nonNil(ids), Errors: nonNil(errs)})
	default:
		body, _ = json.Marshal(struct {
			Data []idOnly `json:"data"`
		}{Data: nonNil(ids)})
	}
	if key != "" {
		e := s.keys[key]
		e.done, e.status, e.body = true, http.StatusOK, body
	}
	delay := time.Duration(0)
	if f := &s.faults; f.Delay > 0 {
		if f.DelayNext > 0 {
			f.DelayNext--
			delay = f.Delay
		} else if f.DelayRate > 0 && s.rng.Float64() < f.DelayRate {
			delay = f.Delay
		}
	}
	if delay > 0 {
		s.stats.Delayed++
	}
	lose := false
	if f := &s.faults; f.LoseNext > 0 {
		f.LoseNext--
		lose = true
	} else if f.LoseRate > 0 && s.rng.Float64() < f.LoseRate {
		lose = true
	}
	if lose {
		s.stats.Lost++
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if lose {
		writeError(w, http.StatusInternalServerError, "internal_server_error",
			"An unexpected error occurred (injected by resendfake after processing).")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// admit applies the rate limit; it answers 429 and returns false when over it.
func (s *Server) admit(w http.ResponseWriter) bool {
	s.mu.Lock()
	limit := s.rateLimit
	if limit <= 0 {
		s.mu.Unlock()
		return true
	}
	now := s.now()
	if s.windowStart.IsZero() || now.Sub(s.windowStart) >= time.Second || now.Before(s.windowStart) {
		s.windowStart, s.windowCount = now, 0
	}
	reset := s.windowStart.Add(time.Second).Sub(now)
	resetSecs := max(1, int((reset+time.Second-1)/time.Second))
	h := w.Header()
	h.Set("ratelimit-limit", strconv.Itoa(limit))
	h.Set("ratelimit-reset", strconv.Itoa(resetSecs))
	if s.windowCount >= limit {
		s.stats.RateLimited++
		s.mu.Unlock()
		h.Set("ratelimit-remaining", "0")
		h.Set("retry-after", strconv.Itoa(resetSecs))
		writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded",
			fmt.Sprintf("Too many requests. You can only make %d requests per second. See rate limit response headers for more information.", limit))
		return false
	}
	s.windowCount++
	h.Set("ratelimit-remaining", strconv.Itoa(limit-s.windowCount))
	s.mu.Unlock()
	return true
}

// failBefore reports whether this request gets an injected 500 before processing.
func (s *Server) failBefore() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults
	fail := false
	if f.FailNext > 0 {
		f.FailNext--
		fail = true
	} else if f.FailRate > 0 && s.rng.Float64() < f.FailRate {
		fail = true
	}
	if fail {
		s.stats.FailedBefore++
	}
	return fail
}

func (s *Server) newIDLocked() string {
	var b [16]byte
	_, _ = s.idRng.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// fingerprint identifies a request for idempotency: the endpoint, the batch validation mode
// and the body as canonical JSON (so whitespace and key order do not matter).
func fingerprint(path string, permissive bool, body []byte) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00", strings.TrimSuffix(path, "/"), permissive)
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err == nil {
		if canon, err := json.Marshal(v); err == nil {
			body = canon
		}
	}
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// normalize returns the bare, lower-case address of "a@x" or "Name <a@x>", or the trimmed,
// lower-cased input when it does not parse.
func normalize(address string) string {
	if a, err := mail.ParseAddress(address); err == nil {
		return strings.ToLower(a.Address)
	}
	return strings.ToLower(strings.TrimSpace(address))
}

var errBadAddress = errors.New("bad address")

func checkAddress(address string) error {
	a, err := mail.ParseAddress(address)
	if err != nil {
		return errBadAddress
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 || !strings.Contains(a.Address[at+1:], ".") {
		return errBadAddress
	}
	return nil
}

// validate returns why e is refused, or "".
func validate(e Email, batch bool, reject map[string]bool) string {
	const format = "The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."
	if strings.TrimSpace(e.From) == "" {
		return "The `from` field is required."
	}
	if checkAddress(e.From) != nil {
		return "Invalid `from` field. " + format
	}
	if len(e.To) == 0 {
		return "The `to` field is required."
	}
	if len(e.To) > MaxRecipients {
		return fmt.Sprintf("Too many recipients in `to`: %d, the maximum is %d.", len(e.To), MaxRecipients)
	}
	if strings.TrimSpace(e.Subject) == "" {
		return "The `subject` field is required."
	}
	for _, f := range []struct {
		name  string
		addrs []string
	}{{"to", e.To}, {"cc", e.Cc}, {"bcc", e.Bcc}, {"reply_to", e.ReplyTo}} {
		for _, a := range f.addrs {
			if checkAddress(a) != nil {
				return fmt.Sprintf("Invalid `%s` field. %s", f.name, format)
			}
			if f.name != "reply_to" && reject[normalize(a)] {
				return fmt.Sprintf("The `%s` address %s is not allowed: it is on the reject list.", f.name, normalize(a))
			}
		}
	}
	for _, t := range e.Tags {
		if !validTag(t.Name) || (t.Value != "" && !validTag(t.Value)) {
			return "Tags should only contain ASCII letters, numbers, underscores, or dashes, and be at most 256 characters."
		}
	}
	if batch && len(e.Attachments) > 0 && string(e.Attachments) != "null" {
		return "The `attachments` field is not supported in batch emails."
	}
	if batch && e.ScheduledAt != "" {
		return "The `scheduled_at` field is not supported in batch emails."
	}
	return ""
}

// validTag reports whether s is a valid tag name or value for Resend.
func validTag(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
