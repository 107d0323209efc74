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
// X-Forwarded-For may come as several header lines (each proxy may add its own): they are one
// list, in order, so the right-most untrusted hop is in the last line that has one; fasthttp's
// Peek would return only the first line, which the client wrote.
func TestClientIP(t *testing.T) {
	cases := []struct {
		name, trusted string
		xff           []string // header lines
		want          string
	}{
		{"no proxies: the header is ignored", "", []string{"1.2.3.4"}, "0.0.0.0"},
		{"untrusted peer: the header is ignored", "10.0.0.0/8", []string{"1.2.3.4"}, "0.0.0.0"},
		{"trusted peer: the last hop", "0.0.0.0/32", []string{"1.2.3.4"}, "1.2.3.4"},
		{"a spoofed left part does not count", "0.0.0.0/32,10.0.0.0/8", []string{"6.6.6.6, 1.2.3.4, 10.1.1.1"}, "1.2.3.4"},
		{"malformed hop: stop there", "0.0.0.0/32,10.0.0.0/8", []string{"1.2.3.4, garbage, 10.1.1.1"}, "10.1.1.1"},
		{"no header", "0.0.0.0/32", nil, "0.0.0.0"},
		{"two lines: the spoofed first line does not count", "0.0.0.0/32", []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4"},
		{"three lines, spoofed hops left and in the middle", "0.0.0.0/32,10.0.0.0/8",
			[]string{"6.6.6.6, 7.7.7.7", "8.8.8.8, 1.2.3.4", "10.0.0.9"}, "1.2.3.4"},
		{"last line all proxies: the hop before them", "0.0.0.0/32,10.0.0.0/8",
			[]string{"6.6.6.6", "1.2.3.4", "10.0.0.2, 10.0.0.1"}, "1.2.3.4"},
		{"a malformed line stops the walk", "0.0.0.0/32,10.0.0.0/8", []string{"1.2.3.4", "nonsense", "10.0.0.1"}, "10.0.0.1"},
		{"IPv4-mapped IPv6 hop", "0.0.0.0/32", []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"IPv6 hop", "0.0.0.0/32", []string{"6.6.6.6", "2001:db8::1"}, "2001:db8::1"},
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
			app.Get("/", func(ctx *fiber.Ctx) error { got = a.clientIP(ctx).String(); return nil })
			r := httptest.NewRequest("GET", "/", nil)
			for _, line := range c.xff {
				r.Header.Add("X-Forwarded-For", line)
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
