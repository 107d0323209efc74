package sweeper

import (
	"context"
	"fmt"
	"time"
)

// MaxBatch is the most emails one provider request may carry (Resend's batch limit).
const MaxBatch = 100

// Email is one message of a send. TicketID travels with it (as a tag) so that the provider's
// records, and the test fake, can tell which ticket an email belongs to.
type Email struct {
	TicketID string
	From     string
	To       []string
	Subject  string
	Text     string
}

// Outcome is what the provider said of one email of a successful request: its message id,
// or why it refused that email for good.
type Outcome struct {
	MessageID string
	Rejected  string
}

// Mailer sends emails through a provider.
type Mailer interface {
	// Send delivers emails (1 to MaxBatch) in one request that carries idempotencyKey: the
	// same key and emails sent again are delivered once. On success it returns one Outcome per
	// email, in order. On failure the error is a *SendError saying what may be done next.
	Send(ctx context.Context, idempotencyKey string, emails []Email) ([]Outcome, error)
}

// ErrorKind says what a failed send means for the tickets in it.
type ErrorKind int

const (
	// Transient: timeout, network error or 5xx. The provider may or may not have accepted
	// the emails; send the same request again later with the same key.
	Transient ErrorKind = iota
	// RateLimited: 429; nothing was sent. Wait RetryAfter, then send again.
	RateLimited
	// InFlight: 409 concurrent_idempotent_requests; a request with this key is still being
	// processed. Try again later (the key makes it safe).
	InFlight
	// Permanent: the provider refused the request for good (validation, 4xx).
	Permanent
	// Auth: the provider refused our credentials. Nothing will succeed until an operator
	// fixes the configuration; tickets are not charged an attempt.
	Auth
)

func (k ErrorKind) String() string {
	switch k {
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case InFlight:
		return "in_flight"
	case Permanent:
		return "permanent"
	case Auth:
		return "auth"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// SendError is a failed send, classified.
type SendError struct {
	Kind       ErrorKind
	Status     int           // HTTP status, 0 for network errors and timeouts
	Name       string        // the provider's error name, e.g. "validation_error"
	Message    string        // the provider's message (never contains the API key)
	RetryAfter time.Duration // from retry-after, for RateLimited
	Timeout    bool          // no answer within the time allowed (Status 0)
}

// ErrorClass is how a failed provider request is counted in the sweep's figures: by what the
// provider answered.
type ErrorClass string

const (
	Class429     ErrorClass = "429"     // rate limited
	Class4xx     ErrorClass = "4xx"     // any other 4xx (a refused key or request), or refused for good without one
	Class5xx     ErrorClass = "5xx"     // the provider failed
	ClassTimeout ErrorClass = "timeout" // no answer in time
	ClassNetwork ErrorClass = "network" // no answer at all (connection refused, reset, DNS), or an answer that could not be read
)

// ErrorClasses lists every ErrorClass, in the order the figures show them.
var ErrorClasses = []ErrorClass{Class429, Class4xx, Class5xx, ClassTimeout, ClassNetwork}

// Class returns the class the failed request is counted under.
func (e *SendError) Class() ErrorClass {
	switch {
	case e.Status == 429:
		return Class429
	case e.Status >= 500:
		return Class5xx
	case e.Status >= 400, e.Kind == Auth, e.Kind == Permanent:
		return Class4xx
	case e.Timeout:
		return ClassTimeout
	default:
		return ClassNetwork
	}
}

func (e *SendError) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("%s: %s", e.Kind, e.Message)
	case e.Name != "":
		return fmt.Sprintf("%s: HTTP %d %s: %s", e.Kind, e.Status, e.Name, e.Message)
	default:
		return fmt.Sprintf("%s: HTTP %d: %s", e.Kind, e.Status, e.Message)
	}
}
