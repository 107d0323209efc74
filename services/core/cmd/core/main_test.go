package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/httpapi"
)

const base = httpapi.BasePath

var telemetryOnce sync.Once

func sharedTelemetry(context.Context) (func(context.Context) error, error) {
	var err error
	telemetryOnce.Do(func() { _, err = telemetry.Setup(context.Background(), "core-test", "test") })
	return func(context.Context) error { return nil }, err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testDBURL(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(devdb.TestURI(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + devdb.TestDatabase(t)
	return u.String()
}

const (
	testSecret    = "test-secret-0123456789abcdef0123456789abcdef"
	adminEmail    = "root@cineflow.test"
	adminPassword = "admin-pass-1234"
)

func testConfig(t testing.TB) Config {
	cfg := Config{
		Settings: httpx.Settings{Host: "127.0.0.1", BodyLimit: 1 << 20, ShutdownTimeout: 10 * time.Second},
		Port:     0, DBURL: testDBURL(t), DBConnectTimeout: 20 * time.Second,
		JWTSecret: testSecret, JWTTTL: time.Hour, BcryptCost: 4,
		AdminEmail: adminEmail, AdminPassword: adminPassword,
		// Limits out of the way of tests that are not about them (auth_limits_test.go is).
		AuthConfig: AuthConfig{SigninPerMinute: 60000, SigninBurst: 1000,
			SigninAddressFailuresPerMinute: 60000, SigninAddressFailureBurst: 1000,
			SigninAccountFailuresPerMinute: 60000, SigninAccountFailureBurst: 1000,
			SigninBackoffBase: time.Millisecond, SigninBackoffMax: time.Millisecond,
			SignupPerMinute: 60000, SignupBurst: 1000},
	}
	cfg.AppEnv, cfg.LogLevel = "development", "debug"
	return cfg
}

type service struct {
	t      *testing.T
	m      *Main
	cfg    Config
	base   string
	logs   *syncBuffer
	client *http.Client
}

func startWith(t *testing.T, cfg Config) *service {
	t.Helper()
	return startMain(t, &Main{Config: cfg})
}

// startMain runs m (its Config set) with the test's logger and telemetry.
func startMain(t *testing.T, m *Main) *service {
	t.Helper()
	logs := &syncBuffer{}
	cfg := m.Config
	m.Logger, m.SetupTelemetry = logging.NewTo(logs, "debug", "core"), sharedTelemetry
	if err := m.Run(t.Context()); err != nil {
		m.Close()
		t.Fatalf("Run: %v", err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	t.Cleanup(func() {
		// The client hangs up first: the server's drain then waits for no keep-alive
		// connection of ours (on a loaded machine it sometimes did, past its timeout).
		client.CloseIdleConnections()
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &service{t: t, m: m, cfg: cfg, base: "http://" + m.Addr(), logs: logs, client: client}
}

func startService(t *testing.T, edit func(*Config)) *service {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	return startWith(t, cfg)
}

type envelope struct {
	Success bool            `json:"success"`
	Error   json.RawMessage `json:"error"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

type response struct {
	status int
	header http.Header
	env    envelope
	raw    []byte
}

func (r response) fields() map[string]string {
	var f map[string]string
	_ = json.Unmarshal(r.env.Error, &f)
	return f
}

func (r response) errorText() string {
	var s string
	if json.Unmarshal(r.env.Error, &s) == nil {
		return s
	}
	return string(r.env.Error)
}

func (r response) user() core.User {
	var u core.User
	_ = json.Unmarshal(r.env.Data, &u)
	return u
}

type req struct {
	method, path string
	body         any
	header       map[string]string
	token        string // sent as x-access-token
}

func (s *service) do(r req) response {
	s.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	hr, err := http.NewRequest(r.method, s.base+r.path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("x-access-token", r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return checkEnvelope(s.t, r.method+" "+r.path, resp)
}

// checkEnvelope checks that every answer is the JSON envelope, success matching the status,
// and never carries a password hash.
func checkEnvelope(t testing.TB, what string, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", what, err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("%s: %d body is not JSON: %q", what, resp.StatusCode, raw)
	}
	for _, k := range []string{"success", "error", "data", "message"} {
		if _, ok := keys[k]; !ok {
			t.Fatalf("%s: envelope lacks %q: %s", what, k, raw)
		}
	}
	var env envelope
	_ = json.Unmarshal(raw, &env)
	if env.Success != (resp.StatusCode < 400) {
		t.Fatalf("%s: success=%v with status %d: %s", what, env.Success, resp.StatusCode, raw)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%s: Content-Type %q", what, resp.Header.Get("Content-Type"))
	}
	// A field whose name ends in "hash" (a quote follows it), or a bcrypt
	// hash anywhere. Not the bare word: a token's base64 may spell it.
	if bytes.Contains(bytes.ToLower(raw), []byte(`hash"`)) || bytes.Contains(raw, []byte("$2a$")) {
		t.Fatalf("%s: body leaks a password hash: %s", what, raw)
	}
	return response{status: resp.StatusCode, header: resp.Header, env: env, raw: raw}
}

func (s *service) expect(r response, status int) response {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func (s *service) signUp(name, email, password string, role core.Role) response {
	s.t.Helper()
	body := map[string]any{"name": name, "email": email, "password": password}
	if role != "" {
		body["userRole"] = role
	}
	return s.do(req{method: "POST", path: base + "/auth/signup", body: body})
}

func (s *service) signIn(email, password string) response {
	s.t.Helper()
	return s.do(req{method: "POST", path: base + "/auth/signin", body: map[string]string{"email": email, "password": password}})
}

// token signs in and returns the token.
func (s *service) token(email, password string) string {
	s.t.Helper()
	r := s.expect(s.signIn(email, password), 200)
	var sess accounts.Session
	if err := json.Unmarshal(r.env.Data, &sess); err != nil || sess.Token == "" {
		s.t.Fatalf("no token in %s", r.raw)
	}
	return sess.Token
}

func TestSignUpRolesStartRight(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	r := s.expect(s.signUp("Ann", "  Ann@Example.COM ", "password-1", ""), 201)
	u := r.user()
	if u.Role != core.RoleCustomer || u.Status != core.StatusApproved || u.Email != "ann@example.com" || u.ID == "" || u.Name != "Ann" {
		t.Errorf("customer: %+v", u)
	}
	if u.CreatedAt.IsZero() {
		t.Errorf("no createdAt: %s", r.raw)
	}
	u = s.expect(s.signUp("Bob", "bob@example.com", "password-1", core.RoleClient), 201).user()
	if u.Role != core.RoleClient || u.Status != core.StatusPending {
		t.Errorf("client: %+v", u)
	}
	u = s.expect(s.signUp("Eve", "eve@example.com", "password-1", core.RoleAdmin), 201).user()
	if u.Role != core.RoleAdmin || u.Status != core.StatusPending {
		t.Errorf("admin sign-up: %+v", u)
	}
	// the signed-up customer can sign in with the mixed-case email
	s.token("ANN@example.com", "password-1")
}

func TestSignUpIgnoresServerOwnedFields(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	r := s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: map[string]any{
		"name": "Mal", "email": "mal@example.com", "password": "password-1", "userRole": "ADMIN",
		"userStatus": "APPROVED", "status": "APPROVED", "role": "ADMIN", "id": "000000000000000000000001",
		"passwordHash": "$2a$04$abc", "_id": "000000000000000000000001"}}), 201)
	u := r.user()
	if u.Role != core.RoleAdmin || u.Status != core.StatusPending || u.ID == "000000000000000000000001" {
		t.Fatalf("mass assignment took effect: %+v", u)
	}
	s.token("mal@example.com", "password-1") // the password, not the sent hash, is stored
	tok := s.token("mal@example.com", "password-1")
	// a PENDING admin has no powers
	other := s.expect(s.signUp("C", "c@example.com", "password-1", core.RoleClient), 201).user()
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + other.ID, token: tok, body: `{"userStatus":"APPROVED"}`}), 403)
}

func TestSignUpValidation(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	r := s.expect(s.do(req{method: "POST", path: base + "/auth/signup",
		body: map[string]any{"name": " ", "email": "not-an-email", "password": "short", "userRole": "KING"}}), 400)
	f := r.fields()
	for _, k := range []string{"name", "email", "password", "userRole"} {
		if f[k] == "" {
			t.Errorf("no error for %s: %s", k, r.raw)
		}
	}
	s.expect(s.signUp("Long", "long@example.com", strings.Repeat("p", 73), ""), 400)
	s.expect(s.signUp("Max", "max@example.com", strings.Repeat("p", 72), ""), 201)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: `{"name":`}), 400)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: `{"name":5}`}), 400)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: `[]`}), 400)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup"}), 400)
}

func TestDuplicateEmailConflict(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.expect(s.signUp("A", "dup@example.com", "password-1", ""), 201)
	if r := s.expect(s.signUp("B", "DUP@example.com", "password-2", core.RoleClient), 409); !strings.Contains(string(r.raw), `"code":"email_taken"`) {
		t.Errorf("duplicate email: want code email_taken: %s", r.raw)
	}
	// the admin's email is taken too
	s.expect(s.signUp("B", adminEmail, "password-2", ""), 409)

	const n = 10
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.signUp(fmt.Sprintf("R%d", i), "race@example.com", "password-1", "").status
		}()
	}
	wg.Wait()
	created, conflicts := 0, 0
	for _, st := range statuses {
		switch st {
		case 201:
			created++
		case 409:
			conflicts++
		}
	}
	if created != 1 || conflicts != n-1 {
		t.Fatalf("concurrent sign-ups of one email: %v", statuses)
	}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.expect(s.signUp("Ann", "ann@example.com", "password-1", core.RoleClient), 201)
	r := s.expect(s.signIn("ann@example.com", "password-1"), 200)
	var data map[string]any
	_ = json.Unmarshal(r.env.Data, &data)
	if data["email"] != "ann@example.com" || data["name"] != "Ann" || data["role"] != "CLIENT" ||
		data["status"] != "PENDING" || data["token"] == "" || len(data) != 5 {
		t.Errorf("sign-in data: %s", r.raw)
	}
	wrong := s.expect(s.signIn("ann@example.com", "password-2"), 401)
	unknown := s.expect(s.signIn("nobody@example.com", "password-1"), 401)
	if wrong.errorText() != unknown.errorText() || wrong.env.Message != unknown.env.Message || wrong.errorText() == "" {
		t.Errorf("wrong password %s vs unknown email %s", wrong.raw, unknown.raw)
	}
	s.expect(s.signIn("ann@example.com", "password-1"+strings.Repeat("x", 80)), 401)
	s.expect(s.signIn("", ""), 400)
}

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	id := s.expect(s.signUp("Ann", "ann@example.com", "password-1", ""), 201).user().ID
	good := s.token("ann@example.com", "password-1")
	reset := func(h map[string]string, token string) response {
		return s.do(req{method: "PATCH", path: base + "/auth/reset", header: h, token: token,
			body: `{"oldPassword":"wrong-one-123","newPassword":"password-2"}`})
	}
	// a valid token reaches the handler (400: the old password is wrong), by either header
	s.expect(reset(nil, good), 400)
	s.expect(reset(map[string]string{"Authorization": "Bearer " + good}, ""), 400)
	s.expect(reset(map[string]string{"Authorization": "bearer " + good}, ""), 400)

	now := time.Now()
	claims := func(exp time.Time) jwt.RegisteredClaims {
		return jwt.RegisteredClaims{Issuer: accounts.TokenIssuer, Subject: id, IssuedAt: jwt.NewNumericDate(now.Add(-2 * time.Hour)),
			ExpiresAt: jwt.NewNumericDate(exp)}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"none":         signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now.Add(time.Hour))),
		"wrong key":    signed(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef0123"), claims(now.Add(time.Hour))),
		"expired":      signed(t, jwt.SigningMethodHS256, []byte(testSecret), claims(now.Add(-time.Minute))),
		"no expiry":    signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.RegisteredClaims{Issuer: accounts.TokenIssuer, Subject: id}),
		"other issuer": signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.RegisteredClaims{Issuer: "evil", Subject: id, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}),
		"HS512":        signed(t, jwt.SigningMethodHS512, []byte(testSecret), claims(now.Add(time.Hour))),
		"RS256":        signed(t, jwt.SigningMethodRS256, rsaKey, claims(now.Add(time.Hour))),
		"unknown user": signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.RegisteredClaims{Issuer: accounts.TokenIssuer, Subject: bson.NewObjectID().Hex(), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}),
		"bad subject":  signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.RegisteredClaims{Issuer: accounts.TokenIssuer, Subject: "nope", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}),
		"malformed":    "not.a.jwt",
		"garbage":      "abc",
		"tampered":     good[:len(good)-2] + "xx",
	}
	// an HS256 token whose header claims RS256 (key confusion)
	parts := strings.Split(good, ".")
	bad["RS256 header, HMAC body"] = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + parts[1] + "." + parts[2]
	for name, tok := range bad {
		r := s.expect(reset(nil, tok), 401)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", name)
		}
		s.expect(reset(map[string]string{"Authorization": "Bearer " + tok}, ""), 401)
	}
	s.expect(reset(nil, ""), 401)
	s.expect(reset(map[string]string{"Authorization": "Basic " + good}, ""), 401)
}

func TestResetPassword(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.expect(s.signUp("Ann", "ann@example.com", "password-1", ""), 201)
	tok := s.token("ann@example.com", "password-1")
	path := base + "/auth/reset"
	r := s.expect(s.do(req{method: "PATCH", path: path, token: tok, body: map[string]string{"oldPassword": "password-x", "newPassword": "password-2"}}), 400)
	if r.fields()["oldPassword"] == "" {
		t.Errorf("wrong old password: %s", r.raw)
	}
	r = s.expect(s.do(req{method: "PATCH", path: path, token: tok, body: map[string]string{"oldPassword": "password-1", "newPassword": "short"}}), 400)
	if r.fields()["newPassword"] == "" {
		t.Errorf("short new password: %s", r.raw)
	}
	s.expect(s.do(req{method: "PATCH", path: path, body: map[string]string{"oldPassword": "password-1", "newPassword": "password-2"}}), 401)
	// no pause: a reset ends a token of the same second too (see TestResetEndsEverySession)
	s.expect(s.do(req{method: "PATCH", path: path, token: tok, body: map[string]string{"oldPassword": "password-1", "newPassword": "password-2"}}), 200)
	s.expect(s.signIn("ann@example.com", "password-1"), 401)
	fresh := s.token("ann@example.com", "password-2")
	// The reset ended the session it was made from; the new one works.
	r = s.expect(s.do(req{method: "PATCH", path: path, token: tok, body: map[string]string{"oldPassword": "password-2", "newPassword": "password-3"}}), 401)
	if !strings.Contains(r.errorText(), "sign in again") {
		t.Errorf("old token after reset: %s", r.raw)
	}
	s.expect(s.do(req{method: "PATCH", path: path, token: fresh, body: map[string]string{"oldPassword": "password-2", "newPassword": "password-3"}}), 200)
}

func TestUpdateUserAuthorization(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.expect(s.signUp("Cust", "cust@example.com", "password-1", ""), 201)
	client := s.expect(s.signUp("Owner", "owner@example.com", "password-1", core.RoleClient), 201).user()
	s.expect(s.signUp("Pend", "pend@example.com", "password-1", core.RoleAdmin), 201)
	custTok := s.token("cust@example.com", "password-1")
	pendTok := s.token("pend@example.com", "password-1")
	clientTok := s.token("owner@example.com", "password-1")
	adminTok := s.token(adminEmail, adminPassword)
	path := base + "/user/" + client.ID
	approve := `{"userStatus":"APPROVED"}`

	s.expect(s.do(req{method: "PATCH", path: path, body: approve}), 401)
	s.expect(s.do(req{method: "PATCH", path: path, token: custTok, body: approve}), 403)
	s.expect(s.do(req{method: "PATCH", path: path, token: pendTok, body: approve}), 403)
	s.expect(s.do(req{method: "PATCH", path: path, token: clientTok, body: approve}), 403) // not on itself either
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + bson.NewObjectID().Hex(), token: adminTok, body: approve}), 404)
	r := s.expect(s.do(req{method: "PATCH", path: base + "/user/not-an-id", token: adminTok, body: approve}), 400)
	if r.fields()["id"] == "" {
		t.Errorf("malformed id: %s", r.raw)
	}
	for _, body := range []string{`{"userStatus":"OK"}`, `{"userRole":"KING"}`, `{}`, `{"userStatus":5}`} {
		s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: body}), 400)
	}

	// the client's PENDING token: sign-in says PENDING; approval ends that session (a token
	// issued without the powers does not gain them), and the next sign-in says APPROVED
	u := s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: approve}), 200).user()
	if u.Status != core.StatusApproved || u.Role != core.RoleClient || u.ID != client.ID || !u.UpdatedAt.After(client.UpdatedAt.Add(-time.Millisecond)) {
		t.Fatalf("after approval: %+v", u)
	}
	s.expect(s.do(req{method: "GET", path: probePath, token: clientTok}), 401)
	var sess accounts.Session
	_ = json.Unmarshal(s.expect(s.signIn("owner@example.com", "password-1"), 200).env.Data, &sess)
	if sess.Status != core.StatusApproved {
		t.Errorf("sign-in after approval: %+v", sess)
	}
	clientTok = sess.Token
	// an approval of an approved user changes nothing and ends nothing
	s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: approve}), 200)
	s.expect(s.do(req{method: "GET", path: probePath, token: clientTok}), 404)
	// promote the client to admin: the old token is ended, a new one has admin powers
	s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: `{"userRole":"ADMIN"}`}), 200)
	custID := s.expect(s.signUp("Other", "other@example.com", "password-1", core.RoleClient), 201).user().ID
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: clientTok, body: approve}), 401)
	promoted := s.token("owner@example.com", "password-1")
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: promoted, body: approve}), 200)
	// a rejection ends its sessions, and a later approval does not revive them
	s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: `{"userStatus":"REJECTED"}`}), 200)
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: promoted, body: approve}), 401)
	rejected := s.token("owner@example.com", "password-1")
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: rejected, body: approve}), 403)
	s.expect(s.do(req{method: "PATCH", path: path, token: adminTok, body: approve}), 200)
	for _, tok := range []string{promoted, rejected} {
		s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: tok, body: approve}), 401)
	}
	s.expect(s.do(req{method: "PATCH", path: base + "/user/" + custID, token: s.token("owner@example.com", "password-1"), body: approve}), 200)
}

func TestAdminBootstrapIdempotent(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	for i := range 2 {
		s := startWith(t, cfg)
		var sess accounts.Session
		_ = json.Unmarshal(s.expect(s.signIn(adminEmail, adminPassword), 200).env.Data, &sess)
		if sess.Role != core.RoleAdmin || sess.Status != core.StatusApproved {
			t.Fatalf("run %d: admin %+v", i, sess)
		}
		logs := s.logs.String()
		if strings.Contains(logs, adminPassword) || strings.Contains(logs, testSecret) {
			t.Fatalf("secrets in the logs:\n%s", logs)
		}
		want := "first admin created"
		if i == 1 {
			want = "first admin already exists"
		}
		if !strings.Contains(logs, want) {
			t.Errorf("run %d: logs lack %q:\n%s", i, want, logs)
		}
		if err := s.m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// exactly one admin document
	s := startWith(t, cfg)
	n, err := s.m.Client.Database(devdbName(cfg.DBURL)).Collection("users").CountDocuments(t.Context(), bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("users: %d, %v", n, err)
	}
}

func devdbName(uri string) string {
	u, _ := url.Parse(uri)
	return strings.Trim(u.Path, "/")
}

func TestEnvelopeOnEveryResponse(t *testing.T) {
	t.Parallel()
	// A small limit: 413 answers a body four times larger (TestOversizedBodiesAre413 sends
	// bodies of many MiB).
	s := startService(t, func(c *Config) { c.BodyLimit = 16 << 10 })
	s.expect(s.do(req{method: "GET", path: base + "/nowhere"}), 404)
	s.expect(s.do(req{method: "GET", path: "/healthz"}), 200)
	s.expect(s.do(req{method: "GET", path: "/readyz"}), 200)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: "{}", header: map[string]string{"Content-Type": "text/plain"}}), 400)
	s.expect(s.do(req{method: "POST", path: base + "/auth/signup", body: `{"name":"x","email":"x@y.zz","password":"` + strings.Repeat("a", 64<<10) + `"}`}), 413)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{Port: 3000, DBURL: "mongodb://x", JWTTTL: time.Hour, BcryptCost: 10, Settings: httpx.Settings{BodyLimit: 1}, AuthConfig: AuthConfig{SigninPerMinute: 10, SigninBurst: 5}}
	ok.AppEnv = "development"
	if err := ok.Validate(); err != nil {
		t.Fatalf("dev defaults: %v", err)
	}
	prod := ok
	prod.AppEnv = "production"
	if err := prod.Validate(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("production without JWT_SECRET: %v", err)
	}
	prod.JWTSecret = "short-secret-value"
	if err := prod.Validate(); err == nil || strings.Contains(err.Error(), prod.JWTSecret) {
		t.Errorf("production short JWT_SECRET: %v", err)
	}
	prod.JWTSecret = strings.Repeat("k", 32)
	if err := prod.Validate(); err == nil || !strings.Contains(err.Error(), "NOTIFICATION_API_TOKEN") {
		t.Errorf("production without NOTIFICATION_API_TOKEN: %v", err)
	}
	prod.NotificationToken = "service-token"
	if err := prod.Validate(); err != nil {
		t.Errorf("production good secrets: %v", err)
	}
	// APP_ENV unset is production: the same refusals.
	unset := ok
	unset.AppEnv = ""
	if err := unset.Validate(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET is required in production") {
		t.Errorf("APP_ENV unset without JWT_SECRET: %v", err)
	}
	unset.AppEnv = "staging"
	if err := unset.Validate(); err == nil || !strings.Contains(err.Error(), "APP_ENV") {
		t.Errorf("APP_ENV=staging: %v", err)
	}
	half := ok
	half.AdminEmail = "a@b.cc"
	if err := half.Validate(); err == nil {
		t.Error("ADMIN_EMAIL without ADMIN_PASSWORD accepted")
	}
	// no JWT_SECRET in development: starts with a warning
	cfg := testConfig(t)
	cfg.JWTSecret = ""
	s := startWith(t, cfg)
	if !strings.Contains(s.logs.String(), "JWT_SECRET is not set") {
		t.Errorf("no warning:\n%s", s.logs.String())
	}
}

func TestBinaryDoesNotLinkDevDB(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := string(out)
	if !strings.Contains(deps, "github.com/cineflow/cineflow/services/core/httpapi") {
		t.Fatalf("go list -deps looks wrong:\n%s", deps)
	}
	for _, banned := range []string{"github.com/FerretDB", "github.com/cineflow/cineflow/pkg/devdb", "modernc.org/sqlite"} {
		if strings.Contains(deps, banned) {
			t.Errorf("cmd/core depends on %s", banned)
		}
	}
}
