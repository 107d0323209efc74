package httpx_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
)

// TestErrorCodes: every failure carries a machine-readable code beside error (the error's
// reason, else its errs code, else the status's), none on success; every 429 and 503 carries
// Retry-After (the error's, else a default).
func TestErrorCodes(t *testing.T) {
	s := httpx.NewServer(httpx.Options{Name: "test", BodyLimit: 1024})
	s.App.Get("/e/:what", func(c *fiber.Ctx) error {
		switch c.Params("what") {
		case "seat":
			return errs.E(errs.Conflict, "seat A1 is taken").Because("seat_taken")
		case "plain":
			return errs.E(errs.Conflict, "already decided")
		case "slow":
			return errs.E(errs.RateLimited, "slow down")
		case "wait":
			return errs.E(errs.RateLimited, "slow down").After(90 * time.Second)
		case "down":
			return errs.E(errs.Unavailable, "database unavailable")
		case "bug":
			return errors.New("boom")
		}
		return httpx.OK(c, 200, fiber.Map{"ok": true}, "fine")
	})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background(), 0) })
	for _, c := range []struct {
		path, code string
		status     int
		retryAfter string
	}{
		{"/e/fine", "", 200, ""},
		{"/e/seat", "seat_taken", 409, ""},
		{"/e/plain", "conflict", 409, ""},
		{"/e/slow", "rate_limited", 429, "1"},
		{"/e/wait", "rate_limited", 429, "90"},
		{"/e/down", "unavailable", 503, "1"},
		{"/e/bug", "internal", 500, ""},
		{"/nowhere", "not_found", 404, ""},
	} {
		resp, err := http.Get("http://" + s.Addr() + c.path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var env map[string]json.RawMessage
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("%s: %s", c.path, raw)
		}
		var code string
		if v, ok := env["code"]; ok {
			_ = json.Unmarshal(v, &code)
			if c.code == "" {
				t.Errorf("%s: a success carries a code: %s", c.path, raw)
			}
		}
		if resp.StatusCode != c.status || code != c.code || resp.Header.Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: %d code %q Retry-After %q; want %d %q %q (%s)", c.path, resp.StatusCode, code,
				resp.Header.Get("Retry-After"), c.status, c.code, c.retryAfter, raw)
		}
	}
}
