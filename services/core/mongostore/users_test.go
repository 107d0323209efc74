package mongostore

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// TestUserVersions: a change from a stale version is refused and stores nothing, and readers
// see the latest change even when the user document was projected out of order.
func TestUserVersions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	u := &core.User{Name: "U", Email: "u@example.com", PasswordHash: "h0", Role: core.RoleClient, Status: core.StatusPending}
	if err := s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Get(ctx, u.ID)
	b, _ := s.Get(ctx, u.ID)
	if a.Version != 0 {
		t.Fatalf("new user at version %d", a.Version)
	}
	a.Status = core.StatusApproved
	if err := s.Change(ctx, a); err != nil || a.Version != 1 {
		t.Fatalf("change: %v, version %d", err, a.Version)
	}
	b.PasswordHash = "h1"
	if err := s.Change(ctx, b); !errs.Is(err, errs.Conflict) {
		t.Fatalf("change from a stale version: %v", err)
	}
	b, _ = s.Get(ctx, u.ID)
	if b.Status != core.StatusApproved || b.PasswordHash != "h0" || b.Version != 1 {
		t.Fatalf("after the refused change: %+v", b)
	}
	b.PasswordHash = "h1"
	if err := s.Change(ctx, b); err != nil || b.Version != 2 {
		t.Fatalf("redone change: %v, version %d", err, b.Version)
	}

	// A late projection of version 1 lands over version 2: readers still see version 2.
	oid, _ := bson.ObjectIDFromHex(u.ID)
	if _, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "passwordHash", Value: "h0"}, {Key: "userStatus", Value: "APPROVED"}, {Key: "version", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	for _, get := range []func() (*core.User, error){
		func() (*core.User, error) { return s.Get(ctx, u.ID) },
		func() (*core.User, error) { return s.GetByEmail(ctx, "u@example.com") },
	} {
		got, err := get()
		if err != nil || got.Version != 2 || got.PasswordHash != "h1" || got.Status != core.StatusApproved || got.Role != core.RoleClient {
			t.Fatalf("read past a stale projection: %+v, %v", got, err)
		}
	}
	// The next change projects itself and the document catches up.
	c, _ := s.Get(ctx, u.ID)
	c.Role = core.RoleAdmin
	if err := s.Change(ctx, c); err != nil || c.Version != 3 {
		t.Fatalf("change: %v", err)
	}
	var d userDoc
	if err := s.users.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Version != 3 || d.Role != "ADMIN" || d.PasswordHash != "h1" || d.Status != "APPROVED" || d.Name != "U" {
		t.Fatalf("projected document: %+v", d)
	}
	if err := s.Change(ctx, &core.User{ID: "nope"}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("malformed id: %v", err)
	}
}
