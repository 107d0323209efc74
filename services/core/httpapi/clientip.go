package httpapi

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// ParseTrustedProxies parses TRUSTED_PROXIES: comma-separated IP addresses or CIDR ranges of the
// proxies (load balancers, ingress controllers) in front of the service.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %q is neither an IP address nor a CIDR range", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// clientIP is the address the request came from, for rate limits. Behind trusted proxies it
// is the right-most address of X-Forwarded-For that is not a trusted proxy: the left part of
// that header is whatever the client wrote, so only what the proxies appended counts. A
// header sent as several lines is one list, the lines in order (RFC 9110, section 5.3). A
// request straight from an untrusted address is that address, whatever its headers say.
func (a *API) clientIP(c *fiber.Ctx) netip.Addr {
	remote, ok := netip.AddrFromSlice(c.Context().RemoteIP())
	remote = remote.Unmap()
	if !ok || len(a.opts.TrustedProxies) == 0 || !trusted(a.opts.TrustedProxies, remote) {
		return remote
	}
	lines := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	for l := len(lines) - 1; l >= 0; l-- {
		hops := strings.Split(string(lines[l]), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				return remote // a malformed hop: trust nothing left of it
			}
			hop = hop.Unmap()
			if !trusted(a.opts.TrustedProxies, hop) {
				return hop
			}
			remote = hop
		}
	}
	return remote // every hop is a proxy: the left-most proxy
}
