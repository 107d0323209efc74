package httpx

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
)

// HeaderIdempotencyKey names the key of an idempotent POST: the same key twice is one request.
const HeaderIdempotencyKey = "Idempotency-Key"

// MaxIdempotencyKey is the length limit of an Idempotency-Key.
const MaxIdempotencyKey = 255

// IdempotencyKey returns the Idempotency-Key header ("" when absent): 1 to 255 printable
// ASCII characters, else Invalid with the header as the field. A header sent empty is
// invalid, not absent.
func IdempotencyKey(c *fiber.Ctx) (string, error) {
	raw := c.Request().Header.Peek(HeaderIdempotencyKey)
	if len(raw) == 0 {
		present := false
		c.Request().Header.VisitAll(func(k, _ []byte) {
			if strings.EqualFold(string(k), HeaderIdempotencyKey) {
				present = true
			}
		})
		if present {
			return "", badIdempotencyKey()
		}
		return "", nil
	}
	if len(raw) > MaxIdempotencyKey {
		return "", badIdempotencyKey()
	}
	for _, b := range raw {
		if b < 0x20 || b > 0x7e {
			return "", badIdempotencyKey()
		}
	}
	return string(raw), nil // a copy: fasthttp reuses its buffers
}

func badIdempotencyKey() error {
	return errs.Fields(map[string]string{HeaderIdempotencyKey: "must be 1 to 255 printable ASCII characters"})
}
