package httpx_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
)

// TestIdempotencyKey: absent is "", 1 to 255 printable ASCII characters are the key, and
// anything else (empty, too long, control or non-ASCII bytes) is Invalid on the header.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	app := fiber.New()
	app.Get("/", func(c *fiber.Ctx) error {
		key, err := httpx.IdempotencyKey(c)
		if err != nil {
			var e *errs.Error
			if !errs.Is(err, errs.Invalid) || !errors.As(err, &e) || e.Fields[httpx.HeaderIdempotencyKey] != "must be 1 to 255 printable ASCII characters" {
				t.Errorf("error %#v", err)
			}
			return c.SendString("invalid")
		}
		return c.SendString("key:" + key)
	})
	for _, tc := range []struct {
		name string
		key  *string
		want string
	}{
		{"absent", nil, "key:"},
		{"one", ptr("a"), "key:a"},
		{"255", ptr(strings.Repeat("k", 255)), "key:" + strings.Repeat("k", 255)},
		{"punctuation", ptr("order 42 / confirmation ~!@#"), "key:order 42 / confirmation ~!@#"},
		{"256", ptr(strings.Repeat("k", 256)), "invalid"},
		{"empty", ptr(""), "invalid"},
		{"non-ASCII", ptr("ключ"), "invalid"},
		{"tab", ptr("a\tb"), "invalid"},
		{"DEL", ptr("a\x7fb"), "invalid"},
	} {
		req, _ := http.NewRequest("GET", "/", nil)
		if tc.key != nil {
			req.Header[httpx.HeaderIdempotencyKey] = []string{*tc.key}
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, b, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }
