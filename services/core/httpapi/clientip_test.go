package httpapi

import (
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.168.1.7 ,,::1")
	if err != nil || len(got) != 3 || got[1].String() != "192.168.1.7/32" || got[2].String() != "::1/128" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,nonsense"); err == nil {
		t.Fatal("nonsense accepted")
	}
}

// TestClientIP: the address a rate limit sees. app.Test's requests come from 0.0.0.0.
func TestClientIP(t *testing.T) {
	cases := []struct {
		name, trusted, xff, want string
	}{
		{"no proxies: the header is ignored", "", "1.2.3.4", "0.0.0.0"},
		{"untrusted peer: the header is ignored", "10.0.0.0/8", "1.2.3.4", "0.0.0.0"},
		{"trusted peer: the last hop", "0.0.0.0/32", "1.2.3.4", "1.2.3.4"},
		{"a spoofed left part does not count", "0.0.0.0/32,10.0.0.0/8", "6.6.6.6, 1.2.3.4, 10.1.1.1", "1.2.3.4"},
		{"malformed hop: stop there", "0.0.0.0/32,10.0.0.0/8", "1.2.3.4, garbage, 10.1.1.1", "10.1.1.1"},
		{"no header", "0.0.0.0/32", "", "0.0.0.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proxies, err := ParseTrustedProxies(c.trusted)
			if err != nil {
				t.Fatal(err)
			}
			a := &API{opts: Options{TrustedProxies: proxies}}
			app := fiber.New()
			var got string
			app.Get("/", func(ctx *fiber.Ctx) error { got = a.clientIP(ctx); return nil })
			r := httptest.NewRequest("GET", "/", nil)
			if c.xff != "" {
				r.Header.Set("X-Forwarded-For", c.xff)
			}
			if _, err := app.Test(r); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("client %q, want %q", got, c.want)
			}
		})
	}
}
