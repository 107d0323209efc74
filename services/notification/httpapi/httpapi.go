// Package httpapi is the notification service's REST API on Fiber. Handlers only translate:
// they parse the request, call the notification.TicketStore, and write the envelope; every
// error goes through the one table in pkg/httpx.
package httpapi

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/notification"
)

// BasePath is the prefix of every ticket route (the original service's path).
const BasePath = "/notiservice/api/v1/notifications"

// Headers of the idempotent create.
const (
	HeaderIdempotencyKey    = httpx.HeaderIdempotencyKey
	HeaderIdempotentReplay  = "Idempotent-Replayed"
	HeaderNextCursor        = "X-Next-Cursor"
	defaultListLimit        = 20
	maxListLimit            = 500 // as every list of both services
	maxListSkip             = 100000
	defaultStatsCacheWindow = 5 * time.Second
)

// Options configure the API.
type Options struct {
	// Token is NOTIFICATION_API_TOKEN: every ticket route requires "Authorization: Bearer
	// <Token>". Empty leaves the API open (development only; production refuses to start).
	Token  string
	Logger *slog.Logger
	// StatsTTL is how long one store.Stats result answers /metrics scrapes (default 5s), so
	// scrapes cannot hammer the database.
	StatsTTL time.Duration
	// HTTP configures the shared server; Name defaults to "notification", Ready to store.Ping,
	// Logger to Logger.
	HTTP httpx.Options
}

// New builds the service's HTTP server: the shared httpx server (envelope, request ids,
// body limit, metrics, tracing, /healthz /readyz /metrics) with the ticket routes and the
// ticket metrics. Listen and Serve it.
func New(store notification.TicketStore, opts Options) *httpx.Server {
	hopts := opts.HTTP
	if hopts.Name == "" {
		hopts.Name = "notification"
	}
	if hopts.Logger == nil {
		hopts.Logger = opts.Logger
	}
	if hopts.Ready == nil {
		hopts.Ready = store.Ping
	}
	srv := httpx.NewServer(hopts)
	Register(srv, store, opts)
	return srv
}

// API holds the ticket handlers.
type API struct {
	store   notification.TicketStore
	log     *slog.Logger
	created prometheus.Counter
}

// Register mounts the ticket routes on srv (behind the bearer token) and registers the
// ticket metrics on srv.Registry.
func Register(srv *httpx.Server, store notification.TicketStore, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StatsTTL <= 0 {
		opts.StatsTTL = defaultStatsCacheWindow
	}
	a := &API{store: store, log: opts.Logger, created: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cineflow_notification_tickets_created_total",
		Help: "Tickets created by this process (idempotent replays not counted).",
	})}
	srv.Registry.MustRegister(a.created, NewStatsCollector(store, opts.StatsTTL, opts.Logger))

	g := srv.App.Group(BasePath, httpx.RequireBearer(opts.Token))
	g.Post("", a.create) // "" rather than "/": the route template (a metric label) is BasePath
	g.Get("", a.list)
	g.Get("/:id", a.get)
	g.Post("/:id/retry", a.retry)
	g.Post(RequeuePath, a.requeueFailed)
	MountOpenAPI(srv.App)
	return a
}

// createRequest is the body of POST /. It has no server-owned fields (status, attempts,
// ...), so a client cannot set them; unknown fields are ignored.
type createRequest struct {
	Subject string `json:"subject"`
	Content string `json:"content"`
	// RecepientEmails is the original service's spelling; RecipientEmails is accepted too.
	RecepientEmails []string `json:"recepientEmails"`
	RecipientEmails []string `json:"recipientEmails"`
	Requester       string   `json:"requester"`
}

func (r *createRequest) newTicket() (notification.NewTicket, error) {
	recipients := r.RecepientEmails
	if r.RecipientEmails != nil {
		if recipients != nil && !slices.Equal(recipients, r.RecipientEmails) {
			return notification.NewTicket{}, errs.Fields(map[string]string{
				"recipientEmails": "conflicts with recepientEmails: send the list once",
			})
		}
		recipients = r.RecipientEmails
	}
	return notification.NewTicket{Subject: r.Subject, Content: r.Content, RecipientEmails: recipients,
		Requester: r.Requester}, nil
}

func (a *API) create(c *fiber.Ctx) error {
	key, err := httpx.IdempotencyKey(c)
	if err != nil {
		return err
	}
	var req createRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	n, err := req.newTicket()
	if err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	t := &notification.Ticket{
		Subject:         n.Subject,
		Content:         n.Content,
		RecipientEmails: n.RecipientEmails,
		Requester:       n.Requester,
		TraceParent:     httpx.TraceParent(c.UserContext()),
	}
	if key != "" {
		t.IdempotencyKey = key
		t.RequestHash = RequestHash(&n)
	}
	saved, created, err := a.store.Create(c.UserContext(), t)
	if err != nil {
		return err
	}
	msg := "ticket created"
	if created {
		a.created.Inc()
	} else {
		c.Set(HeaderIdempotentReplay, "true")
		msg = "ticket already created with this Idempotency-Key"
	}
	c.Location(BasePath + "/" + saved.ID.Hex())
	return httpx.OK(c, fiber.StatusCreated, view(saved), msg)
}

// RequestHash is the SHA-256 of a validated (normalised) request: the same ticket asked for
// twice hashes the same whatever the recipients' order or case, and any other change differs.
func RequestHash(n *notification.NewTicket) string {
	h := sha256.New()
	writeField(h, n.Subject)
	writeField(h, n.Content)
	writeField(h, n.Requester)
	rcpt := make([]string, len(n.RecipientEmails))
	for i, r := range n.RecipientEmails {
		rcpt[i] = strings.ToLower(r)
	}
	slices.Sort(rcpt)
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(len(rcpt)))
	h.Write(buf[:])
	for _, r := range rcpt {
		writeField(h, r)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeField writes s length-prefixed, so that no two field lists hash alike.
func writeField(h hash.Hash, s string) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
	h.Write(buf[:])
	h.Write([]byte(s))
}

// list answers GET /: a page of tickets, newest first. When more may follow, the page carries
// the next page's cursor twice: as X-Next-Cursor (pass it as cursor) and as a Link header
// with rel="next" (RFC 8288) whose URL is the next page's.
func (a *API) list(c *fiber.Ctx) error {
	var f notification.ListFilter
	if s := c.Query("status"); s != "" {
		f.Status = notification.Status(strings.ToUpper(s))
		if !f.Status.Valid() {
			return errs.Fields(map[string]string{"status": "must be PENDING, SUCCESS or FAILED"})
		}
	}
	var err error
	if f.Limit, err = httpx.QueryInt(c, "limit", defaultListLimit, 1, maxListLimit); err != nil {
		return err
	}
	if f.Skip, err = httpx.QueryInt(c, "skip", 0, 0, maxListSkip); err != nil {
		return err
	}
	if cur := c.Query("cursor"); cur != "" {
		switch {
		case len(cur) == 24:
			// A ticket id: the cursor of earlier versions (tickets older than it).
			if f.Before, err = notification.ParseID(cur); err != nil {
				return badCursor()
			}
		case len(cur) <= maxCursorLen && validCursor(cur):
			f.Cursor = cur
		default:
			return badCursor()
		}
	}
	page, err := a.store.List(c.UserContext(), f)
	if err != nil {
		return err
	}
	if page.Tickets == nil {
		page.Tickets = []notification.Ticket{}
	}
	for i := range page.Tickets {
		view(&page.Tickets[i])
	}
	if page.Next != "" {
		c.Set(HeaderNextCursor, page.Next)
		q := url.Values{"cursor": {page.Next}, "limit": {strconv.Itoa(f.Limit)}}
		if f.Status != "" {
			q.Set("status", string(f.Status))
		}
		c.Set(fiber.HeaderLink, "<"+BasePath+"?"+q.Encode()+`>; rel="next"`)
	}
	return httpx.OK(c, fiber.StatusOK, page.Tickets, "tickets fetched")
}

// maxCursorLen bounds the cursor parameter.
const maxCursorLen = 64

// validCursor reports whether a cursor holds only the characters the store's cursors use.
func validCursor(s string) bool {
	for _, b := range []byte(s) {
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '.' || b == '-' || b == '~' || b == '_') {
			return false
		}
	}
	return true
}

func badCursor() error {
	return errs.Fields(map[string]string{"cursor": "must be the X-Next-Cursor of the page before (or a ticket id, 24 hexadecimal digits)"})
}

func (a *API) get(c *fiber.Ctx) error {
	id, err := ticketID(c)
	if err != nil {
		return err
	}
	t, err := a.store.Get(c.UserContext(), id)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, view(t), "ticket fetched")
}

func (a *API) retry(c *fiber.Ctx) error {
	id, err := ticketID(c)
	if err != nil {
		return err
	}
	t, err := a.store.Requeue(c.UserContext(), id)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, view(t), "ticket re-queued")
}

func ticketID(c *fiber.Ctx) (notification.ID, error) {
	id, err := notification.ParseID(c.Params("id"))
	if err != nil {
		return id, errs.E(errs.Invalid, "malformed ticket id: expected 24 hexadecimal digits")
	}
	return id, nil
}

// view makes a stored ticket ready to serve: its error history is always an array.
func view(t *notification.Ticket) *notification.Ticket {
	if t.Errors == nil {
		t.Errors = []notification.AttemptError{}
	}
	return t
}
