package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// TestStartListsEarlierTickets: a database an earlier version left (tickets without list
// entries). The service lists them at once (reading the tickets), lists them in its indexes
// in the background at start, and from then on pages through the indexes, earlier tickets
// after (older than) new ones.
func TestStartListsEarlierTickets(t *testing.T) {
	t.Parallel()
	dbURL := testDBURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db := devdb.TestDBNamed(t, strings.TrimPrefix(u.Path, "/"))
	const n = 150
	base0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var newestFirst []string
	docs := make([]any, n)
	for i := range docs {
		at := base0.Add(time.Duration(i) * time.Second)
		id := bson.NewObjectIDFromTimestamp(at)
		docs[i] = bson.M{"_id": id, "subject": "s", "content": "c", "recepientEmails": bson.A{fmt.Sprintf("old%d@example.com", i)},
			"status": notification.StatusSuccess, "attempts": 1, "errors": bson.A{}, "generation": 0, "batch": "b",
			"nextAttemptAt": time.Time{}, "sentAt": at, "providerMessageId": "m", "createdAt": at, "updatedAt": at}
		newestFirst = append([]string{id.Hex()}, newestFirst...)
	}
	if _, err := db.Collection(mongostore.TicketsCollection).InsertMany(t.Context(), docs); err != nil {
		t.Fatal(err)
	}

	s := startService(t, func(c *Config) { c.DBURL = dbURL })
	r := s.do(req{method: "GET", path: base + "?limit=5"})
	wantStatus(t, r, 200)
	if got := r.tickets(t); len(got) != 5 || got[0].ID.Hex() != newestFirst[0] {
		t.Fatalf("first page at start: %v", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Until the back-fill is done the cursor is a ticket id (the scan's); then the indexes'.
		r = s.do(req{method: "GET", path: base + "?limit=5"})
		if next := r.header.Get("X-Next-Cursor"); next != "" && !hexID.MatchString(next) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lists still read the tickets after 30 s; logs:\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), "listed the tickets of earlier versions") {
		t.Errorf("no log line for the back-fill:\n%s", s.logs)
	}
	fresh := s.create(1).ID.Hex()
	want := append([]string{fresh}, newestFirst...)
	var seen []string
	path := base + "?limit=40"
	for pages := 0; path != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r := s.do(req{method: "GET", path: path})
		wantStatus(t, r, 200)
		for _, tk := range r.tickets(t) {
			seen = append(seen, tk.ID.Hex())
		}
		path = ""
		if m := linkNext.FindStringSubmatch(r.header.Get("Link")); m != nil {
			path = m[1]
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("after the back-fill: %d tickets\n%v\nwant %v", len(seen), seen, want)
	}
	r = s.do(req{method: "GET", path: base + "?status=SUCCESS&limit=100&skip=" + fmt.Sprint(n-3)})
	if got := r.tickets(t); len(got) != 3 || got[2].ID.Hex() != newestFirst[n-1] {
		t.Errorf("SUCCESS, skipping all but the 3 oldest: %v", got)
	}
}
