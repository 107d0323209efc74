package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
)

// RequeueFailed makes mockStore a notification.TicketStore; the bulk re-queue's handler tests
// use requeueStore, which records the filter it is given.
func (m *mockStore) RequeueFailed(context.Context, notification.RequeueFilter) (notification.RequeueReport, error) {
	return notification.RequeueReport{}, errs.E(errs.Unavailable, "not mocked")
}

type requeueStore struct {
	*mockStore
	mu   sync.Mutex
	got  []notification.RequeueFilter
	rep  notification.RequeueReport
	fail error
}

func (r *requeueStore) RequeueFailed(_ context.Context, f notification.RequeueFilter) (notification.RequeueReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, f)
	rep := r.rep
	rep.DryRun = f.DryRun
	return rep, r.fail
}

const requeueRoute = BasePath + RequeuePath

func TestParseRequeueRequest(t *testing.T) {
	t.Parallel()
	since := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		body   string
		want   notification.RequeueFilter
		fields []string // fields in error ("" for an error without fields)
	}{
		{body: `{"failedSince":"2030-06-01T18:30:00Z"}`, want: notification.RequeueFilter{FailedSince: since, Limit: notification.DefaultRequeueLimit}},
		{body: `{"failedSince":"2030-06-01T20:30:00.5+02:00","failedUntil":"2030-06-01T19:00:00Z","reasonContains":"Timeout",` +
			`"limit":25,"cursor":"r-17","dryRun":true}`, want: notification.RequeueFilter{FailedSince: since.Add(500 * time.Millisecond),
			FailedUntil: since.Add(30 * time.Minute), ReasonContains: "Timeout", Limit: 25, Cursor: "r-17", DryRun: true}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","failedUntil":null,"reasonContains":null,"limit":null}`,
			want: notification.RequeueFilter{FailedSince: since, Limit: notification.DefaultRequeueLimit}},
		{body: `{}`, fields: []string{"failedSince"}},
		{body: `null`, fields: []string{"failedSince"}},
		{body: ``, fields: []string{""}},
		{body: `[]`, fields: []string{""}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z"} {}`, fields: []string{""}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z"`, fields: []string{""}},
		{body: `{"failedSince":"yesterday"}`, fields: []string{"failedSince"}},
		{body: `{"failedSince":"2030-06-01"}`, fields: []string{"failedSince"}},
		{body: `{"failedSince":1893522600}`, fields: []string{"failedSince"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","failedUntil":"2030-06-01T18:29:59Z"}`, fields: []string{"failedUntil"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","limit":0}`, fields: []string{"limit"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","limit":-3}`, fields: []string{"limit"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","limit":10001}`, fields: []string{"limit"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","limit":2.5}`, fields: []string{"limit"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","limit":"10"}`, fields: []string{"limit"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","reasonContains":"` + strings.Repeat("x", 201) + `"}`, fields: []string{"reasonContains"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","reasonContains":5}`, fields: []string{"reasonContains"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","cursor":"t12"}`, fields: []string{"cursor"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","dryRun":"yes"}`, fields: []string{"dryRun"}},
		{body: `{"failedsince":"2030-06-01T18:30:00Z"}`, fields: []string{"failedSince", "failedsince"}},
		{body: `{"failedSince":"2030-06-01T18:30:00Z","status":"SUCCESS"}`, fields: []string{"status"}},
	} {
		f, err := ParseRequeueRequest([]byte(c.body))
		if c.fields == nil {
			if err != nil || !reflect.DeepEqual(f, c.want) {
				t.Errorf("%s: %+v %v, want %+v", c.body, f, err, c.want)
			}
			continue
		}
		var e *errs.Error
		if !errs.Is(err, errs.Invalid) || !errors.As(err, &e) {
			t.Errorf("%s: %v, want invalid", c.body, err)
			continue
		}
		var got []string
		for k := range e.Fields {
			got = append(got, k)
		}
		if len(got) == 0 {
			got = []string{""}
		}
		slices.Sort(got)
		if !slices.Equal(got, c.fields) {
			t.Errorf("%s: fields %v (%v), want %v", c.body, got, err, c.fields)
		}
	}
}

// The route passes the parsed filter to the store and answers its report in the envelope;
// bad input is a 400 and no token a 401, neither reaching the store.
func TestRequeueRoute(t *testing.T) {
	t.Parallel()
	store := &requeueStore{mockStore: &mockStore{}, rep: notification.RequeueReport{Requeued: 7, Matched: 8, Examined: 40,
		More: true, Next: "r123"}}
	srv := newTestServer(store)
	body := `{"failedSince":"2030-06-01T18:30:00Z","reasonContains":"503","limit":8}`
	r := call(t, srv, "POST", requeueRoute, body, nil)
	if r.status != 200 || !r.env.Success {
		t.Fatalf("POST %s: %d %s", requeueRoute, r.status, r.raw)
	}
	var rep map[string]any
	if err := json.Unmarshal(r.env.Data, &rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"requeued": 7.0, "matched": 8.0, "examined": 40.0, "more": true, "next": "r123", "dryRun": false}
	if !reflect.DeepEqual(rep, want) || !strings.Contains(r.env.Message, "7 tickets re-queued") {
		t.Errorf("answer %s %q, want %v", r.env.Data, r.env.Message, want)
	}
	wantF := notification.RequeueFilter{FailedSince: time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC), ReasonContains: "503", Limit: 8}
	if len(store.got) != 1 || store.got[0] != wantF {
		t.Errorf("store given %+v, want %+v", store.got, wantF)
	}
	if r := call(t, srv, "POST", requeueRoute, `{"failedSince":"2030-06-01T18:30:00Z","dryRun":true}`, nil); r.status != 200 ||
		!strings.Contains(r.env.Message, "dry run") {
		t.Errorf("dry run: %d %s", r.status, r.raw)
	}

	for _, c := range []struct {
		body   string
		header map[string]string
		status int
	}{
		{`{"failedUntil":"2030-06-01T18:30:00Z"}`, nil, 400},
		{`{"failedSince":"2030-06-01T18:30:00Z","limit":100000}`, nil, 400},
		{`{"failedSince":"2030-06-01T18:30:00Z","typo":1}`, nil, 400},
		{`not json`, nil, 400},
		{body, map[string]string{"Content-Type": "text/plain"}, 400},
		{body, map[string]string{"Authorization": "Bearer wrong"}, 401},
		{body, map[string]string{"Authorization": ""}, 401},
	} {
		before := len(store.got)
		r := call(t, srv, "POST", requeueRoute, c.body, c.header)
		if r.status != c.status || r.env.Success || string(r.env.Data) != "{}" {
			t.Errorf("%s %v: %d %s, want %d", c.body, c.header, r.status, r.raw, c.status)
		}
		if len(store.got) != before {
			t.Errorf("%s %v reached the store", c.body, c.header)
		}
	}
	store.fail = errs.E(errs.Unavailable, "database unavailable")
	if r := call(t, srv, "POST", requeueRoute, body, nil); r.status != 503 {
		t.Errorf("store down: %d %s", r.status, r.raw)
	}
	// The other methods of the path are not routes (GET /requeue is GET /:id).
	if r := call(t, srv, "PUT", requeueRoute, body, nil); r.status != 405 && r.status != 404 {
		t.Errorf("PUT: %d", r.status)
	}
}

// The route, its body and its answer are as the OpenAPI document says.
func TestOpenAPIRequeue(t *testing.T) {
	doc := openAPITestDoc(t)
	store := &requeueStore{mockStore: &mockStore{}, rep: notification.RequeueReport{Requeued: 2, Matched: 3, Examined: 9}}
	srv := newTestServer(store)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	for _, c := range []struct {
		want   int
		body   string
		header map[string]string
	}{
		{200, `{"failedSince":"2030-06-01T18:30:00Z","failedUntil":"2030-06-01T19:30:00+01:00","reasonContains":"503","limit":10,"cursor":"r-4","dryRun":false}`, auth},
		{400, `{"failedSince":"soon"}`, auth},
		{401, `{"failedSince":"2030-06-01T18:30:00Z"}`, nil},
	} {
		if got := openAPISend(t, doc, srv, c.want < 400, "POST", requeueRoute, nil, c.body, c.header); got != c.want {
			t.Errorf("%s: status %d, want %d", c.body, got, c.want)
		}
	}
	store.rep = notification.RequeueReport{Requeued: 1, Matched: 1, Examined: 1, More: true, Next: "r5"}
	if got := openAPISend(t, doc, srv, true, "POST", requeueRoute, nil, `{"failedSince":"2030-06-01T18:30:00Z"}`, auth); got != 200 {
		t.Errorf("status %d", got)
	}

	if got, want := schemaPropertyNames(doc.Components.Schemas["RequeueReport"]), jsonFieldNames(reflect.TypeFor[notification.RequeueReport]()); !slices.Equal(got, want) {
		t.Errorf("schema RequeueReport has %v; the code writes %v", got, want)
	}
	req := doc.Components.Schemas["RequeueRequest"]
	if got, want := schemaPropertyNames(req), slices.Sorted(slices.Values(requeueFields)); !slices.Equal(got, want) {
		t.Errorf("schema RequeueRequest has %v; the handler reads %v", got, want)
	}
	limit := req.Value.Properties["limit"].Value
	if limit.Default != float64(notification.DefaultRequeueLimit) || limit.Max == nil || *limit.Max != notification.MaxRequeueLimit {
		t.Errorf("limit: default %v, maximum %v; the code's are %d and %d", limit.Default, limit.Max,
			notification.DefaultRequeueLimit, notification.MaxRequeueLimit)
	}
	op := doc.Paths.Find(requeueRoute).Post
	for _, s := range []string{fmt.Sprintf("default %d", notification.DefaultRequeueLimit), fmt.Sprintf("at most %d", notification.MaxRequeueLimit)} {
		if !strings.Contains(op.Description, s) {
			t.Errorf("the operation's description should say %q", s)
		}
	}
}

// FuzzRequeueRequest reads any body: a refusal is Invalid (a 400), never a panic; an accepted
// filter is valid, in UTC, and the same filter written back as a body reads the same. Through
// the route, the answer is a 200 or a 400 in the envelope, and only a 200 reached the store.
func FuzzRequeueRequest(f *testing.F) {
	for _, s := range []string{
		`{"failedSince":"2030-06-01T18:30:00Z"}`,
		`{"failedSince":"2030-06-01T18:30:00.123456789-07:00","failedUntil":"2030-06-02T00:00:00Z","reasonContains":"gave up","limit":10000,"cursor":"r-1","dryRun":true}`,
		`{"failedSince":"2030-06-01T18:30:00Z","failedUntil":"2030-06-01T18:30:00Z","limit":1,"cursor":"r0"}`,
		`{"failedSince":"0000-01-01T00:00:00Z","failedUntil":"9999-12-31T23:59:59.999999999Z"}`,
		`{"failedSince":"2030-06-01T18:30:00Z","reasonContains":"\u0000\ud800\xff"}`,
		`{"failedSince":"2030-06-01T18:30:00Z","failedSince":"bad"}`,
		`{"failedSince":"2030-06-31T18:30:00Z"}`,
		`{"failedSince":"2030-06-01T24:00:00Z"}`,
		`{"failedSince":"2030-06-01T18:30:00+25:00"}`,
		`{"failedSince":"2030-06-01t18:30:00z"}`,
		`{"failedSince":"2030-06-01T18:30:00Z","limit":1e3}`,
		`{"failedSince":"2030-06-01T18:30:00Z","limit":-0}`,
		`{"failedSince":"2030-06-01T18:30:00Z","limit":99999999999999999999999}`,
		`{"failedSince":"2030-06-01T18:30:00Z","cursor":"r99999999999999999999"}`,
		`{"failedSince":"2030-06-01T18:30:00Z","cursor":"r--1"}`,
		`{"failedSince":"2030-06-01T18:30:00Z","dryRun":1}`,
		`{"failedSince":"2030-06-01T18:30:00Z","$where":"1","a.b":{}}`,
		`{"` + strings.Repeat("k", 100) + `":1}`,
		`{"failedSince":["2030-06-01T18:30:00Z"]}`,
		`{"failedSince":{"$gt":""}}`,
		`{"failedSince":"2030-06-01T18:30:00Z"} trailing`,
		`"2030-06-01T18:30:00Z"`,
		`null`, `[]`, ``, ` `, `{`, strings.Repeat("[", 5000), "\xef\xbb\xbf{}",
	} {
		f.Add([]byte(s))
	}
	store := &requeueStore{mockStore: &mockStore{}}
	srv := newTestServer(store)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseRequeueRequest(body)
		if err != nil {
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("%q: %v, want invalid", body, err)
			}
		} else {
			check := got
			if verr := check.Validate(); verr != nil || check != got {
				t.Fatalf("%q: accepted an invalid filter %+v: %v", body, got, verr)
			}
			if got.FailedSince.Location() != time.UTC || !got.FailedUntil.IsZero() && got.FailedUntil.Location() != time.UTC ||
				!utf8.ValidString(got.ReasonContains) || got.Cursor != "" && !validRequeueCursor(got.Cursor) {
				t.Fatalf("%q: %+v", body, got)
			}
			again, err := ParseRequeueRequest(requeueBody(got))
			if err != nil || !again.FailedSince.Equal(got.FailedSince) || !again.FailedUntil.Equal(got.FailedUntil) ||
				again.ReasonContains != got.ReasonContains || again.Limit != got.Limit || again.Cursor != got.Cursor || again.DryRun != got.DryRun {
				t.Fatalf("%q: %+v written back reads %+v %v", body, got, again, err)
			}
		}

		store.mu.Lock()
		before := len(store.got)
		store.mu.Unlock()
		req := httptest.NewRequest("POST", requeueRoute, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		resp, rerr := srv.App.Test(req, -1)
		if rerr != nil {
			t.Fatal(rerr)
		}
		resp.Body.Close()
		store.mu.Lock()
		reached := len(store.got) > before
		store.mu.Unlock()
		switch {
		case resp.StatusCode == 200 && (err != nil || !reached),
			resp.StatusCode == 400 && (err == nil || reached),
			resp.StatusCode != 200 && resp.StatusCode != 400:
			t.Fatalf("%q: status %d, parse error %v, store reached %v", body, resp.StatusCode, err, reached)
		}
	})
}

// requeueBody writes a filter as the body that asks for it.
func requeueBody(f notification.RequeueFilter) []byte {
	m := map[string]any{"failedSince": f.FailedSince.Format(time.RFC3339Nano), "limit": f.Limit, "dryRun": f.DryRun}
	if !f.FailedUntil.IsZero() {
		m["failedUntil"] = f.FailedUntil.Format(time.RFC3339Nano)
	}
	if f.ReasonContains != "" {
		m["reasonContains"] = f.ReasonContains
	}
	if f.Cursor != "" {
		m["cursor"] = f.Cursor
	}
	b, _ := json.Marshal(m)
	return b
}
