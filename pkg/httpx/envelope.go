// Package httpx is the HTTP side every service shares: the response envelope, the one
// error-to-status table in use, and a Fiber app with recovery, request ids, body limits,
// timeouts, metrics, tracing, health endpoints and graceful shutdown.
package httpx

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Envelope is the body of every JSON response.
type Envelope struct {
	Success bool `json:"success"`
	Error   any  `json:"error"`
	// Code is a failure's stable machine-readable code (the error's Reason, else its
	// errs.Code: "seat_taken", "email_taken", "key_in_progress", "rate_limited" …); absent on
	// success.
	Code    string `json:"code,omitempty"`
	Data    any    `json:"data"`
	Message string `json:"message"`
}

// defaultRetryAfter is the Retry-After of a 429 or 503 whose error says no better.
const defaultRetryAfter = time.Second

var empty = struct{}{}

// OK writes a successful envelope with the given status.
func OK(c *fiber.Ctx, status int, data any, message string) error {
	if data == nil {
		data = empty
	}
	return c.Status(status).JSON(Envelope{Success: true, Error: empty, Data: data, Message: message})
}

// Fail writes a failed envelope; reason is a string or a map of field -> reason. Its code is
// the errs code of status; a 429 or 503 without a Retry-After gets one.
func Fail(c *fiber.Ctx, status int, reason any, message string) error {
	return fail(c, status, string(errs.CodeForStatus(status)), reason, empty, message)
}

func fail(c *fiber.Ctx, status int, code string, reason, data any, message string) error {
	if (status == fiber.StatusTooManyRequests || status == fiber.StatusServiceUnavailable) && c.GetRespHeader(fiber.HeaderRetryAfter) == "" {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(defaultRetryAfter.Seconds())))
	}
	if data == nil {
		data = empty
	}
	return c.Status(status).JSON(Envelope{Success: false, Error: reason, Code: code, Data: data, Message: message})
}

// ErrorHandler turns any error returned by a handler into an envelope. Coded errors keep
// their message; anything else is a 500 with a generic message, logged and counted.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var ae *errs.Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
		status := errs.Status(ae.Code)
		if ae.RetryAfter > 0 {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(ae.RetryAfter.Seconds()+0.999)))
		}
		if status >= 500 {
			s.log.ErrorContext(c.UserContext(), "request failed", "code", string(ae.Code), "error", err.Error(),
				"route", c.Route().Path, "request_id", requestID(c))
		}
		if ae.Code == errs.Unauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="cineflow"`)
		}
		var reason any = ae.Message
		if len(ae.Fields) > 0 {
			reason = ae.Fields
		}
		return fail(c, status, errs.Answer(ae), reason, ae.Data, ae.Message)
	case errors.As(err, &fe):
		msg := fe.Message
		switch {
		case fe.Code == fiber.StatusNotFound && strings.HasPrefix(msg, "Cannot "):
			msg = "route not found"
		case fe.Code == fiber.StatusMethodNotAllowed:
			msg = "method not allowed"
		case fe.Code == fiber.StatusRequestEntityTooLarge:
			msg = "request body too large"
		case fe.Code >= 500:
			s.internalErrors.Inc()
			s.log.ErrorContext(c.UserContext(), "request failed", "status", fe.Code, "error", fe.Message,
				"request_id", requestID(c))
			msg = "internal error"
		}
		return fail(c, fe.Code, string(errs.CodeForStatus(fe.Code)), msg, nil, msg)
	default:
		s.internalErrors.Inc()
		s.log.ErrorContext(c.UserContext(), "unexpected error", "error", err.Error(), "route", c.Route().Path,
			"method", c.Method(), "request_id", requestID(c))
		return fail(c, fiber.StatusInternalServerError, string(errs.Internal), "internal error", nil, "internal error")
	}
}

func requestID(c *fiber.Ctx) string {
	return c.GetRespHeader(fiber.HeaderXRequestID)
}

// Logger returns a logger that carries the request id.
func Logger(c *fiber.Ctx, base *slog.Logger) *slog.Logger {
	return base.With("request_id", requestID(c))
}
