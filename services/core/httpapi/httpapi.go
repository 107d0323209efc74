// Package httpapi is the core service's REST API on Fiber (accounts part). Handlers only
// translate: they parse the request, call core.Accounts, and write the envelope; every error
// goes through the one table in pkg/httpx.
package httpapi

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
)

// BasePath is the prefix of every core route (the original service's path).
const BasePath = "/mba/api/v1"

// HeaderAccessToken is the original's token header; Authorization: Bearer works too.
const HeaderAccessToken = "x-access-token"

const callerKey = "core.caller"

// Services are the domain services the API translates to. Catalogue, Bookings and
// Payments may be nil (their routes are then not mounted).
type Services struct {
	Accounts  *core.Accounts
	Users     core.UserStore
	Catalogue *core.Catalogue
	Bookings  *core.Bookings
	// Idempotency keeps the first response of each Idempotency-Key (POST /bookings, /payments).
	Idempotency IdempotencyStore
}

// Options configure the API.
type Options struct {
	Logger *slog.Logger
	// SigninPerMinute and SigninBurst bound sign-in attempts per client IP and per email
	// (defaults 10 a minute, burst 5). SigninLimiterSize bounds each limiter map (10000).
	SigninPerMinute   float64
	SigninBurst       int
	SigninLimiterSize int
	// TrustedProxies are the proxies whose X-Forwarded-For is believed for the client's
	// address (sign-in rate limit per address); none by default.
	TrustedProxies []netip.Prefix
	// Catalogue configures the catalogue routes' response cache.
	Catalogue CatalogueOptions
	// HTTP configures the shared server; Name defaults to "mba", Ready to store.Ping.
	HTTP httpx.Options
}

// API holds the handlers.
type API struct {
	cacheOnce sync.Once
	cache     *ResponseCache
	svc       Services
	opts      Options
	acc       *core.Accounts
	log       *slog.Logger
	byIP      *limiters
	byEmail   *limiters
	now       func() time.Time
}

// New builds the service's HTTP server with every route. Listen and Serve it.
func New(svc Services, opts Options) *httpx.Server {
	hopts := opts.HTTP
	if hopts.Name == "" {
		hopts.Name = "mba"
	}
	if hopts.Logger == nil {
		hopts.Logger = opts.Logger
	}
	if hopts.Ready == nil {
		hopts.Ready = svc.Users.Ping
	}
	srv := httpx.NewServer(hopts)
	Register(srv.App, svc, opts)
	return srv
}

// Register mounts the routes under BasePath.
func Register(app *fiber.App, svc Services, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SigninPerMinute <= 0 {
		opts.SigninPerMinute = 10
	}
	if opts.SigninBurst <= 0 {
		opts.SigninBurst = 5
	}
	a := &API{svc: svc, opts: opts, acc: svc.Accounts, log: opts.Logger, now: time.Now,
		byIP:    newLimiters(opts.SigninPerMinute, opts.SigninBurst, opts.SigninLimiterSize),
		byEmail: newLimiters(opts.SigninPerMinute, opts.SigninBurst, opts.SigninLimiterSize)}
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

type signUpRequest struct {
	Name     string    `json:"name"`
	Email    string    `json:"email"`
	Password string    `json:"password"`
	UserRole core.Role `json:"userRole"`
}

func (a *API) signUp(c *fiber.Ctx) error {
	var req signUpRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	u, err := a.acc.SignUp(c.UserContext(), core.SignUp{Name: req.Name, Email: req.Email, Password: req.Password, Role: req.UserRole})
	if err != nil {
		return err
	}
	msg := "account created"
	if u.Status == core.StatusPending {
		msg = "account created; it waits for an admin's approval"
	}
	return httpx.OK(c, fiber.StatusCreated, u, msg)
}

type signInRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (a *API) signIn(c *fiber.Ctx) error {
	var req signInRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := a.limit(a.clientIP(c), strings.ToLower(strings.TrimSpace(req.Email))); err != nil {
		return err
	}
	s, err := a.acc.SignIn(c.UserContext(), req.Email, req.Password)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, s, "signed in")
}

// limit takes one attempt from the IP's and the email's limiters, or answers 429 with the
// wait in Retry-After (taking nothing).
func (a *API) limit(ip, email string) error {
	now := a.now()
	wait, undo := a.byIP.reserve("ip:"+ip, now)
	if wait == 0 && email != "" {
		var w2 time.Duration
		w2, _ = a.byEmail.reserve("email:"+email, now)
		if w2 > 0 {
			undo()
			wait = w2
		}
	}
	if wait > 0 {
		e := errs.E(errs.RateLimited, "too many sign-in attempts; try again later")
		e.RetryAfter = wait
		return e
	}
	return nil
}

type resetRequest struct {
	OldPassword string `json:"oldPassword"`
	NewPassword string `json:"newPassword"`
}

func (a *API) reset(c *fiber.Ctx) error {
	var req resetRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	// Guessing the old password through a stolen token is rate limited like sign-in.
	if wait, _ := a.byEmail.reserve("reset:"+Caller(c).ID, a.now()); wait > 0 {
		e := errs.E(errs.RateLimited, "too many password changes; try again later")
		e.RetryAfter = wait
		return e
	}
	if err := a.acc.ResetPassword(c.UserContext(), Caller(c), req.OldPassword, req.NewPassword); err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, nil, "password changed; sign in again (earlier tokens no longer work)")
}

type updateUserRequest struct {
	UserRole   *core.Role   `json:"userRole"`
	UserStatus *core.Status `json:"userStatus"`
}

func (a *API) updateUser(c *fiber.Ctx) error {
	caller := Caller(c)
	if !caller.Is(core.RoleAdmin) {
		return errs.E(errs.Forbidden, "only an approved admin can change users")
	}
	var req updateUserRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	u, err := a.acc.UpdateUser(c.UserContext(), caller, c.Params("id"), req.UserRole, req.UserStatus)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, u, "user updated")
}
