// Package httpapi is the core service's REST API on Fiber. Handlers only translate: they
// parse the request, call the subdomain (accounts, catalogue, booking), and write the
// envelope; every error goes through the one table in pkg/httpx.
package httpapi

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// BasePath is the prefix of every core route (the original service's path).
const BasePath = "/mba/api/v1"

// HeaderAccessToken is the original's token header; Authorization: Bearer works too.
const HeaderAccessToken = "x-access-token"

const callerKey = "core.caller"

// Services are the domain services the API translates to. Catalogue, Bookings and
// Payments may be nil (their routes are then not mounted).
type Services struct {
	Accounts  *accounts.Accounts
	Users     accounts.UserStore
	Catalogue *catalogue.Catalogue
	Bookings  *booking.Bookings
	// Idempotency keeps the first response of each Idempotency-Key (POST /bookings, /payments).
	Idempotency IdempotencyStore
}

// Options configure the API.
type Options struct {
	Logger *slog.Logger
	// AuthLimits bound sign-in, sign-up and password-change attempts (see AuthLimits).
	AuthLimits AuthLimits
	// TrustedProxies are the proxies whose X-Forwarded-For is believed for the client's
	// address (the per-address limits); none by default.
	TrustedProxies []netip.Prefix
	// Catalogue configures the catalogue routes' response cache.
	Catalogue CatalogueOptions
	// HTTP configures the shared server; Name defaults to "mba", Ready to store.Ping.
	HTTP httpx.Options
	// CORSOrigins are the browser origins allowed to call the API (see ParseCORSOrigins);
	// none by default, and then no CORS header is sent.
	CORSOrigins []string
}

// API holds the handlers.
type API struct {
	cacheOnce sync.Once
	cache     *ResponseCache
	svc       Services
	opts      Options
	acc       *accounts.Accounts
	log       *slog.Logger
	limits    *authLimits
}

// New builds the service's HTTP server with every route. Listen and Serve it.
func New(svc Services, opts Options) *httpx.Server {
	hopts := opts.HTTP
	if hopts.Name == "" {
		hopts.Name = "mba"
	}
	if hopts.Metrics == "" {
		hopts.Metrics = "core"
	}
	if hopts.Logger == nil {
		hopts.Logger = opts.Logger
	}
	if hopts.Ready == nil {
		hopts.Ready = svc.Users.Ping
	}
	srv := httpx.NewServer(hopts)
	opts.HTTP.Registry = srv.Registry
	Register(srv.App, svc, opts)
	return srv
}

// Register mounts the routes under BasePath.
func Register(app *fiber.App, svc Services, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var reg prometheus.Registerer
	if opts.HTTP.Registry != nil {
		reg = opts.HTTP.Registry
	}
	a := &API{svc: svc, opts: opts, acc: svc.Accounts, log: opts.Logger,
		limits: newAuthLimits(opts.AuthLimits, reg)}
	app.Hooks().OnShutdown(func() error { a.limits.stop(); return nil })
	if len(opts.CORSOrigins) > 0 {
		app.Use(BasePath, corsHandler(opts.CORSOrigins))
	}
	g := app.Group(BasePath)
	g.Post("/auth/signup", a.signUp)
	g.Post("/auth/signin", a.signIn)
	g.Patch("/auth/reset", a.Authenticate, a.reset)
	g.Patch("/user/:id", a.Authenticate, a.updateUser)
	if svc.Catalogue != nil {
		a.registerCatalogue(g)
	}
	if svc.Bookings != nil {
		a.registerBookings(g)
	}
	MountOpenAPI(app)
	return a
}

// Authenticate is the middleware of signed-in routes: it reads the token from
// x-access-token or Authorization: Bearer and puts the caller, loaded from the store, in the
// request (see Caller).
func (a *API) Authenticate(c *fiber.Ctx) error {
	tok := strings.TrimSpace(c.Get(HeaderAccessToken))
	if tok == "" {
		tok = httpx.BearerToken(c)
	}
	u, err := a.acc.Authenticate(c.UserContext(), tok)
	if err != nil {
		return err
	}
	c.Locals(callerKey, u)
	return c.Next()
}

// Caller is the signed-in user of the request (nil outside Authenticate).
func Caller(c *fiber.Ctx) *core.User {
	u, _ := c.Locals(callerKey).(*core.User)
	return u
}

// MaxAuthBodyBytes bounds the body of a sign-up, sign-in or password change (a few short
// fields): a larger one is a 413 before it is decoded, so that no unauthenticated request
// costs more than a small JSON decode before the limits see it. BODY_LIMIT still bounds
// every other route.
const MaxAuthBodyBytes = 16 << 10
