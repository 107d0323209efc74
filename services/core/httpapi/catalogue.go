package httpapi

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// CatalogueOptions configure the catalogue routes' response cache (see ResponseCache).
type CatalogueOptions struct {
	// CacheTTL is how long a catalogue read is served from memory (default 2s). It bounds how
	// stale a read may be after a change made by another replica; a change made through this
	// process is seen at once. Negative disables the cache.
	CacheTTL time.Duration
	// CacheEntries bounds the cache (default 1000 responses).
	CacheEntries int
}

// Cache tags of the catalogue: a write invalidates the tags of what it changed.
const (
	TagMovies   = "movies"
	TagTheatres = "theatres"
	TagShows    = "shows"
)

// SeatsTag is the cache tag of a show's seat map (the booking routes cache it; a change of
// the show invalidates it).
func SeatsTag(showID string) string { return "seats:" + showID }

// ResponseCache is the API's response cache, shared by every route of the API (the catalogue
// reads; the booking routes cache seat maps in it under SeatsTag). Its metrics go to
// Options.HTTP.Registry as cineflow_core_cache_requests_total{cache="mba"}.
func (a *API) ResponseCache() *ResponseCache {
	a.cacheOnce.Do(func() {
		o := a.opts.Catalogue
		co := CacheOptions{Name: "mba", TTL: o.CacheTTL, MaxEntries: o.CacheEntries, Disabled: o.CacheTTL < 0}
		if a.opts.HTTP.Registry != nil {
			co.Registerer = a.opts.HTTP.Registry
		}
		a.cache = NewResponseCache(co)
	})
	return a.cache
}

// catalogueRoutes holds the catalogue handlers.
type catalogueRoutes struct {
	a     *API
	cat   *catalogue.Catalogue
	cache *ResponseCache
}

// registerCatalogue mounts the movie, theatre and show routes. Reads are public and cached
// (see ResponseCache); writes need a token and invalidate what they change.
func (a *API) registerCatalogue(g fiber.Router) {
	h := &catalogueRoutes{a: a, cat: a.svc.Catalogue, cache: a.ResponseCache()}
	auth := a.Authenticate

	g.Post("/movies", auth, h.createMovie)
	g.Get("/movies", h.listMovies)
	g.Get("/movies/:id", h.getMovie)
	g.Put("/movies/:id", auth, h.changeMovie(true))
	g.Patch("/movies/:id", auth, h.changeMovie(false))
	g.Delete("/movies/:id", auth, h.deleteMovie)

	g.Post("/theatres", auth, h.createTheatre)
	g.Get("/theatres", h.listTheatres)
	g.Get("/theatres/:id", h.getTheatre)
	g.Put("/theatres/:id", auth, h.changeTheatre(true))
	g.Patch("/theatres/:id", auth, h.changeTheatre(false))
	g.Delete("/theatres/:id", auth, h.deleteTheatre)
	g.Patch("/theatres/:id/movies", auth, h.changeTheatreMovies)
	g.Get("/theatres/:id/movies", h.theatreMovies)
	g.Get("/theatres/:theatreId/movies/:movieId", h.theatreRunsMovie)

	g.Post("/shows", auth, h.createShow)
	g.Get("/shows", h.listShows)
	g.Get("/shows/:id", h.getShow)
	g.Patch("/shows/:id", auth, h.updateShow)
	g.Delete("/shows/:id", auth, h.deleteShow)
}

// ---- request bodies ----

// ownedFields are the server-owned fields of catalogue documents: a body naming one is
// refused with a field error (json matches names case-insensitively, so "Owner" is caught too).
type ownedFields struct {
	ID        json.RawMessage `json:"_id"`
	Owner     json.RawMessage `json:"owner"`
	CreatedAt json.RawMessage `json:"createdAt"`
	UpdatedAt json.RawMessage `json:"updatedAt"`
}

func (o *ownedFields) names() []string {
	var n []string
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"_id", o.ID}, {"owner", o.Owner}, {"createdAt", o.CreatedAt}, {"updatedAt", o.UpdatedAt}} {
		if f.raw != nil {
			n = append(n, f.name)
		}
	}
	return n
}

func catIsNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

type movieRequest struct {
	ownedFields
	Name          *string         `json:"name"`
	Description   *string         `json:"description"`
	Casts         *[]string       `json:"casts"`
	TrailerURL    *string         `json:"trailerUrl"`
	Language      json.RawMessage `json:"language"` // a list, or one language as a string
	ReleaseDate   *string         `json:"releaseDate"`
	Director      *string         `json:"director"`
	ReleaseStatus *string         `json:"releaseStatus"`
}

func (r *movieRequest) patch() (core.MoviePatch, error) {
	if err := core.ServerOwnedFields(r.names()...); err != nil {
		return core.MoviePatch{}, err
	}
	p := core.MoviePatch{Name: r.Name, Description: r.Description, Casts: r.Casts, TrailerURL: r.TrailerURL,
		ReleaseDate: r.ReleaseDate, Director: r.Director, ReleaseStatus: r.ReleaseStatus}
	if !catIsNull(r.Language) {
		var list []string
		var one string
		switch {
		case json.Unmarshal(r.Language, &list) == nil:
		case json.Unmarshal(r.Language, &one) == nil:
			list = []string{one}
		default:
			return p, errs.Fields(map[string]string{"language": "must be an array of strings (or one string)"})
		}
		p.Language = &list
	}
	return p, nil
}

type theatreRequest struct {
	ownedFields
	Movies      json.RawMessage `json:"movies"`
	Name        *string         `json:"name"`
	Description *string         `json:"description"`
	City        *string         `json:"city"`
	PinCode     json.RawMessage `json:"pinCode"` // a number, or digits in a string
	Address     *string         `json:"address"`
}

const msgPinCode = "must be a positive number of up to 6 digits"

func (r *theatreRequest) patch() (core.TheatrePatch, error) {
	f := map[string]string{}
	for _, n := range r.names() {
		f[n] = "is set by the server and cannot be given"
	}
	if r.Movies != nil {
		f["movies"] = "cannot be given here: use PATCH /theatres/:id/movies"
	}
	p := core.TheatrePatch{Name: r.Name, Description: r.Description, City: r.City, Address: r.Address}
	if !catIsNull(r.PinCode) {
		raw := bytes.TrimSpace(r.PinCode)
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				raw = []byte(strings.TrimSpace(s))
			}
		}
		n, err := strconv.Atoi(string(raw))
		if err != nil || len(raw) == 0 || raw[0] == '+' {
			f["pinCode"] = msgPinCode
		} else {
			p.PinCode = &n
		}
	}
	if len(f) > 0 {
		return p, errs.Fields(f)
	}
	return p, nil
}

type showRequest struct {
	ownedFields
	TheatreID   json.RawMessage `json:"theatreId"`
	MovieID     json.RawMessage `json:"movieId"`
	Timing      *string         `json:"timing"`
	NoOfSeats   *int            `json:"noOfSeats"`
	SeatsPerRow *int            `json:"seatsPerRow"`
	Price       *float64        `json:"price"`
	Format      *string         `json:"format"`
}

func (r *showRequest) fields() core.ShowPatch {
	return core.ShowPatch{Timing: r.Timing, NoOfSeats: r.NoOfSeats, SeatsPerRow: r.SeatsPerRow, Price: r.Price, Format: r.Format}
}

func (r *showRequest) newShow() (core.NewShow, error) {
	f := map[string]string{}
	for _, n := range r.names() {
		f[n] = "is set by the server and cannot be given"
	}
	s := core.NewShow{ShowPatch: r.fields()}
	for _, id := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{{"theatreId", r.TheatreID, &s.TheatreID}, {"movieId", r.MovieID, &s.MovieID}} {
		if catIsNull(id.raw) {
			continue // "is required", said by Validate
		}
		if json.Unmarshal(id.raw, id.dst) != nil {
			*id.dst = "(not a string)" // Validate names it, with the other fields
		}
	}
	if len(f) > 0 {
		return s, errs.Fields(f)
	}
	return s, nil
}

func (r *showRequest) patch() (core.ShowPatch, error) {
	f := map[string]string{}
	for _, n := range r.names() {
		f[n] = "is set by the server and cannot be given"
	}
	if r.TheatreID != nil {
		f["theatreId"] = "cannot change: create a new show instead"
	}
	if r.MovieID != nil {
		f["movieId"] = "cannot change: create a new show instead"
	}
	if len(f) > 0 {
		return core.ShowPatch{}, errs.Fields(f)
	}
	return r.fields(), nil
}

type theatreMoviesRequest struct {
	MovieIDs *[]string `json:"movieIds"`
	Insert   *bool     `json:"insert"`
}

// ---- query strings ----

// queryInts reads the integer query parameters of specs, merging their field errors.
func catQueryInts(c *fiber.Ctx, specs ...catIntQuery) error {
	f := map[string]string{}
	for _, q := range specs {
		n, err := httpx.QueryInt(c, q.name, q.def, q.min, q.max)
		if e, ok := err.(*errs.Error); ok {
			for k, v := range e.Fields {
				f[k] = v
			}
			continue
		}
		*q.dst = n
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	return nil
}

type catIntQuery struct {
	name          string
	def, min, max int
	dst           *int
}

func catPageQueries(p *core.Page) []catIntQuery {
	return []catIntQuery{{"limit", core.DefaultPageLimit, 1, core.MaxPageLimit, &p.Limit},
		{"skip", 0, 0, core.MaxPageSkip, &p.Skip}}
}

// cacheKey is route plus the normalised query: the given (name, value) pairs in order.
func catKey(route string, kv ...string) string {
	var b strings.Builder
	b.WriteString(route)
	for i := 0; i+1 < len(kv); i += 2 {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	return b.String()
}

func catParam(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

func catQuery(c *fiber.Ctx, name string) string { return strings.Clone(c.Query(name)) }

// catPaging is the paging headers of a catalogue list page of got items: X-Total-Count, and
// a Link rel="next" (RFC 8288) while more follow: the same route, filters (name, value
// pairs; empty values are left out) and limit, skip moved past this page.
func catPaging(c *fiber.Ctx, p core.Page, got int, total int64, filters ...string) map[string]string {
	h := map[string]string{"X-Total-Count": strconv.FormatInt(total, 10)}
	next := p.Skip + got
	if got == 0 || int64(next) >= total || next > core.MaxPageSkip {
		return h
	}
	q := url.Values{}
	for i := 0; i+1 < len(filters); i += 2 {
		if filters[i+1] != "" {
			q.Set(filters[i], filters[i+1])
		}
	}
	q.Set("limit", strconv.Itoa(p.Limit))
	q.Set("skip", strconv.Itoa(next))
	h[fiber.HeaderLink] = "<" + c.Route().Path + "?" + q.Encode() + `>; rel="next"`
	return h
}

// ---- movies ----

func (h *catalogueRoutes) createMovie(c *fiber.Ctx) error {
	var req movieRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	p, err := req.patch()
	if err != nil {
		return err
	}
	m, err := h.cat.CreateMovie(c.UserContext(), Caller(c), p)
	if err != nil {
		return err
	}
	h.cache.Invalidate(TagMovies)
	return httpx.OK(c, fiber.StatusCreated, m, "movie created")
}

func (h *catalogueRoutes) changeMovie(full bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var req movieRequest
		if err := httpx.DecodeJSON(c, &req); err != nil {
			return err
		}
		p, err := req.patch()
		if err != nil {
			return err
		}
		change := h.cat.UpdateMovie
		if full {
			change = h.cat.ReplaceMovie
		}
		m, err := change(c.UserContext(), Caller(c), catParam(c, "id"), p)
		h.cache.Invalidate(TagMovies)
		if err != nil {
			return err
		}
		return httpx.OK(c, fiber.StatusOK, m, "movie updated")
	}
}

func (h *catalogueRoutes) deleteMovie(c *fiber.Ctx) error {
	m, err := h.cat.DeleteMovie(c.UserContext(), Caller(c), catParam(c, "id"))
	h.cache.Invalidate(TagMovies, TagTheatres)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, m, "movie deleted")
}

func (h *catalogueRoutes) listMovies(c *fiber.Ctx) error {
	f := core.MovieFilter{Name: catQuery(c, "name")}
	if err := catQueryInts(c, catPageQueries(&f.Page)...); err != nil {
		return err
	}
	key := catKey("movies", "name", f.Name, "limit", strconv.Itoa(f.Limit), "skip", strconv.Itoa(f.Skip))
	ctx := c.UserContext()
	return h.cache.Serve(c, key, []string{TagMovies}, 0, func() (int, any, string, error) {
		ms, n, err := h.cat.ListMovies(ctx, f)
		return fiber.StatusOK, Headed{Data: ms, Header: catPaging(c, f.Page, len(ms), n, "name", f.Name)}, "movies", err
	})
}

func (h *catalogueRoutes) getMovie(c *fiber.Ctx) error {
	id := catParam(c, "id")
	if err := core.CheckID("id", id); err != nil {
		return err
	}
	ctx := c.UserContext()
	return h.cache.Serve(c, "movie/"+id, []string{TagMovies}, 0, func() (int, any, string, error) {
		m, err := h.cat.GetMovie(ctx, id)
		return fiber.StatusOK, m, "movie", err
	})
}

// ---- theatres ----

func (h *catalogueRoutes) createTheatre(c *fiber.Ctx) error {
	var req theatreRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	p, err := req.patch()
	if err != nil {
		return err
	}
	t, err := h.cat.CreateTheatre(c.UserContext(), Caller(c), p)
	if err != nil {
		return err
	}
	h.cache.Invalidate(TagTheatres)
	return httpx.OK(c, fiber.StatusCreated, t, "theatre created")
}

func (h *catalogueRoutes) changeTheatre(full bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var req theatreRequest
		if err := httpx.DecodeJSON(c, &req); err != nil {
			return err
		}
		p, err := req.patch()
		if err != nil {
			return err
		}
		change := h.cat.UpdateTheatre
		if full {
			change = h.cat.ReplaceTheatre
		}
		t, err := change(c.UserContext(), Caller(c), catParam(c, "id"), p)
		h.cache.Invalidate(TagTheatres)
		if err != nil {
			return err
		}
		return httpx.OK(c, fiber.StatusOK, t, "theatre updated")
	}
}

func (h *catalogueRoutes) deleteTheatre(c *fiber.Ctx) error {
	t, err := h.cat.DeleteTheatre(c.UserContext(), Caller(c), catParam(c, "id"))
	h.cache.Invalidate(TagTheatres)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, t, "theatre deleted")
}

func (h *catalogueRoutes) changeTheatreMovies(c *fiber.Ctx) error {
	var req theatreMoviesRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	f := map[string]string{}
	if req.MovieIDs == nil {
		f["movieIds"] = "is required"
	}
	if req.Insert == nil {
		f["insert"] = "is required: true adds the movies, false removes them"
	}
	if len(f) > 0 {
		return errs.Fields(f)
	}
	t, err := h.cat.UpdateTheatreMovies(c.UserContext(), Caller(c), catParam(c, "id"), *req.MovieIDs, *req.Insert)
	h.cache.Invalidate(TagTheatres)
	if err != nil {
		return err
	}
	msg := "movies added to the theatre"
	if !*req.Insert {
		msg = "movies removed from the theatre"
	}
	return httpx.OK(c, fiber.StatusOK, t, msg)
}

func (h *catalogueRoutes) listTheatres(c *fiber.Ctx) error {
	f := core.TheatreFilter{City: catQuery(c, "city"), Name: catQuery(c, "name"), MovieID: catQuery(c, "movieId")}
	specs := append(catPageQueries(&f.Page), catIntQuery{"pinCode", 0, 1, core.MaxPinCode, &f.PinCode})
	if err := catQueryInts(c, specs...); err != nil {
		return err
	}
	if f.MovieID != "" {
		if err := core.CheckID("movieId", f.MovieID); err != nil {
			return err
		}
	}
	key := catKey("theatres", "city", f.City, "name", f.Name, "pinCode", strconv.Itoa(f.PinCode),
		"movieId", f.MovieID, "limit", strconv.Itoa(f.Limit), "skip", strconv.Itoa(f.Skip))
	ctx := c.UserContext()
	return h.cache.Serve(c, key, []string{TagTheatres}, 0, func() (int, any, string, error) {
		ts, n, err := h.cat.ListTheatres(ctx, f)
		pin := ""
		if f.PinCode != 0 {
			pin = strconv.Itoa(f.PinCode)
		}
		return fiber.StatusOK, Headed{Data: ts, Header: catPaging(c, f.Page, len(ts), n,
			"city", f.City, "name", f.Name, "pinCode", pin, "movieId", f.MovieID)}, "theatres", err
	})
}

func (h *catalogueRoutes) getTheatre(c *fiber.Ctx) error {
	id := catParam(c, "id")
	if err := core.CheckID("id", id); err != nil {
		return err
	}
	ctx := c.UserContext()
	return h.cache.Serve(c, "theatre/"+id, []string{TagTheatres}, 0, func() (int, any, string, error) {
		t, err := h.cat.GetTheatre(ctx, id)
		return fiber.StatusOK, t, "theatre", err
	})
}

func (h *catalogueRoutes) theatreMovies(c *fiber.Ctx) error {
	id := catParam(c, "id")
	if err := core.CheckID("id", id); err != nil {
		return err
	}
	ctx := c.UserContext()
	return h.cache.Serve(c, "theatre/"+id+"/movies", []string{TagTheatres, TagMovies}, 0, func() (int, any, string, error) {
		ms, err := h.cat.TheatreMovies(ctx, id)
		return fiber.StatusOK, ms, "the theatre's movies", err
	})
}

func (h *catalogueRoutes) theatreRunsMovie(c *fiber.Ctx) error {
	tid, mid := catParam(c, "theatreId"), catParam(c, "movieId")
	fe := map[string]string{}
	if !core.IsID(tid) {
		fe["theatreId"] = "must be a 24-character hex id"
	}
	if !core.IsID(mid) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if len(fe) > 0 {
		return errs.Fields(fe)
	}
	ctx := c.UserContext()
	return h.cache.Serve(c, "theatre/"+tid+"/movies/"+mid, []string{TagTheatres}, 0, func() (int, any, string, error) {
		ok, err := h.cat.TheatreRunsMovie(ctx, tid, mid)
		msg := "the movie is running in the theatre"
		if !ok {
			msg = "the movie is not running in the theatre"
		}
		return fiber.StatusOK, ok, msg, err
	})
}

// ---- shows ----

func (h *catalogueRoutes) createShow(c *fiber.Ctx) error {
	var req showRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	s, err := req.newShow()
	if err != nil {
		return err
	}
	sh, err := h.cat.CreateShow(c.UserContext(), Caller(c), s)
	h.cache.Invalidate(TagShows, TagTheatres) // the movie joins the theatre's movies
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusCreated, sh, "show created")
}

func (h *catalogueRoutes) updateShow(c *fiber.Ctx) error {
	var req showRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	p, err := req.patch()
	if err != nil {
		return err
	}
	id := catParam(c, "id")
	sh, err := h.cat.UpdateShow(c.UserContext(), Caller(c), id, p)
	h.cache.Invalidate(TagShows, SeatsTag(id))
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, sh, "show updated")
}

func (h *catalogueRoutes) deleteShow(c *fiber.Ctx) error {
	id := catParam(c, "id")
	sh, err := h.cat.DeleteShow(c.UserContext(), Caller(c), id)
	h.cache.Invalidate(TagShows, SeatsTag(id))
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, sh, "show deleted")
}

func (h *catalogueRoutes) listShows(c *fiber.Ctx) error {
	f := core.ShowFilter{TheatreID: catQuery(c, "theatreId"), MovieID: catQuery(c, "movieId")}
	if err := catQueryInts(c, catPageQueries(&f.Page)...); err != nil {
		return err
	}
	fe := map[string]string{}
	if f.TheatreID != "" && !core.IsID(f.TheatreID) {
		fe["theatreId"] = "must be a 24-character hex id"
	}
	if f.MovieID != "" && !core.IsID(f.MovieID) {
		fe["movieId"] = "must be a 24-character hex id"
	}
	if len(fe) > 0 {
		return errs.Fields(fe)
	}
	key := catKey("shows", "theatreId", f.TheatreID, "movieId", f.MovieID, "limit", strconv.Itoa(f.Limit), "skip", strconv.Itoa(f.Skip))
	ctx := c.UserContext()
	return h.cache.Serve(c, key, []string{TagShows}, 0, func() (int, any, string, error) {
		ss, n, err := h.cat.ListShows(ctx, f)
		return fiber.StatusOK, Headed{Data: ss, Header: catPaging(c, f.Page, len(ss), n,
			"theatreId", f.TheatreID, "movieId", f.MovieID)}, "shows", err
	})
}

func (h *catalogueRoutes) getShow(c *fiber.Ctx) error {
	id := catParam(c, "id")
	if err := core.CheckID("id", id); err != nil {
		return err
	}
	ctx := c.UserContext()
	return h.cache.Serve(c, "show/"+id, []string{TagShows}, 0, func() (int, any, string, error) {
		s, err := h.cat.GetShow(ctx, id)
		return fiber.StatusOK, s, "show", err
	})
}
