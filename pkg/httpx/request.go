package httpx

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
)

// DecodeJSON decodes the request body into dst. It answers Invalid with a message that names
// the offending field for malformed JSON, wrong types, and trailing data. (An encoded body
// never gets here: the server's guardBody refuses it with 415, before any handler runs.)
func DecodeJSON(c *fiber.Ctx, dst any) error {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return errs.E(errs.Invalid, "request body is empty; send a JSON object")
	}
	ct := strings.ToLower(c.Get(fiber.HeaderContentType))
	if ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.Contains(ct, "+json") {
		return errs.E(errs.Invalid, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errs.E(errs.Invalid, "request body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return errs.E(errs.Invalid, "request body must be a JSON object")
		}
		return errs.Fields(map[string]string{field: fmt.Sprintf("must be %s", jsonKind(te.Type.Kind().String()))})
	case errors.As(err, &se):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "malformed JSON: unexpected end of input")
	default:
		return errs.E(errs.Invalid, "malformed JSON")
	}
}

func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	default:
		return "a number"
	}
}

// QueryInt reads an integer query parameter within [min, max], def when absent.
func QueryInt(c *fiber.Ctx, name string, def, min, max int) (int, error) {
	raw := c.Query(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, errs.Fields(map[string]string{name: fmt.Sprintf("must be a whole number from %d to %d", min, max)})
	}
	return n, nil
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header, or "".
func BearerToken(c *fiber.Ctx) string {
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// RequireBearer refuses requests whose bearer token is not token (compared in constant
// time). An empty token disables the check.
func RequireBearer(token string) fiber.Handler {
	want := []byte(token)
	return func(c *fiber.Ctx) error {
		if token == "" {
			return c.Next()
		}
		got := BearerToken(c)
		if got == "" {
			return errs.E(errs.Unauthorized, "missing bearer token: send Authorization: Bearer <token>")
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return errs.E(errs.Unauthorized, "invalid bearer token")
		}
		return c.Next()
	}
}
