package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORS: with CORS_ALLOWED_ORIGINS set, a browser's preflight from an allowed origin is
// answered 204 with what it may send, and the answers to that origin carry
// Access-Control-Allow-Origin and expose the headers a client reads (Link among them);
// another origin, or a service without the setting (the default), gets no CORS header.
func TestCORS(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := startService(t, func(c *Config) { c.CORSAllowedOrigins = "https://APP.example.com/, https://admin.example.com" })
	plain := startService(t, nil)

	do := func(base, method, path, origin string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+"/mba/api/v1"+path, nil)
		req.Header.Set("Origin", origin)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "content-type,x-access-token,idempotency-key"}

	r := do(s.base, http.MethodOptions, "/bookings", app, preflight)
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("preflight from %s: %d, Allow-Origin %q", app, r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	allowH := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"content-type", "x-access-token", "idempotency-key", "authorization"} {
		if !strings.Contains(allowH, h) {
			t.Errorf("preflight allows headers %q, not %s", allowH, h)
		}
	}
	if !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "POST") || r.Header.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight: methods %q, max age %q", r.Header.Get("Access-Control-Allow-Methods"), r.Header.Get("Access-Control-Max-Age"))
	}
	if r.Header.Get("Access-Control-Allow-Credentials") == "true" {
		t.Error("credentials allowed: the API uses no cookies")
	}

	r = do(s.base, http.MethodGet, "/movies", app, nil)
	if r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("GET /movies from %s: %d, Allow-Origin %q", app, r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	if exp := strings.ToLower(r.Header.Get("Access-Control-Expose-Headers")); !strings.Contains(exp, "link") || !strings.Contains(exp, "retry-after") {
		t.Errorf("exposed headers %q lack Link or Retry-After", exp)
	}

	for _, c := range []struct{ base, origin, what string }{
		{s.base, "https://evil.example.com", "another origin"},
		{plain.base, app, "the default (no CORS_ALLOWED_ORIGINS)"},
	} {
		r = do(c.base, http.MethodOptions, "/bookings", c.origin, preflight)
		if v := r.Header.Get("Access-Control-Allow-Origin"); v != "" {
			t.Errorf("%s: preflight answered Allow-Origin %q", c.what, v)
		}
		r = do(c.base, http.MethodGet, "/movies", c.origin, nil)
		if v := r.Header.Get("Access-Control-Allow-Origin"); v != "" || r.StatusCode != 200 {
			t.Errorf("%s: GET answered %d, Allow-Origin %q", c.what, r.StatusCode, v)
		}
	}
}

// TestCORSOriginsChecked: an origin the middleware could not use refuses to start, naming
// the variable.
func TestCORSOriginsChecked(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"app.example.com", "https://app.example.com/path", "ftp://x.example", "*,https://a.example",
		"https://*", "https://a.*.example", "https://user@a.example", "https://a.example?x=1"} {
		cfg := testConfig(t)
		cfg.CORSAllowedOrigins = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") {
			t.Errorf("CORS_ALLOWED_ORIGINS=%q: %v", bad, err)
		}
	}
	for _, good := range []string{"", "*", "https://a.example, http://localhost:5173", "https://*.example.com"} {
		cfg := testConfig(t)
		cfg.CORSAllowedOrigins = good
		if err := cfg.Validate(); err != nil {
			t.Errorf("CORS_ALLOWED_ORIGINS=%q refused: %v", good, err)
		}
	}
}
