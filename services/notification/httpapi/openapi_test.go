package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
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
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/notification"
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
	if len(doc.Servers) == 0 || doc.Servers[0].URL != "http://localhost:3001" {
		t.Errorf("servers: want http://localhost:3001, got %v", doc.Servers)
	}
	if s := doc.Components.SecuritySchemes["bearerAuth"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
		t.Error("securitySchemes.bearerAuth must be http bearer (NOTIFICATION_API_TOKEN)")
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			// The ticket routes need the token; the operational ones do not.
			if secured := op.Security != nil && len(*op.Security) > 0; secured != strings.HasPrefix(path, BasePath) {
				t.Errorf("%s: security %v", name, op.Security)
			}
			for code, r := range op.Responses.Map() {
				mt := r.Value.Content.Get("application/json")
				switch {
				case code[0] == '4' || code[0] == '5':
					if mt == nil || mt.Schema.Ref != "#/components/schemas/ErrorEnvelope" {
						t.Errorf("%s %s: a failure must be the ErrorEnvelope", name, code)
					}
				case path == "/metrics" || path == OpenAPIPath:
				case mt == nil || len(mt.Schema.Value.AllOf) == 0 || mt.Schema.Value.AllOf[0].Ref != "#/components/schemas/Envelope":
					t.Errorf("%s %s: a JSON success must be the Envelope", name, code)
				}
			}
		}
	}
	if doc.Paths.Find(BasePath).Post.Parameters.GetByInAndName("header", HeaderIdempotencyKey) == nil {
		t.Errorf("POST %s: the Idempotency-Key header is not documented", BasePath)
	}
}

func TestOpenAPIRoutesMatchApp(t *testing.T) {
	doc := openAPITestDoc(t)
	real, documented := openAPIRoutes(newTestServer(&mockStore{})), openAPIDocumented(doc)
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
}

// TestOpenAPIServed: the document is served as it is, without the token the ticket routes need.
func TestOpenAPIServed(t *testing.T) {
	srv := newTestServer(&mockStore{})
	resp, err := srv.App.Test(httptest.NewRequest(http.MethodGet, OpenAPIPath, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s without a token: %d %s", OpenAPIPath, resp.StatusCode, raw)
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
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
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

// TestOpenAPISchemasMatchTypes: the ticket view lists exactly the JSON fields the code writes,
// and the request body exactly the fields the handler reads.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := openAPITestDoc(t)
	for _, c := range []struct {
		schema string
		typ    reflect.Type
	}{
		{"Ticket", reflect.TypeFor[notification.Ticket]()},
		{"AttemptError", reflect.TypeFor[notification.AttemptError]()},
		{"TicketRequest", reflect.TypeFor[createRequest]()},
	} {
		s := doc.Components.Schemas[c.schema]
		if s == nil {
			t.Errorf("schema %s is missing", c.schema)
			continue
		}
		if got, want := schemaPropertyNames(s), jsonFieldNames(c.typ); !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v; the code's JSON fields are %v", c.schema, got, want)
		}
	}
	// Required are the fields always written (no omitempty, omitzero).
	s := doc.Components.Schemas["Ticket"].Value
	typ := reflect.TypeFor[notification.Ticket]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		always := !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero")
		if always != slices.Contains(s.Required, name) {
			t.Errorf("Ticket.%s: required is %v, but the field is always written: %v", name, !always, always)
		}
	}
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

// openAPISend sends a request to the app and validates the response (and, when checkRequest,
// the request) against the document.
func openAPISend(t *testing.T, doc *openapi3.T, srv *httpx.Server, checkRequest bool, method, template string,
	params map[string]string, body string, header map[string]string) int {
	t.Helper()
	template, query, _ := strings.Cut(template, "?")
	path := template
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", v)
	}
	if query != "" {
		path += "?" + query
	}
	item := doc.Paths.Find(template)
	if item == nil || item.GetOperation(method) == nil {
		t.Fatalf("%s %s is not documented", method, template)
	}
	route := &routers.Route{Spec: doc, Path: template, PathItem: item, Method: method, Operation: item.GetOperation(method)}
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r := httptest.NewRequest(method, "http://localhost:3001"+path, rd)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			r.Header.Set(k, v)
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
	resp, err := srv.App.Test(newReq(), -1)
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
	return resp.StatusCode
}

// TestOpenAPIResponsesMatchDocument sends requests meant to succeed and to fail, validating
// every response against the document.
func TestOpenAPIResponsesMatchDocument(t *testing.T) {
	doc := openAPITestDoc(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	sent := now.Add(time.Second)
	failed := notification.Ticket{ID: notification.NewID(), Subject: "Hi", Content: "Body", RecipientEmails: []string{"a@example.com"},
		Requester: "core", Status: notification.StatusFailed, Attempts: 3, LastError: "bounced",
		Errors: []notification.AttemptError{{At: now, Attempt: 1, Error: "bounced"}}, Generation: 1,
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", CreatedAt: now, UpdatedAt: now}
	done := failed
	done.ID, done.Status, done.SentAt, done.ProviderMessageID, done.LastError = notification.NewID(), notification.StatusSuccess, &sent, "msg-1", ""
	pending := failed
	pending.ID, pending.Status, pending.Errors, pending.NextAttemptAt = notification.NewID(), notification.StatusPending, nil, now
	store := &mockStore{
		ListFn: func(context.Context, notification.ListFilter) (notification.Page, error) {
			return notification.Page{Tickets: []notification.Ticket{pending, done, failed}, Next: "p41.-7~2"}, nil
		},
		GetFn: func(_ context.Context, id notification.ID) (*notification.Ticket, error) {
			if id == done.ID {
				t := done
				return &t, nil
			}
			return nil, errs.E(errs.NotFound, "ticket %s not found", id.Hex())
		},
		RequeueFn: func(_ context.Context, id notification.ID) (*notification.Ticket, error) {
			if id == failed.ID {
				t := failed
				t.Status, t.Generation = notification.StatusPending, 2
				return &t, nil
			}
			return nil, errs.E(errs.Conflict, "only a FAILED ticket can be re-queued")
		},
	}
	srv := newTestServer(store)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	ok := func(want int, method, template string, params map[string]string, body string, header map[string]string) {
		t.Helper()
		if got := openAPISend(t, doc, srv, want < 400, method, template, params, body, header); got != want {
			t.Errorf("%s %s: status %d, want %d", method, template, got, want)
		}
	}
	id := func(o notification.ID) map[string]string { return map[string]string{"id": o.Hex()} }

	ok(200, "GET", "/healthz", nil, "", nil)
	ok(200, "GET", "/readyz", nil, "", nil)
	ok(201, "POST", BasePath, nil, validBody, auth)
	ok(201, "POST", BasePath, nil, `{"subject":"Hi","content":"Body","recipientEmails":["a@example.com"],"requester":"core"}`,
		map[string]string{"Authorization": "Bearer " + testToken, HeaderIdempotencyKey: "key-1"})
	ok(400, "POST", BasePath, nil, `{"subject":"","content":"Body","recepientEmails":["nope"]}`, auth)
	ok(401, "POST", BasePath, nil, validBody, nil)
	ok(200, "GET", BasePath, nil, "", auth)
	ok(400, "GET", BasePath+"?status=LOST", nil, "", auth)
	ok(200, "GET", "/notiservice/api/v1/notifications/{id}", id(done.ID), "", auth)
	ok(404, "GET", "/notiservice/api/v1/notifications/{id}", id(notification.NewID()), "", auth)
	ok(400, "GET", "/notiservice/api/v1/notifications/{id}", map[string]string{"id": "nope"}, "", auth)
	ok(200, "POST", "/notiservice/api/v1/notifications/{id}/retry", id(failed.ID), "", auth)
	ok(409, "POST", "/notiservice/api/v1/notifications/{id}/retry", id(done.ID), "", auth)

	store.CreateFn = func(context.Context, *notification.Ticket) (*notification.Ticket, bool, error) {
		return nil, false, errs.E(errs.Unprocessable, "Idempotency-Key was already used with a different request")
	}
	ok(422, "POST", BasePath, nil, validBody, map[string]string{"Authorization": "Bearer " + testToken, HeaderIdempotencyKey: "key-1"})
	store.ListFn = func(context.Context, notification.ListFilter) (notification.Page, error) {
		return notification.Page{}, errs.E(errs.Unavailable, "database unavailable")
	}
	ok(503, "GET", BasePath, nil, "", auth)
}

// TestOpenAPIDocumentsPaging: the list's default and largest page sizes are the handler's, and
// its next-page headers are documented.
func TestOpenAPIDocumentsPaging(t *testing.T) {
	doc := openAPITestDoc(t)
	op := doc.Paths.Find(BasePath).Get
	limit := op.Parameters.GetByInAndName("query", "limit")
	if limit == nil {
		t.Fatal("the limit parameter is not documented")
	}
	s := limit.Schema.Value
	if s.Default != float64(defaultListLimit) || s.Max == nil || *s.Max != maxListLimit {
		t.Errorf("limit: default %v, maximum %v; the handler's are %d and %d", s.Default, s.Max, defaultListLimit, maxListLimit)
	}
	if want := "default " + strconv.Itoa(defaultListLimit); !strings.Contains(limit.Description, want) || !strings.Contains(op.Description, want) {
		t.Errorf("the limit's and the operation's descriptions should say %q", want)
	}
	headers := op.Responses.Status(200).Value.Headers
	for _, h := range []string{"Link", HeaderNextCursor} {
		if headers[h] == nil {
			t.Errorf("the list's 200 response does not document %s", h)
		}
	}
	if c := op.Parameters.GetByInAndName("query", "cursor"); c == nil || c.Schema.Value.MaxLength == nil || *c.Schema.Value.MaxLength != maxCursorLen {
		t.Errorf("cursor: maxLength should be %d", maxCursorLen)
	}
}
