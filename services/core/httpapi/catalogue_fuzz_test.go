package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// catalogueTestServer is the app with the catalogue on a new database, and an admin's token.
func catalogueTestServer(tb testing.TB) (srv *httpx.Server, token string, cat *catalogue.Catalogue) {
	tb.Helper()
	db := devdb.TestDB(tb)
	users := mongostore.New(db)
	stores := mongostore.NewCatalogue(db)
	ctx := context.Background()
	if err := users.EnsureIndexes(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := stores.EnsureIndexes(ctx); err != nil {
		tb.Fatal(err)
	}
	acc, err := accounts.NewAccounts(users, accounts.AccountsOptions{Secret: []byte("fuzz-secret-0123456789abcdef0123456789"), BcryptCost: 4})
	if err != nil {
		tb.Fatal(err)
	}
	admin, _, err := acc.EnsureAdmin(ctx, "root@example.com", "admin-pass-1234")
	if err != nil {
		tb.Fatal(err)
	}
	token, err = acc.IssueToken(admin)
	if err != nil {
		tb.Fatal(err)
	}
	cat = catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{})
	srv = New(Services{Accounts: acc, Users: users, Catalogue: cat}, Options{HTTP: httpx.Options{BodyLimit: 64 << 10}})
	return srv, token, cat
}

// FuzzCatalogueCreate posts any body to POST /movies, /theatres and /shows with an admin's
// token: never a 5xx, always the envelope, success matching the status.
func FuzzCatalogueCreate(f *testing.F) {
	srv, token, cat := catalogueTestServer(f)
	admin := &core.User{ID: "650000000000000000000001", Email: "root@example.com", Role: core.RoleAdmin, Status: core.StatusApproved}
	ctx := context.Background()
	th, err := cat.CreateTheatre(ctx, admin, core.TheatrePatch{Name: ptrTo("Rex"), City: ptrTo("Pune"), PinCode: ptrTo(411001)})
	if err != nil {
		f.Fatal(err)
	}
	m, err := cat.CreateMovie(ctx, admin, core.MoviePatch{Name: ptrTo("Heat"), Description: ptrTo("d"), Casts: &[]string{"A"},
		TrailerURL: ptrTo("https://x.example/t"), ReleaseDate: ptrTo("2024-01-15"), Director: ptrTo("D")})
	if err != nil {
		f.Fatal(err)
	}
	seeds := []struct {
		route uint8
		body  string
	}{
		{0, `{"name":"Heat","description":"d","casts":["A"],"trailerUrl":"https://x.example/t","releaseDate":"2024-01-15","director":"D","releaseStatus":"RELEASED"}`},
		{0, `{"name":"L","description":"d","casts":["A"],"trailerUrl":"http://x.example","releaseDate":"2024-01-15T10:00:00Z","director":"D","language":"Hindi"}`},
		{0, `{"name":"M","description":"d","casts":["A"],"trailerUrl":"http://x.example","releaseDate":"2024-01-15","director":"D","_id":"650000000000000000000001","owner":"x"}`},
		{0, `{"language":{},"casts":"A","releaseStatus":5}`},
		{0, `{"name":"\u0000","casts":[null],"trailerUrl":"javascript:alert(1)"}`},
		{1, `{"name":"Rex","city":"Pune","pinCode":411001,"address":"1 Main St"}`},
		{1, `{"name":"Rex","city":"Pune","pinCode":"411001"}`},
		{1, `{"name":"Rex","city":"Pune","pinCode":1e300}`},
		{1, `{"name":"Rex","city":"Pune","pinCode":"-0"}`},
		{1, `{"name":"Rex","city":"Pune","pinCode":12.5,"movies":[],"Owner":"me"}`},
		{1, `{"pinCode":{"$gt":0}}`},
		{2, `{"theatreId":"` + th.ID + `","movieId":"` + m.ID + `","timing":"2030-06-01T18:30:00Z","noOfSeats":40,"price":250.5,"format":"3D"}`},
		{2, `{"theatreId":"` + th.ID + `","movieId":"` + m.ID + `","timing":"2030-06-01","noOfSeats":5000,"seatsPerRow":100,"price":0}`},
		{2, `{"theatreId":{"$ne":null},"movieId":["x"],"timing":5,"noOfSeats":1e10,"price":"1"}`},
		{2, `{"theatreId":"` + th.ID + `","movieId":"` + m.ID + `","timing":"2030-06-01","noOfSeats":10,"price":1.005}`},
		{2, `{"theatreId":"` + th.ID + `","movieId":"650000000000000000000009","timing":"2030-06-01","noOfSeats":10,"price":1}`},
		{0, ``}, {1, `null`}, {2, `[]`}, {0, `{"name":"a"} {}`}, {1, "\xff\xfe"}, {2, `{"price":NaN}`},
	}
	for _, s := range seeds {
		f.Add(s.route, s.body)
	}
	routes := []string{"/movies", "/theatres", "/shows"}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		path := BasePath + routes[int(route)%len(routes)]
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(HeaderAccessToken, token)
		resp, err := srv.App.Test(r, 30_000)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s: status %d for %q: %s", path, resp.StatusCode, body, raw)
		}
		var env struct {
			Success *bool           `json:"success"`
			Error   json.RawMessage `json:"error"`
			Data    json.RawMessage `json:"data"`
			Message *string         `json:"message"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || env.Success == nil || env.Message == nil || env.Error == nil || env.Data == nil {
			t.Fatalf("%s: not an envelope: %s", path, raw)
		}
		if *env.Success != (resp.StatusCode < 400) {
			t.Fatalf("%s: success %v with %d", path, *env.Success, resp.StatusCode)
		}
		if resp.StatusCode == 201 {
			var doc struct {
				ID    string `json:"_id"`
				Owner string `json:"owner"`
			}
			if json.Unmarshal(env.Data, &doc) != nil || !core.IsID(doc.ID) || doc.ID == "650000000000000000000001" {
				t.Fatalf("%s: created %s from %q", path, env.Data, body)
			}
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
