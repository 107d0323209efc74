package sweeper

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
)

// maxLoggedKinds bounds the provider failures one sweep logs one by one: the first failure of
// each kind (class, HTTP status, error name) is logged, up to this many kinds; the rest are
// counted and summarised when the sweep ends.
const maxLoggedKinds = 10

// providerError counts a failed provider request and logs it at WARN with what the provider
// said (HTTP status, error name, message), the first time this sweep meets its kind; repeats
// are only counted, and summariseProviderErrors reports them. The message never carries an
// email address (recipients are personal data) and the mailer has taken the API key out.
func (r *run) providerError(j *job, emails []Email, e *SendError) {
	class := e.Class()
	kind := string(class) + "|" + strconv.Itoa(e.Status) + "|" + e.Name
	r.mu.Lock()
	r.rep.ProviderErrors++
	r.rep.ProviderErrorsByClass[class]++
	if e.Kind == Permanent {
		r.rep.ProviderRejected++
	}
	first := !r.logged[kind] && len(r.logged) < maxLoggedKinds
	if first {
		r.logged[kind] = true
	} else {
		r.repeats++
	}
	r.mu.Unlock()
	if !first {
		return
	}
	attempt := j.batch.Attempts + 1
	r.s.cfg.Logger.Warn("mail provider request failed", "class", string(class), "status", e.Status, "error_name", e.Name,
		"message", redactAddresses(e.Message, emails), "batch", j.batch.ID, "attempt", attempt, "emails", len(emails),
		"next", r.next(e, attempt))
}

// next says what happens after a failed request of a batch's given attempt.
func (r *run) next(e *SendError, attempt int) string {
	switch e.Kind {
	case RateLimited:
		return "waits for retry-after, then sends again (not an attempt)"
	case InFlight:
		return "sends again under the same idempotency key"
	case Auth:
		return "the sweep stops: fix RESEND_API_KEY (no attempt is charged)"
	case Permanent:
		return "the batch's tickets are FAILED"
	}
	if attempt >= r.s.cfg.MaxAttempts {
		return fmt.Sprintf("gave up after %d attempts: the batch's tickets are FAILED", attempt)
	}
	return "a later sweep sends the batch again under the same idempotency key"
}

// summariseProviderErrors logs, at WARN, the sweep's failed provider requests by class and how
// many of them were not logged one by one.
func (r *run) summariseProviderErrors() {
	r.mu.Lock()
	rep, repeats := r.rep, r.repeats
	r.mu.Unlock()
	if rep.ProviderErrors == 0 {
		return
	}
	byClass := make([]any, 0, len(ErrorClasses))
	for _, c := range ErrorClasses {
		if n := rep.ProviderErrorsByClass[c]; n > 0 {
			byClass = append(byClass, slog.Int(string(c), n))
		}
	}
	r.s.cfg.Logger.Warn("mail provider requests failed in this sweep", "provider_errors", rep.ProviderErrors,
		slog.Group("by_class", byClass...), "requests", rep.Requests, "sent", rep.Sent, "not_logged_repeats", repeats,
		"provider_failing", rep.ProviderFailing())
}

// errorClasses renders the report's failed requests by class, e.g. "5xx: 3, timeout: 1".
func (r Report) errorClasses() string {
	var parts []string
	for _, c := range ErrorClasses {
		if n := r.ProviderErrorsByClass[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", c, n))
		}
	}
	return strings.Join(parts, ", ")
}

var addressPattern = regexp.MustCompile(`[^\s<>()\[\],;:"'` + "`" + `]+@[^\s<>()\[\],;:"'` + "`" + `]+`)

// redactAddresses takes every email address out of a provider's message: the recipients of
// the request (in any case) and anything else shaped like an address.
func redactAddresses(msg string, emails []Email) string {
	var quoted []string
	for _, e := range emails {
		for _, to := range e.To {
			if to = strings.TrimSpace(to); to != "" {
				quoted = append(quoted, regexp.QuoteMeta(to))
			}
		}
	}
	if len(quoted) > 0 {
		if re, err := regexp.Compile("(?i)" + strings.Join(quoted, "|")); err == nil {
			msg = re.ReplaceAllLiteralString(msg, "[address]")
		}
	}
	return addressPattern.ReplaceAllLiteralString(msg, "[address]")
}
