package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/crypto/bcrypt"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// TestStartIndexesEarlierUsersEmails: a database an earlier version left (users without
// user_emails). The core signs them in at once, indexes their emails in the background at
// start, and after that finds them through the index.
func TestStartIndexesEarlierUsersEmails(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	u, err := url.Parse(cfg.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	db := devdb.TestDBNamed(t, strings.TrimPrefix(u.Path, "/"))
	hash, err := bcrypt.GenerateFromPassword([]byte("old-password-1"), 4)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: "Old"},
			{Key: "email", Value: fmt.Sprintf("old%d@example.com", i)}, {Key: "passwordHash", Value: string(hash)},
			{Key: "userRole", Value: "CUSTOMER"}, {Key: "userStatus", Value: "APPROVED"},
			{Key: "createdAt", Value: time.Now()}, {Key: "updatedAt", Value: time.Now()}}
	}
	if _, err := db.Collection(mongostore.UsersCollection).InsertMany(t.Context(), docs); err != nil {
		t.Fatal(err)
	}

	s := startWith(t, cfg)
	s.token("old7@example.com", "old-password-1") // at once, indexed or not
	emails := db.Collection(mongostore.UserEmailsCollection)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// n users, the admin created at start, and the marker
		c, err := emails.CountDocuments(t.Context(), bson.D{})
		if err == nil && c == n+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user_emails has %d documents after 30 s, want %d (%v); logs:\n%s", c, n+2, err, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), "indexed the emails of existing users") {
		t.Errorf("no log line for the indexing:\n%s", s.logs)
	}
	s.token(fmt.Sprintf("old%d@example.com", n-1), "old-password-1")
	s.token(adminEmail, adminPassword)
	s.expect(s.signIn("old3@example.com", "wrong-password-1"), 401)
}
