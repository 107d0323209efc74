package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// realStore returns a store on a new database of the test server, with its indexes.
func realStore(tb testing.TB) *mongostore.Store {
	s, _ := realDB(tb)
	return s
}

// realDB is realStore and its database.
func realDB(tb testing.TB) (*mongostore.Store, *mongo.Database) {
	tb.Helper()
	db := devdb.TestDB(tb)
	store := mongostore.New(db)
	if err := store.EnsureIndexes(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return store, db
}

// FuzzCreateTicket sends any body and headers to the create handler (the whole app, over
// Fiber's in-memory connection, with the real store): never a 5xx, always a JSON envelope,
// and a success is a stored, retrievable ticket.
func FuzzCreateTicket(f *testing.F) {
	valid := `{"subject":"Booking confirmed","content":"<b>Seats A1, A2</b>","recepientEmails":["ann@example.com"]}`
	fifty := make([]string, 51)
	for i := range fifty {
		fifty[i] = fmt.Sprintf("%q", fmt.Sprintf("u%d@example.com", i))
	}
	seeds := []struct {
		body                            string
		contentType, key, contentEncode string
	}{
		{valid, "application/json", "", ""},
		{valid, "application/json; charset=utf-8", "order-42", ""},
		{`{"subject":"s","content":"c","recipientEmails":["b@example.org","B@example.org "],"requester":"core"}`, "", "k", ""},
		{`{"subject":"s","content":"c","recepientEmails":["a@example.com"],"recipientEmails":["b@example.com"]}`, "application/json", "", ""},
		{"", "application/json", "", ""},
		{"null", "application/json", "", ""},
		{"[1,2,3]", "application/json", "", ""},
		{`{"subject":5,"content":[],"recepientEmails":{}}`, "application/json", "", ""},
		{`{"subject":"a","subject":"\u0000\ud800","content":"\u0000","recepientEmails":["x@y.zz"]}`, "application/json", "", ""},
		{"\xef\xbb\xbf" + valid, "application/json", "", ""},
		{`{"subject":"\xff\xfe","content":"\xc3\x28","recepientEmails":["\xe2\x82@a.bc"]}`, "application/json", "", ""},
		{`{"subject":"s","content":"c","recepientEmails":[` + strings.Join(fifty, ",") + `]}`, "application/json", "", ""},
		{`{"subject":"s","content":"c","recepientEmails":[null,"a@b.cd"]}`, "application/json", "", ""},
		{strings.Repeat("[", 20000), "application/json", "", ""},
		{`{"subject":"s","content":"c","recepientEmails":["a@b.cd"],"status":"SUCCESS","$where":"1","a.b":1}`, "application/json", "", ""},
		{valid + " trailing", "application/json", "", ""},
		{valid, "text/plain", "", ""},
		{valid, "application/json", strings.Repeat("x", 300), ""},
		{valid, "application/json", strings.Repeat("x", 5000), ""},
		{valid, "application/json", "bad\x01key", ""},
		{"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/json", "", "gzip"},
		{valid, "application/json", "", "identity"},
		{`{"subject":"s\r\nBcc: evil@example.com","content":"c","recepientEmails":["a@b.cd"]}`, "application/json", "", ""},
		{`{"subject":"s","content":"c","recepientEmails":["a@b.cd"],"requester":"` + strings.Repeat("r", 500) + `"}`, "", "", ""},
		{`{"subject":1e999,"content":"c","recepientEmails":["a@b.cd"]}`, "application/json", "", ""},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.contentType, s.key, s.contentEncode)
	}

	store := realStore(f)
	srv := New(store, Options{Token: testToken, Logger: quiet})
	var mu sync.Mutex // keys used with a body that succeeded: a replay must return the same ticket
	seen := map[string]string{}

	f.Fuzz(func(t *testing.T, body []byte, contentType, key, contentEncoding string) {
		// Headers beyond the server's 4 KiB read buffer are answered 431 before any handler
		// runs (app.Test reports that as an error; TestOversizedHeaders checks it over HTTP).
		contentType, key, contentEncoding = clip(contentType), clip(key), clip(contentEncoding)
		req := httptest.NewRequest("POST", BasePath, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if contentType != "" {
			req.Header["Content-Type"] = []string{contentType}
		}
		if key != "" {
			req.Header["Idempotency-Key"] = []string{key}
		}
		if contentEncoding != "" {
			req.Header["Content-Encoding"] = []string{contentEncoding}
		}
		resp, err := srv.App.Test(req, -1)
		if err != nil {
			t.Fatalf("app.Test: %v", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for body %q: %s", resp.StatusCode, body, raw)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q: %s", ct, raw)
		}
		var keys map[string]json.RawMessage
		err = json.Unmarshal(raw, &keys)
		if _, coded := keys["code"]; err != nil || len(keys) != 4 && !(resp.StatusCode >= 400 && coded && len(keys) == 5) {
			t.Fatalf("not an envelope: %s", raw)
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
		if !*env.Success {
			if resp.StatusCode < 400 || string(env.Data) != "{}" {
				t.Fatalf("failure with status %d: %s", resp.StatusCode, raw)
			}
			return
		}
		if resp.StatusCode != 201 || string(env.Error) != "{}" {
			t.Fatalf("success with status %d: %s", resp.StatusCode, raw)
		}
		var tk notification.Ticket
		if err := json.Unmarshal(env.Data, &tk); err != nil || tk.ID.IsZero() {
			t.Fatalf("success without a ticket: %s", raw)
		}
		if tk.Status != notification.StatusPending && resp.Header.Get(HeaderIdempotentReplay) != "true" {
			t.Fatalf("new ticket is %s", tk.Status)
		}
		stored, err := store.Get(context.Background(), tk.ID)
		if err != nil {
			t.Fatalf("created ticket %s is not retrievable: %v", tk.ID.Hex(), err)
		}
		if stored.Subject != tk.Subject || stored.Content != tk.Content ||
			fmt.Sprint(stored.RecipientEmails) != fmt.Sprint(tk.RecipientEmails) {
			t.Fatalf("stored %+v, answered %+v", stored, tk)
		}
		v := stored
		if err := (&notification.NewTicket{Subject: v.Subject, Content: v.Content, RecipientEmails: v.RecipientEmails,
			Requester: v.Requester}).Validate(); err != nil {
			t.Fatalf("stored an invalid ticket: %v", err)
		}
		if key != "" {
			mu.Lock()
			prev, ok := seen[key]
			if !ok {
				seen[key] = tk.ID.Hex()
			}
			mu.Unlock()
			if ok && prev != tk.ID.Hex() {
				t.Fatalf("Idempotency-Key %q made tickets %s and %s", key, prev, tk.ID.Hex())
			}
		}
		// And through the API.
		g := httptest.NewRequest("GET", BasePath+"/"+tk.ID.Hex(), nil)
		g.Header.Set("Authorization", "Bearer "+testToken)
		gr, err := srv.App.Test(g, -1)
		if err != nil || gr.StatusCode != http.StatusOK {
			t.Fatalf("GET the created ticket: %v %v", err, gr)
		}
		gr.Body.Close()
	})
}

func clip(s string) string {
	if len(s) > 1000 {
		return s[:1000]
	}
	return s
}
