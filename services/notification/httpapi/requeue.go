package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/notification"
)

// RequeuePath is the bulk re-queue's route under BasePath.
const RequeuePath = "/requeue"

// The body of POST /requeue: a JSON object of these fields, every one optional but
// failedSince. A field it does not know (names are matched exactly) is refused, so that a
// misspelt filter never widens a re-queue.
const (
	fieldFailedSince    = "failedSince"
	fieldFailedUntil    = "failedUntil"
	fieldReasonContains = "reasonContains"
	fieldLimit          = "limit"
	fieldCursor         = "cursor"
	fieldDryRun         = "dryRun"
)

// requeueFields lists the body's fields, as the refusal of an unknown one names them.
var requeueFields = []string{fieldFailedSince, fieldFailedUntil, fieldReasonContains, fieldLimit, fieldCursor, fieldDryRun}

// ParseRequeueRequest reads the body of POST /requeue into a validated filter (times in
// RFC 3339, kept in UTC; limit defaulted). The error, if any, is Invalid, with a reason per
// field where fields are at fault.
func ParseRequeueRequest(body []byte) (notification.RequeueFilter, error) {
	var f notification.RequeueFilter
	if len(bytes.TrimSpace(body)) == 0 {
		return f, errs.E(errs.Invalid, "request body is empty; send a JSON object with at least failedSince")
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return f, requeueJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return f, errs.E(errs.Invalid, "request body must hold a single JSON object")
	}
	fields := map[string]string{}
	for name := range raw {
		if !slices.Contains(requeueFields, name) {
			if len(name) > 64 || !utf8.ValidString(name) {
				return f, errs.E(errs.Invalid, "request body has a field that is not one of %s", strings.Join(requeueFields, ", "))
			}
			fields[name] = "is not a field of this request (" + strings.Join(requeueFields, ", ") + ")"
		}
	}
	// field decodes the field name (absent or null: left as it is) into v.
	field := func(name string, v any, want string) bool {
		r, ok := raw[name]
		if !ok || string(r) == "null" {
			return false
		}
		if err := json.Unmarshal(r, v); err != nil {
			fields[name] = "must be " + want
			return false
		}
		return true
	}
	readTime := func(name string) time.Time {
		const want = "a time in RFC 3339, e.g. 2030-06-01T18:30:00Z"
		var s string
		if !field(name, &s, want) {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			fields[name] = "must be " + want
			return time.Time{}
		}
		return t.UTC()
	}
	f.FailedSince = readTime(fieldFailedSince)
	f.FailedUntil = readTime(fieldFailedUntil)
	field(fieldReasonContains, &f.ReasonContains, "a string")
	limitRange := fmt.Sprintf("an integer from 1 to %d", notification.MaxRequeueLimit)
	if field(fieldLimit, &f.Limit, limitRange) && f.Limit < 1 {
		fields[fieldLimit] = "must be " + limitRange
	}
	if field(fieldCursor, &f.Cursor, "a string") && !validRequeueCursor(f.Cursor) {
		fields[fieldCursor] = "must be the next of an earlier answer"
	}
	field(fieldDryRun, &f.DryRun, "true or false")
	if err := f.Validate(); err != nil {
		var e *errs.Error
		if !errors.As(err, &e) || e.Fields == nil {
			return f, err
		}
		for k, v := range e.Fields {
			if _, ok := fields[k]; !ok {
				fields[k] = v
			}
		}
	}
	if len(fields) > 0 {
		return f, errs.Fields(fields)
	}
	return f, nil
}

// validRequeueCursor reports whether c looks like a cursor the store made ("r" and an
// integer); the store reads it.
func validRequeueCursor(c string) bool {
	if len(c) < 2 || len(c) > notification.MaxRequeueCursor || c[0] != 'r' {
		return false
	}
	for i, b := range []byte(c[1:]) {
		if !(b >= '0' && b <= '9' || b == '-' && i == 0) {
			return false
		}
	}
	return true
}

// requeueJSONError says what is wrong with a body that is not a JSON object.
func requeueJSONError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return errs.E(errs.Invalid, "request body must be a JSON object")
	case errors.As(err, &se):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "malformed JSON: unexpected end of input")
	}
	return errs.E(errs.Invalid, "malformed JSON")
}

// requeueFailed answers POST /requeue: re-queue the FAILED tickets the body selects, each as
// POST /:id/retry would, and say how many (see notification.RequeueReport). The same request
// again re-queues nothing more: the tickets it re-queued are no longer FAILED.
func (a *API) requeueFailed(c *fiber.Ctx) error {
	var raw json.RawMessage
	if err := httpx.DecodeJSON(c, &raw); err != nil {
		return err
	}
	f, err := ParseRequeueRequest(raw)
	if err != nil {
		return err
	}
	rep, err := a.store.RequeueFailed(c.UserContext(), f)
	if err != nil {
		return err
	}
	a.log.InfoContext(c.UserContext(), "bulk requeue", "failed_since", f.FailedSince, "failed_until", f.FailedUntil,
		"reason_contains", f.ReasonContains, "limit", f.Limit, "dry_run", f.DryRun, "requeued", rep.Requeued,
		"matched", rep.Matched, "examined", rep.Examined, "more", rep.More)
	msg := fmt.Sprintf("%d tickets re-queued", rep.Requeued)
	if f.DryRun {
		msg = fmt.Sprintf("%d tickets match (dry run: none re-queued)", rep.Matched)
	}
	if rep.More {
		msg += "; more may match: send the request again with cursor set to next"
	}
	return httpx.OK(c, fiber.StatusOK, rep, msg)
}
