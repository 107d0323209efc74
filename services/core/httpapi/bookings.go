package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// Idempotency headers of POST /bookings and POST /payments.
const (
	HeaderIdempotencyKey   = httpx.HeaderIdempotencyKey
	HeaderIdempotentReplay = "Idempotent-Replayed"
	defaultListLimit       = 50
	maxListLimit           = 500
	maxListSkip            = 100000
)

// IdempotencyStore keeps the first response of each Idempotency-Key.
type IdempotencyStore = core.IdempotencyStore

// registerBookings mounts the booking, seat map and payment routes.
func (a *API) registerBookings(g fiber.Router) {
	g.Post("/bookings", a.Authenticate, a.idempotent("bookings", a.createBooking))
	g.Get("/bookings", a.Authenticate, a.listBookings(false))
	g.Get("/bookings/all", a.Authenticate, a.listBookings(true))
	g.Get("/bookings/:id", a.Authenticate, a.getBooking)
	g.Patch("/bookings/:id", a.Authenticate, a.patchBooking)
	g.Post("/payments", a.Authenticate, a.idempotent("payments", a.pay))
	g.Get("/payments", a.Authenticate, a.listPayments)
	g.Get("/payments/:id", a.Authenticate, a.getPayment)
	g.Get("/shows/:id/seats", a.seatMap)
}

type bookingRequest struct {
	TheatreID string   `json:"theatreId"`
	MovieID   string   `json:"movieId"`
	Timing    string   `json:"timing"`
	NoOfSeats int      `json:"noOfSeats"`
	Seats     []string `json:"seats"`
}

// serverOwned are fields a client may never set; a body that names one is refused, so a
// client learns that its value was not taken.
var serverOwned = []string{"_id", "id", "userId", "status", "totalCost", "expiresAt", "paymentId", "createdAt", "updatedAt", "showId"}

func refuseServerOwned(body []byte) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil // DecodeJSON reports the malformed body
	}
	var given []string
	for k := range m {
		// encoding/json matches names case-insensitively: so does the refusal.
		if i := slices.IndexFunc(serverOwned, func(o string) bool { return strings.EqualFold(o, k) }); i >= 0 {
			given = append(given, serverOwned[i])
		}
	}
	return core.ServerOwnedFields(given...)
}

func (a *API) createBooking(c *fiber.Ctx) error {
	var req bookingRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := refuseServerOwned(c.Body()); err != nil {
		return err
	}
	bk, err := a.svc.Bookings.Book(c.UserContext(), Caller(c), booking.BookingRequest{TheatreID: req.TheatreID,
		MovieID: req.MovieID, Timing: req.Timing, NoOfSeats: req.NoOfSeats, Seats: req.Seats})
	if err != nil {
		return err
	}
	a.invalidateSeats(bk.ShowID)
	c.Location(BasePath + "/bookings/" + bk.ID)
	if bk.Status == core.BookingPaid { // a free show's booking, confirmed at once
		return httpx.OK(c, fiber.StatusCreated, bk, "booking confirmed: the show is free")
	}
	return httpx.OK(c, fiber.StatusCreated, bk, "seats held until "+bk.ExpiresAt.Format("2006-01-02T15:04:05Z07:00")+"; pay before then")
}

// listPage reads a list's page: limit (1 to 500, default 50), skip (as the original took it)
// and before, the cursor a Link rel="next" carries.
func listPage(c *fiber.Ctx) (core.ListPage, error) {
	limit, err := httpx.QueryInt(c, "limit", defaultListLimit, 1, maxListLimit)
	if err != nil {
		return core.ListPage{}, err
	}
	skip, err := httpx.QueryInt(c, "skip", 0, 0, maxListSkip)
	if err != nil {
		return core.ListPage{}, err
	}
	before := c.Query("before")
	if len(before) > maxCursor || strings.IndexFunc(before, func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9') }) >= 0 {
		return core.ListPage{}, errs.Fields(map[string]string{"before": "is not a cursor of this list: follow the Link rel=\"next\" of the previous page"})
	}
	return core.ListPage{Limit: limit, Skip: skip, Before: strings.Clone(before)}, nil
}

// maxCursor bounds the before parameter (the cursors the lists write are short).
const maxCursor = 32

// linkNext sets the Link header (RFC 8288) to the next page of the list when there is one:
// the same route and limit, from the cursor next (skip is spent: the cursor is past it).
func linkNext(c *fiber.Ctx, pg core.ListPage, next string, keep ...string) {
	if next == "" {
		return
	}
	q := url.Values{}
	for _, k := range keep {
		if v := c.Query(k); v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(pg.Limit))
	q.Set("before", next)
	c.Set(fiber.HeaderLink, "<"+c.Route().Path+"?"+q.Encode()+`>; rel="next"`) // the route's own path, as mounted
}

func (a *API) listBookings(all bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		pg, err := listPage(c)
		if err != nil {
			return err
		}
		list, next, err := a.svc.Bookings.List(c.UserContext(), Caller(c), all, pg)
		if err != nil {
			return err
		}
		if list == nil {
			list = []core.Booking{}
		}
		linkNext(c, pg, next)
		return httpx.OK(c, fiber.StatusOK, list, "bookings")
	}
}

func (a *API) getBooking(c *fiber.Ctx) error {
	bk, err := a.svc.Bookings.Get(c.UserContext(), Caller(c), c.Params("id"))
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, bk, "booking")
}

type patchBookingRequest struct {
	Status core.BookingStatus `json:"status"`
}

// patchBooking only cancels: a booking's other fields are fixed once its seats are held, and
// its status moves otherwise only by payment or expiry.
func (a *API) patchBooking(c *fiber.Ctx) error {
	var req patchBookingRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(c.Body(), &m)
	f := map[string]string{}
	for k := range m {
		if k != "status" {
			f[k] = "cannot be changed: a booking can only be cancelled ({\"status\": \"CANCELLED\"})"
		}
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	switch req.Status {
	case core.BookingCancelled:
	case "":
		return errs.Fields(map[string]string{"status": "is required: CANCELLED"})
	case core.BookingPaid, core.BookingExpired, core.BookingInProcess:
		return errs.E(errs.Forbidden, "a booking's status can only be set to CANCELLED; it is paid through POST /payments")
	default:
		return errs.Fields(map[string]string{"status": "must be CANCELLED"})
	}
	bk, err := a.svc.Bookings.Cancel(c.UserContext(), Caller(c), c.Params("id"))
	if err != nil {
		return err
	}
	a.invalidateSeats(bk.ShowID)
	return httpx.OK(c, fiber.StatusOK, bk, "booking cancelled; its seats are back on sale")
}

type paymentRequest struct {
	BookingID string  `json:"bookingId"`
	Amount    float64 `json:"amount"`
}

// paidBooking is the answer of a payment: the booking, now SUCCESSFULL, and its payment.
type paidBooking struct {
	*core.Booking
	Payment *core.Payment `json:"payment"`
}

func (a *API) pay(c *fiber.Ctx) error {
	var req paymentRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := refuseServerOwned(c.Body()); err != nil {
		return err
	}
	p, bk, err := a.svc.Bookings.Pay(c.UserContext(), Caller(c), booking.PaymentRequest{BookingID: req.BookingID, Amount: req.Amount},
		httpx.TraceParent(c.UserContext()))
	if err != nil {
		return err
	}
	a.invalidateSeats(bk.ShowID)
	return httpx.OK(c, fiber.StatusOK, paidBooking{Booking: bk, Payment: p}, "payment successful; a confirmation email is on its way")
}

func (a *API) listPayments(c *fiber.Ctx) error {
	pg, err := listPage(c)
	if err != nil {
		return err
	}
	all := c.QueryBool("all", false)
	list, next, err := a.svc.Bookings.ListPayments(c.UserContext(), Caller(c), all, pg)
	if err != nil {
		return err
	}
	if list == nil {
		list = []core.Payment{}
	}
	linkNext(c, pg, next, "all")
	return httpx.OK(c, fiber.StatusOK, list, "payments")
}

func (a *API) getPayment(c *fiber.Ctx) error {
	p, err := a.svc.Bookings.GetPayment(c.UserContext(), Caller(c), c.Params("id"))
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, p, "payment")
}

func (a *API) seatMap(c *fiber.Ctx) error {
	id := c.Params("id")
	if !core.IsID(id) {
		return errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	ttl := min(a.ResponseCache().TTL(), SeatMapTTL)
	return a.ResponseCache().Serve(c, "seats:"+id, []string{SeatsTag(id)}, ttl, func() (int, any, string, error) {
		m, err := a.svc.Bookings.SeatMap(c.UserContext(), id)
		return fiber.StatusOK, m, "seat map", err
	})
}

// SeatMapTTL bounds how long a seat map is served from memory: a booking through this process
// shows at once, one through another replica within this long.
const SeatMapTTL = time.Second

// invalidateSeats drops cached seat maps of the show after a change in this process.
func (a *API) invalidateSeats(showID string) { a.ResponseCache().Invalidate(SeatsTag(showID)) }

// keepsAnswer reports whether an Idempotency-Key keeps an answer of this status, to replay it
// to every retry with the key and the same body. Stripe's rule for idempotent requests is the
// model: a result is saved only once the endpoint has begun to act; a request refused before
// (invalid parameters, a conflict with a concurrent request) saves nothing and may be retried
// with its key. Here an answer is kept when it reflects an effect or can never change:
//   - kept: 2xx (the effect happened: a booking held, a payment made), and the refusals that
//     can never change for the same body: 400 (malformed, invalid, and the payment of a wrong
//     amount, whose FAILED payment is recorded: a replay records no second one), 410 (a hold
//     expired: final), 413, 415 and 422;
//   - not kept, the key given up (the next request with it runs): every refusal that may pass
//     later for the same body, having done nothing: 401, 403 (an account approved later), 404
//     (a show created later), 409 (seats freed by a cancellation or an expiry), 429 (the
//     customer's fair-use room freed), any other 4xx; and 5xx (a failure to retry).
func keepsAnswer(status int) bool {
	switch {
	case status >= 200 && status < 300:
		return true
	case status == fiber.StatusBadRequest, status == fiber.StatusGone, status == fiber.StatusRequestEntityTooLarge,
		status == fiber.StatusUnsupportedMediaType, status == fiber.StatusUnprocessableEntity:
		return true
	}
	return false
}

// idempotent wraps a signed-in POST handler: a repeated Idempotency-Key (per caller and
// route) with the same body gets the first kept response again (keepsAnswer), with
// Idempotent-Replayed: true; a different body under the key is 422; an answer not kept frees
// the key for a retry, and so does a request that never answered (its process died) once its
// claim's lease has passed.
func (a *API) idempotent(route string, h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		key, err := httpx.IdempotencyKey(c)
		if err != nil || key == "" || a.svc.Idempotency == nil {
			if err != nil {
				return err
			}
			return h(c)
		}
		sum := sha256.Sum256(bytes.TrimSpace(c.Body()))
		fp := hex.EncodeToString(sum[:])
		scope := Caller(c).ID + "|" + route + "|" + key
		ctx := c.UserContext()
		saved, claim, err := a.svc.Idempotency.Begin(ctx, scope, fp)
		if err != nil {
			return err
		}
		if saved != nil {
			c.Set(HeaderIdempotentReplay, "true")
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
			return c.Status(saved.Status).Send(saved.Body)
		}
		if err := h(c); err != nil {
			// Write the error's envelope now, so that it can be stored.
			if herr := c.App().Config().ErrorHandler(c, err); herr != nil {
				return herr
			}
		}
		status := c.Response().StatusCode()
		if !keepsAnswer(status) {
			if err := a.svc.Idempotency.Abandon(ctx, claim); err != nil {
				// the claim stays "in progress" until its lease passes; the answer stands
				a.log.WarnContext(ctx, "idempotency key not freed", "route", route, "error", err.Error())
			}
			return nil
		}
		body := bytes.Clone(c.Response().Body())
		if err := a.svc.Idempotency.Finish(ctx, claim, fp, core.StoredResponse{Status: status, Body: body}); err != nil {
			a.log.WarnContext(ctx, "idempotent response not stored", "route", route, "error", err.Error())
		}
		return nil
	}
}
