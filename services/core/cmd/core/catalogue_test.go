package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// catalogueUsers are the callers of the catalogue tests.
type catalogueUsers struct {
	admin, customer, pending, clientA, clientB string // tokens
	clientAID                                  string
}

func (s *service) catalogueUsers() catalogueUsers {
	s.t.Helper()
	var u catalogueUsers
	u.admin = s.token(adminEmail, adminPassword)
	s.expect(s.signUp("Cust", "cust@example.com", "password-1", ""), 201)
	u.customer = s.token("cust@example.com", "password-1")
	s.expect(s.signUp("Pend", "pend@example.com", "password-1", core.RoleClient), 201)
	u.pending = s.token("pend@example.com", "password-1")
	for i, email := range []string{"a@example.com", "b@example.com"} {
		id := s.expect(s.signUp(fmt.Sprintf("Client %d", i), email, "password-1", core.RoleClient), 201).user().ID
		s.expect(s.do(req{method: "PATCH", path: base + "/user/" + id, token: u.admin, body: `{"userStatus":"APPROVED"}`}), 200)
		tok := s.token(email, "password-1")
		if i == 0 {
			u.clientA, u.clientAID = tok, id
		} else {
			u.clientB = tok
		}
	}
	return u
}

func data[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.env.Data, &v); err != nil {
		t.Fatalf("data of %s: %v", r.raw, err)
	}
	return v
}

func movieBody(name string) map[string]any {
	return map[string]any{"name": name, "description": "A film about " + name, "casts": []string{"Ann", "Bob"},
		"trailerUrl": "https://example.com/" + url.PathEscape(name), "releaseDate": "2024-01-15", "director": "Dee",
		"releaseStatus": "RELEASED"}
}

func theatreBody(name, city string, pin any) map[string]any {
	return map[string]any{"name": name, "description": "Screens", "city": city, "pinCode": pin, "address": "1 Main St"}
}

func (s *service) createMovie(tok, name string) core.Movie {
	s.t.Helper()
	return data[core.Movie](s.t, s.expect(s.do(req{method: "POST", path: base + "/movies", token: tok, body: movieBody(name)}), 201))
}

func (s *service) createTheatre(tok, name, city string, pin any) core.Theatre {
	s.t.Helper()
	return data[core.Theatre](s.t, s.expect(s.do(req{method: "POST", path: base + "/theatres", token: tok, body: theatreBody(name, city, pin)}), 201))
}

func (s *service) createShow(tok, theatreID, movieID, timing string) core.Show {
	s.t.Helper()
	return data[core.Show](s.t, s.expect(s.do(req{method: "POST", path: base + "/shows", token: tok, body: map[string]any{
		"theatreId": theatreID, "movieId": movieID, "timing": timing, "noOfSeats": 40, "price": 250.5, "format": "3D"}}), 201))
}

// fieldsOf checks a 400 naming every one of want.
func (s *service) fieldsOf(r response, want ...string) {
	s.t.Helper()
	s.expect(r, 400)
	f := r.fields()
	for _, k := range want {
		if f[k] == "" {
			s.t.Errorf("no field error for %s: %s", k, r.raw)
		}
	}
}

func TestCatalogueMovieRoutes(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	u := s.catalogueUsers()
	body := movieBody("Heat")

	// who may create
	s.expect(s.do(req{method: "POST", path: base + "/movies", body: body}), 401)
	s.expect(s.do(req{method: "POST", path: base + "/movies", token: u.customer, body: body}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/movies", token: u.pending, body: body}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/movies", token: "garbage", body: body}), 401)
	m := s.createMovie(u.clientA, "Heat")
	if m.ID == "" || m.Name != "Heat" || m.ReleaseStatus != "RELEASED" || len(m.Casts) != 2 || m.CreatedAt.IsZero() ||
		len(m.Language) != 1 || m.Language[0] != core.DefaultLanguage || m.ReleaseDate != "2024-01-15" {
		t.Fatalf("created %+v", m)
	}
	s.createMovie(u.admin, "Alien")

	// anyone reads
	got := data[core.Movie](t, s.expect(s.do(req{method: "GET", path: base + "/movies/" + m.ID}), 200))
	if got.ID != m.ID || got.Name != "Heat" {
		t.Fatalf("get %+v", got)
	}
	list := data[[]core.Movie](t, s.expect(s.do(req{method: "GET", path: base + "/movies"}), 200))
	if len(list) != 2 {
		t.Fatalf("list %+v", list)
	}
	s.expect(s.do(req{method: "GET", path: base + "/movies/" + bson.NewObjectID().Hex()}), 404)
	s.fieldsOf(s.do(req{method: "GET", path: base + "/movies/nope"}), "id")

	// who may change: any approved client or admin (the original's rule)
	path := base + "/movies/" + m.ID
	patch := `{"name":"Heat 2"}`
	s.expect(s.do(req{method: "PATCH", path: path, body: patch}), 401)
	s.expect(s.do(req{method: "PATCH", path: path, token: u.customer, body: patch}), 403)
	s.expect(s.do(req{method: "PATCH", path: path, token: u.pending, body: patch}), 403)
	got = data[core.Movie](t, s.expect(s.do(req{method: "PATCH", path: path, token: u.clientB, body: patch}), 200))
	if got.Name != "Heat 2" || got.Director != "Dee" || !got.UpdatedAt.After(m.UpdatedAt.Add(-time.Millisecond)) || !got.CreatedAt.Equal(m.CreatedAt) {
		t.Fatalf("patched %+v", got)
	}
	s.expect(s.do(req{method: "PATCH", path: base + "/movies/" + bson.NewObjectID().Hex(), token: u.admin, body: patch}), 404)
	s.fieldsOf(s.do(req{method: "PATCH", path: base + "/movies/xyz", token: u.admin, body: patch}), "id")
	s.expect(s.do(req{method: "PATCH", path: path, token: u.admin, body: `{}`}), 400)

	// PUT replaces: every required field is needed
	s.fieldsOf(s.do(req{method: "PUT", path: path, token: u.admin, body: patch}), "description", "casts", "trailerUrl", "releaseDate", "director")
	full := movieBody("Heat 3")
	full["language"] = "Hindi" // one language as a string, as the original took it
	full["releaseStatus"] = "unreleased"
	got = data[core.Movie](t, s.expect(s.do(req{method: "PUT", path: path, token: u.admin, body: full}), 200))
	if got.Name != "Heat 3" || len(got.Language) != 1 || got.Language[0] != "Hindi" || got.ReleaseStatus != "UNRELEASED" {
		t.Fatalf("replaced %+v", got)
	}
	s.expect(s.do(req{method: "PUT", path: base + "/movies/" + bson.NewObjectID().Hex(), token: u.admin, body: full}), 404)
	s.expect(s.do(req{method: "PUT", path: path, token: u.customer, body: full}), 403)

	// validation
	s.fieldsOf(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: `{}`}),
		"name", "description", "casts", "trailerUrl", "releaseDate", "director")
	bad := movieBody("Bad")
	bad["trailerUrl"] = "javascript:alert(1)"
	bad["releaseStatus"] = "SOON"
	bad["releaseDate"] = "yesterday"
	bad["casts"] = []string{}
	bad["name"] = strings.Repeat("n", 201)
	s.fieldsOf(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: bad}),
		"trailerUrl", "releaseStatus", "releaseDate", "casts", "name")
	s.fieldsOf(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: `{"name":5}`}), "name")
	s.fieldsOf(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: `{"language":{}}`}), "language")
	s.expect(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: `{"name":`}), 400)
	rfc := movieBody("Dated")
	rfc["releaseDate"] = "2024-01-15T18:30:00.000Z"
	if d := s.createMovie(u.admin, "x"); d.ID == "" {
		t.Fatal("no id")
	}
	if got := data[core.Movie](t, s.expect(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: rfc}), 201)); got.ReleaseDate != "2024-01-15T18:30:00.000Z" {
		t.Errorf("release date not kept as given: %q", got.ReleaseDate)
	}

	// mass assignment: server-owned fields are refused
	for _, k := range []string{"_id", "owner", "createdAt", "updatedAt"} {
		b := movieBody("Mass")
		b[k] = "000000000000000000000001"
		s.fieldsOf(s.do(req{method: "POST", path: base + "/movies", token: u.admin, body: b}), k)
		s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.admin, body: map[string]any{k: "x"}}), k)
	}

	// delete
	s.expect(s.do(req{method: "DELETE", path: path}), 401)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.customer}), 403)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.pending}), 403)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientA}), 200)
	s.expect(s.do(req{method: "GET", path: path}), 404)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientA}), 404)
	s.fieldsOf(s.do(req{method: "DELETE", path: base + "/movies/12", token: u.clientA}), "id")
}

func TestCatalogueTheatreRoutes(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	u := s.catalogueUsers()
	body := theatreBody("Rex", "Pune", 411001)

	s.expect(s.do(req{method: "POST", path: base + "/theatres", body: body}), 401)
	s.expect(s.do(req{method: "POST", path: base + "/theatres", token: u.customer, body: body}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/theatres", token: u.pending, body: body}), 403)
	th := s.createTheatre(u.clientA, "Rex", "Pune", 411001)
	if th.ID == "" || th.Owner != u.clientAID || th.PinCode != 411001 || th.City != "Pune" || th.Movies == nil || len(th.Movies) != 0 {
		t.Fatalf("created %+v", th)
	}
	if th2 := s.createTheatre(u.admin, "Plaza", "Pune", "411002"); th2.PinCode != 411002 {
		t.Errorf("pinCode as a string: %+v", th2)
	}

	got := data[core.Theatre](t, s.expect(s.do(req{method: "GET", path: base + "/theatres/" + th.ID}), 200))
	if got.ID != th.ID || got.Owner != u.clientAID {
		t.Fatalf("get %+v", got)
	}
	s.expect(s.do(req{method: "GET", path: base + "/theatres/" + bson.NewObjectID().Hex()}), 404)
	s.fieldsOf(s.do(req{method: "GET", path: base + "/theatres/zzz"}), "id")

	// only the owner or an admin changes it
	path := base + "/theatres/" + th.ID
	for _, method := range []string{"PATCH", "PUT"} {
		b := theatreBody("Rex 2", "Pune", 411001)
		s.expect(s.do(req{method: method, path: path, body: b}), 401)
		s.expect(s.do(req{method: method, path: path, token: u.customer, body: b}), 403)
		s.expect(s.do(req{method: method, path: path, token: u.pending, body: b}), 403)
		s.expect(s.do(req{method: method, path: path, token: u.clientB, body: b}), 403)
		s.expect(s.do(req{method: method, path: base + "/theatres/" + bson.NewObjectID().Hex(), token: u.admin, body: b}), 404)
		s.fieldsOf(s.do(req{method: method, path: base + "/theatres/bad", token: u.admin, body: b}), "id")
	}
	got = data[core.Theatre](t, s.expect(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"city":"Mumbai"}`}), 200))
	if got.City != "Mumbai" || got.Name != "Rex" || got.Owner != u.clientAID {
		t.Fatalf("patched %+v", got)
	}
	got = data[core.Theatre](t, s.expect(s.do(req{method: "PUT", path: path, token: u.admin,
		body: map[string]any{"name": "Rex 3", "city": "Goa", "pinCode": 403001}}), 200))
	if got.Name != "Rex 3" || got.City != "Goa" || got.Address != "" || got.Owner != u.clientAID {
		t.Fatalf("replaced %+v", got)
	}
	s.fieldsOf(s.do(req{method: "PUT", path: path, token: u.admin, body: `{"name":"x"}`}), "city", "pinCode")

	// validation and mass assignment
	s.fieldsOf(s.do(req{method: "POST", path: base + "/theatres", token: u.admin, body: `{}`}), "name", "city", "pinCode")
	for _, pin := range []any{"abc", 1234567, -1, 0, 12.5, true, "", "+12"} {
		s.fieldsOf(s.do(req{method: "POST", path: base + "/theatres", token: u.admin, body: theatreBody("P", "C", pin)}), "pinCode")
	}
	for _, k := range []string{"_id", "owner", "createdAt", "updatedAt", "movies"} {
		b := theatreBody("Mass", "Pune", 411001)
		b[k] = []string{bson.NewObjectID().Hex()}
		s.fieldsOf(s.do(req{method: "POST", path: base + "/theatres", token: u.clientB, body: b}), k)
		s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: map[string]any{k: u.clientAID}}), k)
	}
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"Owner":"x"}`}), "owner")

	// the theatre's movies
	m1, m2 := s.createMovie(u.admin, "One"), s.createMovie(u.admin, "Two")
	mpath := path + "/movies"
	add := map[string]any{"movieIds": []string{m1.ID, m2.ID, m1.ID}, "insert": true}
	s.expect(s.do(req{method: "PATCH", path: mpath, body: add}), 401)
	s.expect(s.do(req{method: "PATCH", path: mpath, token: u.customer, body: add}), 403)
	s.expect(s.do(req{method: "PATCH", path: mpath, token: u.clientB, body: add}), 403)
	got = data[core.Theatre](t, s.expect(s.do(req{method: "PATCH", path: mpath, token: u.clientA, body: add}), 200))
	if len(got.Movies) != 2 {
		t.Fatalf("after adding: %+v", got)
	}
	s.expect(s.do(req{method: "PATCH", path: mpath, token: u.clientA, body: add}), 200) // again: still a set
	ms := data[[]core.Movie](t, s.expect(s.do(req{method: "GET", path: mpath}), 200))
	if len(ms) != 2 || ms[0].Name == "" {
		t.Fatalf("theatre's movies: %+v", ms)
	}
	running := func(movieID string) bool {
		return data[bool](t, s.expect(s.do(req{method: "GET", path: path + "/movies/" + movieID}), 200))
	}
	if !running(m1.ID) || !running(m2.ID) {
		t.Fatal("movies not running after adding them")
	}
	got = data[core.Theatre](t, s.expect(s.do(req{method: "PATCH", path: mpath, token: u.admin,
		body: map[string]any{"movieIds": []string{m1.ID}, "insert": false}}), 200))
	if len(got.Movies) != 1 || got.Movies[0] != m2.ID || running(m1.ID) || !running(m2.ID) {
		t.Fatalf("after removing: %+v", got)
	}
	s.expect(s.do(req{method: "PATCH", path: mpath, token: u.admin, body: map[string]any{"movieIds": []string{bson.NewObjectID().Hex()}, "insert": true}}), 404)
	s.fieldsOf(s.do(req{method: "PATCH", path: mpath, token: u.admin, body: map[string]any{"movieIds": []string{"bad"}, "insert": true}}), "movieIds")
	s.fieldsOf(s.do(req{method: "PATCH", path: mpath, token: u.admin, body: map[string]any{"movieIds": []string{m1.ID}}}), "insert")
	s.fieldsOf(s.do(req{method: "PATCH", path: mpath, token: u.admin, body: map[string]any{"movieIds": []string{}, "insert": true}}), "movieIds")
	s.expect(s.do(req{method: "PATCH", path: base + "/theatres/" + bson.NewObjectID().Hex() + "/movies", token: u.admin, body: add}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/theatres/" + bson.NewObjectID().Hex() + "/movies"}), 404)
	s.expect(s.do(req{method: "GET", path: base + "/theatres/" + bson.NewObjectID().Hex() + "/movies/" + m1.ID}), 404)
	s.fieldsOf(s.do(req{method: "GET", path: path + "/movies/bad"}), "movieId")
	s.fieldsOf(s.do(req{method: "GET", path: base + "/theatres/bad/movies/" + m1.ID}), "theatreId")

	// deleting a movie takes it off the theatres
	s.expect(s.do(req{method: "DELETE", path: base + "/movies/" + m2.ID, token: u.admin}), 200)
	if got := data[core.Theatre](t, s.expect(s.do(req{method: "GET", path: path}), 200)); len(got.Movies) != 0 {
		t.Fatalf("deleted movie still listed: %+v", got)
	}

	// delete
	s.expect(s.do(req{method: "DELETE", path: path}), 401)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.customer}), 403)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientB}), 403)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientA}), 200)
	s.expect(s.do(req{method: "GET", path: path}), 404)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.admin}), 404)
}

func TestCatalogueShowRoutes(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	u := s.catalogueUsers()
	th := s.createTheatre(u.clientA, "Rex", "Pune", 411001)
	other := s.createTheatre(u.clientB, "Other", "Pune", 411001)
	m := s.createMovie(u.admin, "Heat")
	const timing = "2030-06-01T18:30:00Z"
	body := map[string]any{"theatreId": th.ID, "movieId": m.ID, "timing": timing, "noOfSeats": 40, "price": 250.5}

	s.expect(s.do(req{method: "POST", path: base + "/shows", body: body}), 401)
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.customer, body: body}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.pending, body: body}), 403)
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.clientB, body: body}), 403) // not B's theatre
	sh := data[core.Show](t, s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.clientA, body: body}), 201))
	if sh.ID == "" || sh.TheatreID != th.ID || sh.MovieID != m.ID || sh.Timing != timing || sh.NoOfSeats != 40 ||
		sh.SeatsPerRow != core.DefaultSeatsPerRow || sh.Price != 250.5 {
		t.Fatalf("created %+v", sh)
	}
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: body}), 409) // same identity
	// the show put the movie on the theatre
	if !data[bool](t, s.expect(s.do(req{method: "GET", path: base + "/theatres/" + th.ID + "/movies/" + m.ID}), 200)) {
		t.Error("the show's movie is not running in its theatre")
	}
	admins := s.createShow(u.admin, other.ID, m.ID, "2030-06-01") // an admin creates in any theatre
	if admins.Format != "3D" {
		t.Errorf("format: %+v", admins)
	}

	// references must exist
	nb := map[string]any{"theatreId": th.ID, "movieId": bson.NewObjectID().Hex(), "timing": timing, "noOfSeats": 1, "price": 1}
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: nb}), 404)
	nb["movieId"], nb["theatreId"] = m.ID, bson.NewObjectID().Hex()
	s.expect(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: nb}), 404)

	// validation
	s.fieldsOf(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: `{}`}), "theatreId", "movieId", "timing", "noOfSeats", "price")
	s.fieldsOf(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: map[string]any{
		"theatreId": "x", "movieId": 5, "timing": "tomorrow", "noOfSeats": 5001, "price": 1.234, "seatsPerRow": 101, "format": "<b>"}}),
		"theatreId", "movieId", "timing", "noOfSeats", "price", "seatsPerRow", "format")
	s.fieldsOf(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: map[string]any{
		"theatreId": th.ID, "movieId": m.ID, "timing": timing, "noOfSeats": 0, "price": -1}}), "noOfSeats", "price")
	s.fieldsOf(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: `{"noOfSeats": 10.5}`}), "noOfSeats")
	mass := map[string]any{"theatreId": th.ID, "movieId": m.ID, "timing": "2031-01-01", "noOfSeats": 10, "price": 1, "_id": bson.NewObjectID().Hex()}
	s.fieldsOf(s.do(req{method: "POST", path: base + "/shows", token: u.admin, body: mass}), "_id")

	// reads
	got := data[core.Show](t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + sh.ID}), 200))
	if got.ID != sh.ID {
		t.Fatalf("get %+v", got)
	}
	s.expect(s.do(req{method: "GET", path: base + "/shows/" + bson.NewObjectID().Hex()}), 404)
	s.fieldsOf(s.do(req{method: "GET", path: base + "/shows/nope"}), "id")
	if l := data[[]core.Show](t, s.expect(s.do(req{method: "GET", path: base + "/shows?theatreId=" + th.ID}), 200)); len(l) != 1 || l[0].ID != sh.ID {
		t.Fatalf("shows of the theatre: %+v", l)
	}
	if l := data[[]core.Show](t, s.expect(s.do(req{method: "GET", path: base + "/shows?movieId=" + m.ID}), 200)); len(l) != 2 {
		t.Fatalf("shows of the movie: %+v", l)
	}
	if l := data[[]core.Show](t, s.expect(s.do(req{method: "GET", path: base + "/shows"}), 200)); len(l) != 2 {
		t.Fatalf("all shows: %+v", l)
	}
	s.fieldsOf(s.do(req{method: "GET", path: base + "/shows?theatreId=bad"}), "theatreId")

	// the booking engine's lookups
	ctx := t.Context()
	found, err := s.m.Catalogue.FindShow(ctx, th.ID, m.ID, timing)
	if err != nil || found.ID != sh.ID {
		t.Fatalf("FindShow: %+v %v", found, err)
	}
	if _, err := s.m.Catalogue.FindShow(ctx, th.ID, m.ID, "2030-06-01T18:31:00Z"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("FindShow of another timing: %v", err)
	}

	// changes: only the theatre's owner or an admin; theatre and movie never change
	path := base + "/shows/" + sh.ID
	s.expect(s.do(req{method: "PATCH", path: path, body: `{"price":300}`}), 401)
	s.expect(s.do(req{method: "PATCH", path: path, token: u.customer, body: `{"price":300}`}), 403)
	s.expect(s.do(req{method: "PATCH", path: path, token: u.clientB, body: `{"price":300}`}), 403)
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: map[string]any{"theatreId": other.ID}}), "theatreId")
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: map[string]any{"movieId": m.ID, "price": 1}}), "movieId")
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"noOfSeats":39}`}), "noOfSeats")
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"seatsPerRow":12}`}), "seatsPerRow")
	s.fieldsOf(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"price":1.001}`}), "price")
	s.expect(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{}`}), 400)
	got = data[core.Show](t, s.expect(s.do(req{method: "PATCH", path: path, token: u.clientA, body: `{"price":300,"noOfSeats":50}`}), 200))
	if got.Price != 300 || got.NoOfSeats != 50 || got.TheatreID != th.ID || got.Timing != timing {
		t.Fatalf("patched %+v", got)
	}
	if f, err := s.m.Catalogue.FindShow(ctx, th.ID, m.ID, timing); err != nil || f.Price != 300 {
		t.Fatalf("FindShow after the change: %+v %v", f, err)
	}
	s.expect(s.do(req{method: "PATCH", path: base + "/shows/" + admins.ID, token: u.admin, body: map[string]any{"timing": "2030-06-01"}}), 200)
	s.expect(s.do(req{method: "PATCH", path: base + "/shows/" + bson.NewObjectID().Hex(), token: u.admin, body: `{"price":1}`}), 404)

	// deleting a theatre or a movie with shows is refused
	s.expect(s.do(req{method: "DELETE", path: base + "/theatres/" + th.ID, token: u.admin}), 409)
	s.expect(s.do(req{method: "DELETE", path: base + "/movies/" + m.ID, token: u.admin}), 409)

	s.expect(s.do(req{method: "DELETE", path: path}), 401)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientB}), 403)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientA}), 200)
	s.expect(s.do(req{method: "GET", path: path}), 404)
	s.expect(s.do(req{method: "DELETE", path: path, token: u.clientA}), 404)
	if _, err := s.m.Catalogue.FindShow(ctx, th.ID, m.ID, timing); !errs.Is(err, errs.NotFound) {
		t.Fatalf("FindShow of a deleted show: %v", err)
	}
	// the identity is free again
	s.createShow(u.clientA, th.ID, m.ID, timing)
}

func TestCatalogueListFilters(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	u := s.catalogueUsers()
	for i := range 5 {
		s.createMovie(u.admin, fmt.Sprintf("M%d", i))
	}
	list := func(q string) ([]core.Movie, response) {
		r := s.expect(s.do(req{method: "GET", path: base + "/movies" + q}), 200)
		return data[[]core.Movie](t, r), r
	}
	if ms, r := list(""); len(ms) != 5 || r.header.Get("X-Total-Count") != "5" {
		t.Fatalf("all: %d %q", len(ms), r.header.Get("X-Total-Count"))
	}
	if ms, _ := list("?name=M2"); len(ms) != 1 || ms[0].Name != "M2" {
		t.Fatalf("by name: %+v", ms)
	}
	if ms, _ := list("?name=nobody"); len(ms) != 0 {
		t.Fatalf("unknown name: %+v", ms)
	}
	page1, r := list("?limit=2")
	page3, _ := list("?limit=2&skip=4")
	if len(page1) != 2 || len(page3) != 1 || r.header.Get("X-Total-Count") != "5" || page1[0].Name != "M0" || page3[0].Name != "M4" {
		t.Fatalf("pages: %+v %+v", page1, page3)
	}
	for _, q := range []string{"?limit=0", "?limit=abc", "?limit=501", "?skip=-1", "?skip=x"} {
		field := strings.SplitN(q[1:], "=", 2)[0]
		s.fieldsOf(s.do(req{method: "GET", path: base + "/movies" + q}), field)
	}

	a := s.createTheatre(u.clientA, "Rex", "Pune", 411001)
	s.createTheatre(u.clientA, "Plaza", "Pune", 411002)
	s.createTheatre(u.clientB, "Rex", "Goa", 403001)
	m := s.createMovie(u.admin, "Runs")
	s.expect(s.do(req{method: "PATCH", path: base + "/theatres/" + a.ID + "/movies", token: u.clientA,
		body: map[string]any{"movieIds": []string{m.ID}, "insert": true}}), 200)
	theatres := func(q string) []core.Theatre {
		return data[[]core.Theatre](t, s.expect(s.do(req{method: "GET", path: base + "/theatres" + q}), 200))
	}
	for q, want := range map[string]int{"": 3, "?city=Pune": 2, "?city=Goa": 1, "?name=Rex": 2, "?pinCode=411002": 1,
		"?city=Pune&name=Rex": 1, "?movieId=" + m.ID: 1, "?limit=1&skip=2": 1, "?skip=3": 0} {
		if got := theatres(q); len(got) != want {
			t.Errorf("theatres%s: %d, want %d", q, len(got), want)
		}
	}
	for _, q := range []string{"?pinCode=abc", "?pinCode=1234567", "?movieId=bad", "?limit=-5"} {
		field := strings.SplitN(q[1:], "=", 2)[0]
		s.fieldsOf(s.do(req{method: "GET", path: base + "/theatres" + q}), field)
	}
}

// rawGet is a GET whose answer may have no body (304).
func (s *service) rawGet(path string, header map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	hr, _ := http.NewRequest("GET", s.base+path, nil)
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestCatalogueCacheETagAndInvalidation(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	u := s.catalogueUsers()
	m := s.createMovie(u.admin, "Cached")
	for _, path := range []string{base + "/movies", base + "/movies/" + m.ID} {
		r1 := s.expect(s.do(req{method: "GET", path: path}), 200)
		etag := r1.header.Get("ETag")
		if etag == "" || !strings.HasPrefix(etag, `"`) || r1.header.Get("Cache-Control") == "" {
			t.Fatalf("%s: headers %v", path, r1.header)
		}
		r2 := s.expect(s.do(req{method: "GET", path: path}), 200)
		if r2.header.Get("ETag") != etag || r2.header.Get("X-Cache") != "HIT" || string(r2.raw) != string(r1.raw) {
			t.Fatalf("%s: second read %v", path, r2.header)
		}
		resp, body := s.rawGet(path, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != 304 || len(body) != 0 || resp.Header.Get("ETag") != etag {
			t.Fatalf("%s: If-None-Match: %d %q", path, resp.StatusCode, body)
		}
		resp, _ = s.rawGet(path, map[string]string{"If-None-Match": `"other", ` + etag})
		if resp.StatusCode != 304 {
			t.Fatalf("%s: If-None-Match list: %d", path, resp.StatusCode)
		}
		resp, _ = s.rawGet(path, map[string]string{"If-None-Match": `"stale"`})
		if resp.StatusCode != 200 {
			t.Fatalf("%s: other etag: %d", path, resp.StatusCode)
		}
	}
	// a write in this process is seen by the very next read
	old := s.expect(s.do(req{method: "GET", path: base + "/movies/" + m.ID}), 200).header.Get("ETag")
	for i := range 5 {
		name := fmt.Sprintf("Renamed %d", i)
		s.expect(s.do(req{method: "PATCH", path: base + "/movies/" + m.ID, token: u.clientA, body: map[string]string{"name": name}}), 200)
		if got := data[core.Movie](t, s.expect(s.do(req{method: "GET", path: base + "/movies/" + m.ID}), 200)); got.Name != name {
			t.Fatalf("read after write: %q, want %q", got.Name, name)
		}
		if l := data[[]core.Movie](t, s.expect(s.do(req{method: "GET", path: base + "/movies"}), 200)); l[0].Name != name {
			t.Fatalf("list after write: %q, want %q", l[0].Name, name)
		}
	}
	resp, _ := s.rawGet(base+"/movies/"+m.ID, map[string]string{"If-None-Match": old})
	if resp.StatusCode != 200 {
		t.Fatalf("old ETag after a change: %d", resp.StatusCode)
	}
	// theatres and shows too
	th := s.createTheatre(u.clientA, "T", "Pune", 411001)
	s.expect(s.do(req{method: "GET", path: base + "/theatres/" + th.ID}), 200)
	s.expect(s.do(req{method: "GET", path: base + "/theatres/" + th.ID + "/movies/" + m.ID}), 200)
	sh := s.createShow(u.clientA, th.ID, m.ID, "2030-01-01T10:00:00Z")
	if !data[bool](t, s.expect(s.do(req{method: "GET", path: base + "/theatres/" + th.ID + "/movies/" + m.ID}), 200)) {
		t.Fatal("a show's movie not seen running after the show was created")
	}
	s.expect(s.do(req{method: "GET", path: base + "/shows/" + sh.ID}), 200)
	s.expect(s.do(req{method: "PATCH", path: base + "/shows/" + sh.ID, token: u.clientA, body: `{"price":99}`}), 200)
	if got := data[core.Show](t, s.expect(s.do(req{method: "GET", path: base + "/shows/" + sh.ID}), 200)); got.Price != 99 {
		t.Fatalf("show after write: %+v", got)
	}
	// metrics
	resp, body := s.rawGet("/metrics", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `cineflow_core_cache_requests_total{cache="mba",result="hit"}`) ||
		!strings.Contains(string(body), `cineflow_core_cache_requests_total{cache="mba",result="miss"}`) {
		t.Errorf("cache metrics missing:\n%s", grepLines(string(body), "cineflow_core_cache"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestCatalogueStalenessBoundedAcrossProcesses(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CatalogueConfig = CatalogueConfig{CacheTTL: 500 * time.Millisecond, CacheEntries: 100}
	s1 := startWith(t, cfg)
	s2 := startWith(t, cfg) // another replica on the same database
	u := s1.catalogueUsers()
	m := s1.createMovie(u.admin, "Before")
	path := base + "/movies/" + m.ID
	s1.expect(s1.do(req{method: "GET", path: path}), 200) // cached in s1
	s1.expect(s1.do(req{method: "GET", path: base + "/movies"}), 200)

	tok := s2.token(adminEmail, adminPassword)
	changed := time.Now()
	s2.expect(s2.do(req{method: "PATCH", path: path, token: tok, body: `{"name":"After"}`}), 200)
	// the replica that made the change sees it at once
	if got := data[core.Movie](t, s2.expect(s2.do(req{method: "GET", path: path}), 200)); got.Name != "After" {
		t.Fatalf("s2: %q", got.Name)
	}
	// the other sees it within the TTL (the default 2s applies until httpapi.Options carries
	// the catalogue options)
	bound := max(cfg.CacheTTL, 2*time.Second) + 1500*time.Millisecond
	for {
		one := data[core.Movie](t, s1.expect(s1.do(req{method: "GET", path: path}), 200))
		all := data[[]core.Movie](t, s1.expect(s1.do(req{method: "GET", path: base + "/movies"}), 200))
		if one.Name == "After" && all[0].Name == "After" {
			t.Logf("seen by the other replica after %v", time.Since(changed).Round(time.Millisecond))
			break
		}
		if time.Since(changed) > bound {
			t.Fatalf("the other replica still shows %q / %q after %v", one.Name, all[0].Name, time.Since(changed))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCatalogueConfigDefaults(t *testing.T) {
	t.Parallel()
	var c CatalogueConfig
	if c.showCacheTTL() != 0 {
		t.Error("zero TTL should keep the default")
	}
	c.CacheTTL = 5 * time.Second
	if c.showCacheTTL() != time.Second || c.HTTPOptions().CacheTTL != 5*time.Second {
		t.Error("show cache TTL is capped at 1s")
	}
	c.CacheEntries = -1
	if c.Validate() == nil {
		t.Error("negative entries accepted")
	}
}
