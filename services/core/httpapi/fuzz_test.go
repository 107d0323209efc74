package httpapi

import (
	"bytes"
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
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// testServer is the whole app on a real store of a new database, served in memory.
func testServer(tb testing.TB) *httpx.Server {
	tb.Helper()
	store := mongostore.New(devdb.TestDB(tb))
	if err := store.EnsureIndexes(context.Background()); err != nil {
		tb.Fatal(err)
	}
	acc, err := accounts.NewAccounts(store, accounts.AccountsOptions{Secret: []byte("fuzz-secret-0123456789abcdef0123456789"), BcryptCost: 4})
	if err != nil {
		tb.Fatal(err)
	}
	return New(Services{Accounts: acc, Users: store}, Options{HTTP: httpx.Options{BodyLimit: 64 << 10}})
}

// FuzzSignUp sends any body and content type to the sign-up handler: never a 5xx, always the
// envelope, never a password hash; a success is CUSTOMER/APPROVED or CLIENT|ADMIN/PENDING with
// a lowercased email, and can sign in with the password it was given.
func FuzzSignUp(f *testing.F) {
	seeds := []struct{ body, contentType string }{
		{`{"name":"Ann","email":"ann@example.com","password":"password-1"}`, "application/json"},
		{`{"name":"Bob","email":"BOB@Example.com ","password":"password-1","userRole":"CLIENT"}`, "application/json; charset=utf-8"},
		{`{"name":"Eve","email":"eve@example.com","password":"password-1","userRole":"ADMIN","userStatus":"APPROVED","status":"APPROVED"}`, ""},
		{`{"name":"Kim","email":"kim@example.com","password":"password-1","userRole":"KING"}`, "application/json"},
		{`{"name":"","email":"x","password":"1"}`, "application/json"},
		{`{"name":"Long","email":"l@example.com","password":"` + strings.Repeat("p", 73) + `"}`, "application/json"},
		{`{"name":"\u0000","email":"a@b.cc","password":"password-1"}`, "application/json"},
		{`{"name":"N","email":"\"a b\"@example.com","password":"password-1"}`, "application/json"},
		{`{"name":"N","email":"Name <n@example.com>","password":"password-1"}`, "application/json"},
		{`{"name":5,"email":[],"password":{}}`, "application/json"},
		{`{"name":"a","name":"b","email":"ab@example.com","password":"password-1"}`, "application/json"},
		{"", "application/json"},
		{"null", "application/json"},
		{"[1,2]", "application/json"},
		{`{"name":"T","email":"t@example.com","password":"password-1"} {}`, "application/json"},
		{`{"name":"T","email":"t@example.com","password":"password-1"}`, "text/plain"},
		{"\xff\xfe", "application/json"},
		{`{"name":"E","email":"` + strings.Repeat("e", 300) + `@example.com","password":"password-1"}`, "application/json"},
		{`{"name":"B","email":"b@example.com","password":"` + strings.Repeat("p", 20<<10) + `"}`, "application/json"},
	}
	for _, s := range seeds {
		f.Add(s.body, s.contentType)
	}
	srv := testServer(f)
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest("POST", BasePath+"/auth/signup", strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		resp, err := srv.App.Test(r, 30_000)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, raw)
		}
		var env struct {
			Success *bool           `json:"success"`
			Error   json.RawMessage `json:"error"`
			Data    json.RawMessage `json:"data"`
			Message *string         `json:"message"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || env.Success == nil || env.Message == nil || env.Error == nil || env.Data == nil {
			t.Fatalf("not an envelope: %s", raw)
		}
		if *env.Success != (resp.StatusCode < 400) {
			t.Fatalf("success %v with %d", *env.Success, resp.StatusCode)
		}
		if bytes.Contains(raw, []byte("$2a$")) || bytes.Contains(bytes.ToLower(raw), []byte(`hash"`)) {
			t.Fatalf("hash leaked: %s", raw)
		}
		if resp.StatusCode != 201 {
			return
		}
		var u core.User
		if err := json.Unmarshal(env.Data, &u); err != nil {
			t.Fatal(err)
		}
		if u.ID == "" || u.Email != strings.ToLower(u.Email) || !u.Role.Valid() || u.Status != core.InitialStatus(u.Role) {
			t.Fatalf("created %+v from %q", u, body)
		}
		var in struct {
			Password string `json:"password"`
		}
		_ = json.Unmarshal([]byte(body), &in)
		sb, _ := json.Marshal(map[string]string{"email": u.Email, "password": in.Password})
		sr := httptest.NewRequest("POST", BasePath+"/auth/signin", bytes.NewReader(sb))
		sr.Header.Set("Content-Type", "application/json")
		sresp, err := srv.App.Test(sr, 30_000)
		if err != nil {
			t.Fatal(err)
		}
		sresp.Body.Close()
		if sresp.StatusCode != 200 && sresp.StatusCode != 429 {
			t.Fatalf("sign-in after sign-up of %q: %d", body, sresp.StatusCode)
		}
	})
}

// FuzzSignIn sends any body to the sign-in handler of a store holding one account: never a
// 5xx, always the envelope, never a hash; 200 only for that account's password, and a 400
// for an email over 254 bytes.
func FuzzSignIn(f *testing.F) {
	for _, s := range []string{
		`{"email":"ann@example.com","password":"password-1"}`,
		`{"email":" ANN@example.com ","password":"password-1"}`,
		`{"email":"ann@example.com","password":"password-2"}`,
		`{"email":"ann@example.com","password":"password-1` + strings.Repeat("x", 80) + `"}`,
		`{"email":"nobody@example.com","password":"password-1"}`,
		`{"email":"` + strings.Repeat("a", 243) + `@example.com","password":"password-1"}`,
		`{"email":"` + strings.Repeat("a", 300) + `","password":"password-1"}`,
		`{"email":"ann@example.com","password":"` + strings.Repeat("p", 20<<10) + `"}`,
		`{"email":"","password":""}`, `{"email":5}`, `[]`, `null`, ``, `{"email":"a@b.cc","password":"x"} {}`,
	} {
		f.Add(s)
	}
	srv := testServer(f)
	signUp := httptest.NewRequest("POST", BasePath+"/auth/signup",
		strings.NewReader(`{"name":"Ann","email":"ann@example.com","password":"password-1"}`))
	signUp.Header.Set("Content-Type", "application/json")
	if resp, err := srv.App.Test(signUp, 30_000); err != nil || resp.StatusCode != 201 {
		f.Fatalf("sign-up: %v %v", resp, err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", BasePath+"/auth/signin", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		resp, err := srv.App.Test(r, 30_000)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, raw)
		}
		var env struct {
			Success *bool           `json:"success"`
			Error   json.RawMessage `json:"error"`
			Data    json.RawMessage `json:"data"`
			Message *string         `json:"message"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || env.Success == nil || env.Message == nil || env.Error == nil || env.Data == nil {
			t.Fatalf("not an envelope: %s", raw)
		}
		if bytes.Contains(raw, []byte("$2a$")) || bytes.Contains(bytes.ToLower(raw), []byte(`hash"`)) {
			t.Fatalf("hash leaked: %s", raw)
		}
		var in struct{ Email, Password string }
		decoded := json.Unmarshal([]byte(body), &in) == nil
		if resp.StatusCode == 200 && (!decoded || strings.ToLower(strings.TrimSpace(in.Email)) != "ann@example.com" || in.Password != "password-1") {
			t.Fatalf("signed in with %q", body)
		}
		if decoded && len(body) <= MaxAuthBodyBytes && len(strings.TrimSpace(in.Email)) > core.MaxEmailBytes && resp.StatusCode != 400 {
			t.Fatalf("email of %d bytes: %d", len(in.Email), resp.StatusCode)
		}
	})
}
