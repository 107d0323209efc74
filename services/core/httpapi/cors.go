package httpapi

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
)

// errCORSOrigins is the error of a CORS_ALLOWED_ORIGINS the API cannot use.
var errCORSOrigins = errors.New(`CORS_ALLOWED_ORIGINS must be a comma-separated list of origins ` +
	`(http:// or https:// and a host, with an optional port and a leading "*." for any subdomain; ` +
	`no path), or "*" alone for any origin`)

// ParseCORSOrigins reads CORS_ALLOWED_ORIGINS: the browser origins allowed to call the API
// (empty: none, and no CORS headers at all). Origins are normalised (lower case, no trailing
// slash).
func ParseCORSOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return nil, errCORSOrigins
		}
		host := strings.ToLower(u.Host)
		if strings.Contains(strings.TrimPrefix(host, "*."), "*") || strings.TrimPrefix(host, "*.") == "" {
			return nil, errCORSOrigins
		}
		out = append(out, u.Scheme+"://"+host)
	}
	if len(out) > 1 && slices.Contains(out, "*") {
		return nil, errCORSOrigins
	}
	return out, nil
}

// corsHandler lets the browsers of origins call the API: preflights (OPTIONS) are answered
// 204 with what they may send; answers expose the headers a client reads (paging, retries,
// caching, idempotency, the request id). No cookies are used, so no credentials are allowed.
func corsHandler(origins []string) fiber.Handler {
	return cors.New(cors.Config{
		AllowOrigins:  strings.Join(origins, ","),
		AllowMethods:  "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
		AllowHeaders:  "Content-Type,Authorization," + HeaderAccessToken + ",Idempotency-Key,If-None-Match,traceparent,tracestate",
		ExposeHeaders: "Link,Retry-After,ETag,Idempotent-Replayed,X-Request-Id,WWW-Authenticate",
		MaxAge:        600,
	})
}
