package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// openAPITestDoc loads the embedded document and validates it as OpenAPI 3.
func openAPITestDoc(t *testing.T) *openapi3.T {
	t.Helper()
	if !json.Valid(openAPIDoc) {
		t.Fatal("openapi.json is not valid JSON")
	}
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// openAPITestServer is the whole app as the service builds it (accounts, catalogue,
// bookings, seat maps, payments) on a new database, with an approved admin's token.
func openAPITestServer(t *testing.T) (srv *httpx.Server, adminToken string) {
	t.Helper()
	db := devdb.TestDB(t)
	ctx := context.Background()
	users := mongostore.New(db)
	stores := mongostore.NewCatalogue(db)
	bstore := mongostore.NewBookings(db)
	for _, ensure := range []func(context.Context) error{users.EnsureIndexes, stores.EnsureIndexes, bstore.EnsureIndexes} {
		if err := ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	acc, err := accounts.NewAccounts(users, accounts.AccountsOptions{Secret: []byte("openapi-secret-0123456789abcdef012345"), BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := acc.EnsureAdmin(ctx, "root@example.com", "admin-pass-1234")
	if err != nil {
		t.Fatal(err)
	}
	if adminToken, err = acc.IssueToken(admin); err != nil {
		t.Fatal(err)
	}
	cat := catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{})
	bk := booking.NewBookings(bstore, cat, booking.BookingsOptions{})
	srv = New(Services{Accounts: acc, Users: users, Catalogue: cat, Bookings: bk, Idempotency: mongostore.NewIdempotency(db)},
		Options{HTTP: httpx.Options{BodyLimit: 64 << 10}})
	return srv, adminToken
}

var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIRoutes are the app's routes as "METHOD /path/{param}" (HEAD, added by Fiber for
// every GET, and the USE entries of middleware left out).
func openAPIRoutes(srv *httpx.Server) []string {
	seen := map[string]bool{}
	for _, r := range srv.App.GetRoutes(true) {
		if r.Method == http.MethodHead || r.Method == "USE" {
			continue
		}
		seen[r.Method+" "+fiberParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// openAPIDocumented are the document's operations as "METHOD /path/{param}".
func openAPIDocumented(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIDocumentValid(t *testing.T) {
	doc := openAPITestDoc(t)
	if doc.Info == nil || doc.Info.Title == "" || doc.Info.Version == "" || !strings.Contains(doc.Info.Description, "envelope") {
		t.Error("info needs a title, a version and a description of the envelope")
	}
	if len(doc.Servers) == 0 || doc.Servers[0].URL != "http://localhost:3000" {
		t.Errorf("servers: want http://localhost:3000, got %v", doc.Servers)
	}
	ss := doc.Components.SecuritySchemes
	if s := ss["accessToken"]; s == nil || s.Value.Type != "apiKey" || s.Value.In != "header" || s.Value.Name != HeaderAccessToken {
		t.Error("securitySchemes.accessToken must be the x-access-token header")
	}
	if s := ss["bearerAuth"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" || s.Value.BearerFormat != "JWT" {
		t.Error("securitySchemes.bearerAuth must be an http bearer JWT")
	}
	// Every failure is the envelope; every JSON success is the envelope too, except the document itself.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, r := range op.Responses.Map() {
				name := method + " " + path + " " + code
				mt := r.Value.Content.Get("application/json")
				switch {
				case code[0] == '4' || code[0] == '5':
					if mt == nil || mt.Schema.Ref != "#/components/schemas/ErrorEnvelope" {
						t.Errorf("%s: a failure must be the ErrorEnvelope", name)
					}
				case code == "304" || path == "/metrics" || path == OpenAPIPath:
				case mt == nil || len(mt.Schema.Value.AllOf) == 0 || mt.Schema.Value.AllOf[0].Ref != "#/components/schemas/Envelope":
					t.Errorf("%s: a JSON success must be the Envelope", name)
				}
			}
		}
	}
	for _, p := range []string{BasePath + "/bookings", BasePath + "/payments"} {
		op := doc.Paths.Find(p).Post
		if op.Parameters.GetByInAndName("header", HeaderIdempotencyKey) == nil {
			t.Errorf("POST %s: the Idempotency-Key header is not documented", p)
		}
	}
}

func TestOpenAPIRoutesMatchApp(t *testing.T) {
	doc := openAPITestDoc(t)
	srv, _ := openAPITestServer(t)
	real, documented := openAPIRoutes(srv), openAPIDocumented(doc)
	var missing, extra []string
	for _, r := range real {
		if !slices.Contains(documented, r) {
			missing = append(missing, r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(real, d) {
			extra = append(extra, d)
		}
	}
	if len(missing) > 0 {
		t.Errorf("routes of the app missing from openapi.json:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("operations of openapi.json that the app does not have:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(real) < 30 {
		t.Errorf("only %d routes mounted: are the catalogue and bookings wired? %v", len(real), real)
	}
}

func TestOpenAPIServed(t *testing.T) {
	srv := testServer(t) // the smallest app: accounts only, and still the document
	resp, err := srv.App.Test(httptest.NewRequest(http.MethodGet, OpenAPIPath, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", OpenAPIPath, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(raw, openAPIDoc) {
		t.Error("the served document differs from the embedded one")
	}
}

// jsonFieldNames are the JSON names of t's fields as encoding/json writes them (embedded
// structs flattened, "-" left out).
func jsonFieldNames(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			out = append(out, jsonFieldNames(f.Type)...)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// schemaPropertyNames are the properties of a schema, through allOf.
func schemaPropertyNames(s *openapi3.SchemaRef) []string {
	var out []string
	for name := range s.Value.Properties {
		out = append(out, name)
	}
	for _, sub := range s.Value.AllOf {
		out = append(out, schemaPropertyNames(sub)...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func without(names []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(drop, n) })
}

// TestOpenAPISchemasMatchTypes: each documented object lists exactly the JSON fields the code
// writes, and each request body exactly the fields the handler reads (less the server-owned
// ones a handler only reads to refuse).
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := openAPITestDoc(t)
	owned := jsonFieldNames(reflect.TypeFor[ownedFields]())
	cases := []struct {
		schema string
		fields []string
	}{
		{"User", jsonFieldNames(reflect.TypeFor[core.User]())},
		{"Session", jsonFieldNames(reflect.TypeFor[accounts.Session]())},
		{"Movie", jsonFieldNames(reflect.TypeFor[core.Movie]())},
		{"Theatre", jsonFieldNames(reflect.TypeFor[core.Theatre]())},
		{"Show", jsonFieldNames(reflect.TypeFor[core.Show]())},
		{"Booking", jsonFieldNames(reflect.TypeFor[core.Booking]())},
		{"Payment", jsonFieldNames(reflect.TypeFor[core.Payment]())},
		{"PaidBooking", jsonFieldNames(reflect.TypeFor[paidBooking]())},
		{"SeatMap", jsonFieldNames(reflect.TypeFor[core.SeatMap]())},
		{"SeatEntry", jsonFieldNames(reflect.TypeFor[core.SeatEntry]())},
		{"SignUpRequest", jsonFieldNames(reflect.TypeFor[signUpRequest]())},
		{"SignInRequest", jsonFieldNames(reflect.TypeFor[signInRequest]())},
		{"ResetRequest", jsonFieldNames(reflect.TypeFor[resetRequest]())},
		{"UpdateUserRequest", jsonFieldNames(reflect.TypeFor[updateUserRequest]())},
		{"MovieRequest", without(jsonFieldNames(reflect.TypeFor[movieRequest]()), owned...)},
		{"MoviePatch", without(jsonFieldNames(reflect.TypeFor[movieRequest]()), owned...)},
		{"TheatreRequest", without(jsonFieldNames(reflect.TypeFor[theatreRequest]()), append(owned, "movies")...)},
		{"TheatrePatch", without(jsonFieldNames(reflect.TypeFor[theatreRequest]()), append(owned, "movies")...)},
		{"TheatreMoviesRequest", jsonFieldNames(reflect.TypeFor[theatreMoviesRequest]())},
		{"ShowRequest", without(jsonFieldNames(reflect.TypeFor[showRequest]()), owned...)},
		{"ShowPatch", without(jsonFieldNames(reflect.TypeFor[showRequest]()), append(owned, "theatreId", "movieId")...)},
		{"BookingRequest", jsonFieldNames(reflect.TypeFor[bookingRequest]())},
		{"PatchBookingRequest", jsonFieldNames(reflect.TypeFor[patchBookingRequest]())},
		{"PaymentRequest", jsonFieldNames(reflect.TypeFor[paymentRequest]())},
	}
	for _, c := range cases {
		s := doc.Components.Schemas[c.schema]
		if s == nil {
			t.Errorf("schema %s is missing", c.schema)
			continue
		}
		if got := schemaPropertyNames(s); !slices.Equal(got, c.fields) {
			t.Errorf("schema %s has properties %v; the code's JSON fields are %v", c.schema, got, c.fields)
		}
	}
}

// openAPICheck sends a request to the app and validates the request and the response
// against the document (status documented, body matching its schema).
type openAPICheck struct {
	t   *testing.T
	doc *openapi3.T
	srv *httpx.Server
}

func (o *openAPICheck) do(method, template string, params map[string]string, body, token string) (int, json.RawMessage) {
	return o.send(false, method, template, params, body, token)
}

// send is do; checkRequest also validates the request (for requests meant to succeed).
func (o *openAPICheck) send(checkRequest bool, method, template string, params map[string]string, body, token string) (int, json.RawMessage) {
	t := o.t
	t.Helper()
	template, query, _ := strings.Cut(template, "?")
	path := template
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", v)
	}
	if query != "" {
		path += "?" + query
	}
	item := o.doc.Paths.Find(template)
	if item == nil || item.GetOperation(method) == nil {
		t.Fatalf("%s %s is not documented", method, template)
	}
	route := &routers.Route{Spec: o.doc, Path: template, PathItem: item, Method: method, Operation: item.GetOperation(method)}
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r := httptest.NewRequest(method, "http://localhost:3000"+path, rd)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			r.Header.Set(HeaderAccessToken, token)
		}
		return r
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: newReq(), PathParams: params, Route: route, Options: opts}
	if checkRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: the request does not match the document: %s", method, path, shortErr(err))
		}
	}
	resp, err := o.srv.App.Test(newReq(), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(raw)), Options: opts})
	if err != nil {
		t.Errorf("%s %s: the %d response does not match the document: %s\n%s", method, path, resp.StatusCode, shortErr(err), raw)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
		Code *string         `json:"code"`
	}
	_ = json.Unmarshal(raw, &env)
	switch {
	case resp.StatusCode < 400 && env.Code != nil:
		t.Errorf("%s %s: a %d answer carries a code %q", method, path, resp.StatusCode, *env.Code)
	case resp.StatusCode >= 400 && (env.Code == nil || !slices.Contains(documentedCodes(route.Operation, resp.StatusCode), *env.Code)):
		t.Errorf("%s %s: the %d answer's code %v is not one the document gives this route (%v)", method, path,
			resp.StatusCode, env.Code, documentedCodes(route.Operation, resp.StatusCode))
	}
	if (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s %s: a %d without Retry-After", method, path, resp.StatusCode)
	}
	return resp.StatusCode, env.Data
}

// documentedCodes are the codes an operation may answer with status: the status's general
// code (errs), and the precise ones its x-error-codes list for that status.
func documentedCodes(op *openapi3.Operation, status int) []string {
	out := []string{string(errs.CodeForStatus(status))}
	if status == 400 {
		out = append(out, string(errs.PaymentFailed))
	}
	out = append(out, operationCodes(op)[strconv.Itoa(status)]...)
	return out
}

// operationCodes reads an operation's x-error-codes: status -> codes.
func operationCodes(op *openapi3.Operation) map[string][]string {
	out := map[string][]string{}
	raw, ok := op.Extensions["x-error-codes"]
	if !ok {
		return out
	}
	b, err := json.Marshal(raw)
	if err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// TestOpenAPIErrorCodesDocumented: every precise code the core answers (core.Reason*,
// errs.Reason*) is listed by some route's x-error-codes, and every code listed is one of them.
func TestOpenAPIErrorCodesDocumented(t *testing.T) {
	doc := openAPITestDoc(t)
	var defined []string
	for _, file := range []string{"../reasons.go", "../../../pkg/errs/errs.go"} {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if strings.HasPrefix(n.Name, "Reason") && i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
							v, _ := strconv.Unquote(lit.Value)
							defined = append(defined, v)
						}
					}
				}
			}
		}
	}
	if len(defined) < 10 {
		t.Fatalf("found only %d reasons: %v", len(defined), defined)
	}
	listed := map[string]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, cs := range operationCodes(op) {
				for _, c := range cs {
					listed[c] = true
				}
			}
		}
	}
	for _, r := range defined {
		if !listed[r] {
			t.Errorf("code %q is answered but no route documents it (x-error-codes)", r)
		}
	}
	for c := range listed {
		if !slices.Contains(defined, c) {
			t.Errorf("x-error-codes lists %q, which nothing answers", c)
		}
	}
}

func (o *openAPICheck) want(wantStatus int, method, template string, params map[string]string, body, token string) json.RawMessage {
	o.t.Helper()
	status, data := o.send(wantStatus < 400, method, template, params, body, token)
	if status != wantStatus {
		o.t.Fatalf("%s %s: status %d, want %d (%s)", method, template, status, wantStatus, data)
	}
	return data
}

// shortErr is a validation error without the schema and value kin-openapi appends.
func shortErr(err error) string {
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(line, "Schema:") || strings.HasPrefix(line, "Value:") {
			break
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, " ")
}

func idOf(t *testing.T, data json.RawMessage) string {
	t.Helper()
	var v struct {
		ID string `json:"_id"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.ID == "" {
		t.Fatalf("no _id in %s", data)
	}
	return v.ID
}

// TestOpenAPIResponsesMatchDocument walks a customer's way through the API (sign up, sign in,
// find a show, book, pay) and a few failures, validating every request and response against
// the document.
func TestOpenAPIResponsesMatchDocument(t *testing.T) {
	doc := openAPITestDoc(t)
	srv, admin := openAPITestServer(t)
	o := &openAPICheck{t: t, doc: doc, srv: srv}
	b := BasePath

	o.want(200, "GET", "/healthz", nil, "", "")
	o.want(200, "GET", "/readyz", nil, "", "")
	o.want(201, "POST", b+"/auth/signup", nil, `{"name":"Ann","email":"ann@example.com","password":"password-1"}`, "")
	o.want(400, "POST", b+"/auth/signup", nil, `{"name":"Ann","email":"nope","password":"1"}`, "")
	o.want(409, "POST", b+"/auth/signup", nil, `{"name":"Ann","email":"ann@example.com","password":"password-1"}`, "")
	var sess accounts.Session
	if err := json.Unmarshal(o.want(200, "POST", b+"/auth/signin", nil, `{"email":"ann@example.com","password":"password-1"}`, ""), &sess); err != nil {
		t.Fatal(err)
	}
	o.want(401, "POST", b+"/auth/signin", nil, `{"email":"ann@example.com","password":"wrong-password"}`, "")
	cust := sess.Token

	movie := idOf(t, o.want(201, "POST", b+"/movies", nil, `{"name":"Heat","description":"A heist.","casts":["Al Pacino"],
		"trailerUrl":"https://example.com/heat","language":"English","releaseDate":"1995-12-15","director":"Michael Mann"}`, admin))
	o.want(403, "POST", b+"/movies", nil, `{"name":"X"}`, cust)
	o.want(401, "POST", b+"/movies", nil, `{"name":"X"}`, "")
	o.want(200, "GET", b+"/movies", nil, "", "")
	o.want(200, "GET", b+"/movies?name=none&limit=5&skip=0", nil, "", "") // an empty list
	o.want(400, "GET", b+"/movies?limit=0", nil, "", "")
	o.want(200, "GET", b+"/theatres?city=Nowhere&pinCode=1", nil, "", "")
	o.want(200, "GET", b+"/shows?movieId=0123456789abcdef01234567", nil, "", "")
	o.want(200, "GET", b+"/bookings", nil, "", cust) // none yet
	o.want(200, "GET", b+"/payments?all=true", nil, "", admin)
	o.want(200, "GET", b+"/movies/{id}", map[string]string{"id": movie}, "", "")
	o.want(404, "GET", b+"/movies/{id}", map[string]string{"id": "0123456789abcdef01234567"}, "", "")
	o.want(400, "GET", b+"/movies/{id}", map[string]string{"id": "nope"}, "", "")
	o.want(200, "PATCH", b+"/movies/{id}", map[string]string{"id": movie}, `{"director":"M. Mann"}`, admin)
	theatre := idOf(t, o.want(201, "POST", b+"/theatres", nil, `{"name":"Rex","city":"Pune","pinCode":411001,"address":"1 Main St"}`, admin))
	o.want(200, "GET", b+"/theatres", nil, "", "")
	o.want(200, "GET", b+"/theatres/{id}", map[string]string{"id": theatre}, "", "")
	o.want(200, "PATCH", b+"/theatres/{id}/movies", map[string]string{"id": theatre}, `{"movieIds":["`+movie+`"],"insert":true}`, admin)
	o.want(200, "GET", b+"/theatres/{id}/movies", map[string]string{"id": theatre}, "", "")
	o.want(200, "GET", b+"/theatres/{theatreId}/movies/{movieId}", map[string]string{"theatreId": theatre, "movieId": movie}, "", "")
	show := idOf(t, o.want(201, "POST", b+"/shows", nil, `{"theatreId":"`+theatre+`","movieId":"`+movie+
		`","timing":"2030-06-01T18:30:00Z","noOfSeats":4,"seatsPerRow":2,"price":150.5}`, admin))
	o.want(200, "GET", b+"/shows", nil, "", "")
	o.want(200, "GET", b+"/shows/{id}", map[string]string{"id": show}, "", "")
	o.want(200, "GET", b+"/shows/{id}/seats", map[string]string{"id": show}, "", "")

	booking := `{"theatreId":"` + theatre + `","movieId":"` + movie + `","timing":"2030-06-01T18:30:00Z",`
	bk := idOf(t, o.want(201, "POST", b+"/bookings", nil, booking+`"seats":["A1","A2"]}`, cust))
	o.want(409, "POST", b+"/bookings", nil, booking+`"seats":["A1"]}`, cust)
	o.want(200, "GET", b+"/bookings", nil, "", cust)
	o.want(403, "GET", b+"/bookings/all", nil, "", cust)
	o.want(200, "GET", b+"/bookings/all", nil, "", admin)
	o.want(200, "GET", b+"/bookings/{id}", map[string]string{"id": bk}, "", cust)
	o.want(400, "POST", b+"/payments", nil, `{"bookingId":"`+bk+`","amount":1}`, cust)
	paid := o.want(200, "POST", b+"/payments", nil, `{"bookingId":"`+bk+`","amount":301}`, cust)
	var pb struct {
		Payment core.Payment `json:"payment"`
	}
	if err := json.Unmarshal(paid, &pb); err != nil || pb.Payment.ID == "" {
		t.Fatalf("no payment in %s", paid)
	}
	o.want(409, "POST", b+"/payments", nil, `{"bookingId":"`+bk+`","amount":301}`, cust)
	o.want(200, "GET", b+"/payments", nil, "", cust)
	o.want(200, "GET", b+"/payments/{id}", map[string]string{"id": pb.Payment.ID}, "", cust)
	o.want(409, "PATCH", b+"/bookings/{id}", map[string]string{"id": bk}, `{"status":"CANCELLED"}`, cust)
	bk2 := idOf(t, o.want(201, "POST", b+"/bookings", nil, booking+`"noOfSeats":1}`, cust))
	o.want(200, "PATCH", b+"/bookings/{id}", map[string]string{"id": bk2}, `{"status":"CANCELLED"}`, cust)
	o.want(200, "GET", b+"/shows/{id}/seats", map[string]string{"id": show}, "", "")
	o.want(200, "PATCH", b+"/auth/reset", nil, `{"oldPassword":"password-1","newPassword":"password-2"}`, cust)

	var cy core.User
	if err := json.Unmarshal(o.want(201, "POST", b+"/auth/signup", nil, `{"name":"Cy","email":"cy@example.com","password":"password-1","userRole":"CLIENT"}`, ""), &cy); err != nil {
		t.Fatal(err)
	}
	o.want(200, "PATCH", b+"/user/{id}", map[string]string{"id": cy.ID}, `{"userStatus":"APPROVED"}`, admin)
	o.want(409, "DELETE", b+"/movies/{id}", map[string]string{"id": movie}, "", admin)
	// Whatever these answer, it must be documented.
	o.do("DELETE", b+"/shows/{id}", map[string]string{"id": show}, "", admin)
	o.do("DELETE", b+"/theatres/{id}", map[string]string{"id": theatre}, "", admin)
}
