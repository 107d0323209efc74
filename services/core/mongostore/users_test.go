package mongostore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
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

func newUser(email, hash string) *core.User {
	return &core.User{Name: "N", Email: email, PasswordHash: hash, Role: core.RoleClient, Status: core.StatusApproved}
}

// legacyUser inserts a user as a version without user_emails did: the user document alone.
func legacyUser(t *testing.T, s *Users, email string) bson.ObjectID {
	t.Helper()
	oid := bson.NewObjectID()
	if _, err := s.users.InsertOne(t.Context(), userDoc{ID: oid, Name: "Old", Email: email, PasswordHash: "old",
		Role: "CLIENT", Status: "APPROVED"}); err != nil {
		t.Fatal(err)
	}
	return oid
}

func emailOwner(t *testing.T, s *Users, email string) (bson.ObjectID, bool) {
	t.Helper()
	var d emailDoc
	err := s.emails.FindOne(t.Context(), bson.D{{Key: "_id", Value: email}}).Decode(&d)
	if err != nil {
		return bson.NilObjectID, false
	}
	return d.UserID, true
}

// TestEmailIndex: sign-in finds users through user_emails; users an earlier version created
// are found by a find on email until Backfill has indexed them, then only a few a second;
// an email document whose user does not exist never hides the user who has the email.
func TestEmailIndex(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	u := newUser("new@example.com", "h")
	if err := s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	if owner, ok := emailOwner(t, s, u.Email); !ok || owner.Hex() != u.ID {
		t.Fatalf("email document of a new user: %v %v, want %s", owner, ok, u.ID)
	}
	if got, err := s.GetByEmail(ctx, u.Email); err != nil || got.ID != u.ID {
		t.Fatalf("sign-in lookup: %+v, %v", got, err)
	}
	if err := s.Create(ctx, newUser(u.Email, "h2")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second sign-up with the email: %v", err)
	}

	// Before the backfill: an old user is found by email, and indexed on the way.
	old1 := legacyUser(t, s, "old1@example.com")
	old2 := legacyUser(t, s, "old2@example.com")
	if got, err := s.GetByEmail(ctx, "old1@example.com"); err != nil || got.ID != old1.Hex() {
		t.Fatalf("old user before the backfill: %+v, %v", got, err)
	}
	if owner, ok := emailOwner(t, s, "old1@example.com"); !ok || owner != old1 {
		t.Fatalf("old user's email not indexed by its sign-in: %v %v", owner, ok)
	}
	// A sign-up for an old user's email claims the email for an id that never gets a user.
	if err := s.Create(ctx, newUser("old2@example.com", "h")); !errs.Is(err, errs.Conflict) {
		t.Fatalf("sign-up with an old user's email: %v", err)
	}
	if owner, ok := emailOwner(t, s, "old2@example.com"); !ok || owner == old2 {
		t.Fatalf("the refused sign-up left no claim (%v %v): the case below is not tested", owner, ok)
	}
	if _, err := s.GetByEmail(ctx, "nobody@example.com"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown email: %v", err)
	}

	n, err := s.Backfill(ctx)
	if err != nil || n != 3 {
		t.Fatalf("backfill: %d users, %v; want 3", n, err)
	}
	if owner, ok := emailOwner(t, s, "old2@example.com"); !ok || owner != old2 {
		t.Fatalf("backfill left the claim over the old user's email: %v %v, want %s", owner, ok, old2.Hex())
	}
	if got, err := s.GetByEmail(ctx, "old2@example.com"); err != nil || got.ID != old2.Hex() {
		t.Fatalf("old user after the backfill: %+v, %v", got, err)
	}
	if n, err := New(s.db).Backfill(ctx); err != nil || n != 0 {
		t.Fatalf("a second backfill (another replica, later): %d users, %v", n, err)
	}

	// After it: a user an old replica creates is still found (and indexed) within the rate...
	s.scans = rate.NewLimiter(rate.Every(time.Hour), 1)
	old3 := legacyUser(t, s, "old3@example.com")
	if got, err := s.GetByEmail(ctx, "old3@example.com"); err != nil || got.ID != old3.Hex() {
		t.Fatalf("old replica's user after the backfill: %+v, %v", got, err)
	}
	if _, ok := emailOwner(t, s, "old3@example.com"); !ok {
		t.Fatal("old replica's user not indexed by its sign-in")
	}
	// ...and beyond it, an email without a document is not looked for.
	legacyUser(t, s, "old4@example.com")
	if _, err := s.GetByEmail(ctx, "old4@example.com"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("find by email beyond the rate: %v", err)
	}
	for _, e := range []string{"new@example.com", "old1@example.com", "old3@example.com"} {
		if _, err := s.GetByEmail(ctx, e); err != nil {
			t.Fatalf("%s beyond the rate: %v", e, err)
		}
	}
	if _, err := s.GetByEmail(ctx, backfilledMarker); !errs.Is(err, errs.NotFound) {
		t.Fatalf("the marker's _id as an email: %v", err)
	}
}

// TestEmailClaimTakenOver: a sign-up whose user insert never landed leaves the email's
// document naming a user that does not exist; the next sign-up takes it over.
func TestEmailClaimTakenOver(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	ghost := bson.NewObjectID()
	if _, err := s.emails.InsertOne(ctx, emailDoc{Email: "x@example.com", UserID: ghost}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetByEmail(ctx, "x@example.com"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("email whose claim has no user: %v", err)
	}
	u := newUser("x@example.com", "h")
	if err := s.Create(ctx, u); err != nil || u.ID != ghost.Hex() {
		t.Fatalf("sign-up over the claim: id %s, %v; want %s", u.ID, err, ghost.Hex())
	}
	if got, err := s.GetByEmail(ctx, "x@example.com"); err != nil || got.ID != u.ID {
		t.Fatalf("after it: %+v, %v", got, err)
	}
}

// TestSignUpRaceOneEmail: many sign-ups of one email at once, half of them over a claim
// whose user never landed: exactly one succeeds, and sign-in finds that one.
func TestSignUpRaceOneEmail(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	for round, ghost := range []bool{false, true} {
		email := fmt.Sprintf("race%d@example.com", round)
		if ghost {
			if _, err := s.emails.InsertOne(ctx, emailDoc{Email: email, UserID: bson.NewObjectID()}); err != nil {
				t.Fatal(err)
			}
		}
		const n = 24
		errsOf := make([]error, n)
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u := newUser(email, fmt.Sprintf("h%d", i))
				errsOf[i] = s.Create(ctx, u)
				ids[i] = u.ID
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errsOf {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: sign-ups %d and %d both succeeded", round, winner, i)
			case err == nil:
				winner = i
			case !errs.Is(err, errs.Conflict):
				t.Fatalf("round %d: sign-up %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no sign-up succeeded", round)
		}
		got, err := s.GetByEmail(ctx, email)
		if err != nil || got.ID != ids[winner] || got.PasswordHash != fmt.Sprintf("h%d", winner) {
			t.Fatalf("round %d: sign-in finds %+v, %v; want sign-up %d (%s)", round, got, err, winner, ids[winner])
		}
		if c, err := s.users.CountDocuments(ctx, bson.D{{Key: "email", Value: email}}); err != nil || c != 1 {
			t.Fatalf("round %d: %d users with the email, %v", round, c, err)
		}
	}
}

// TestSignUpFaults: each write of a sign-up fails (its reply dropped after it landed, or the
// connection cut before it), then the client signs up again, as it would after an error:
// in the end exactly one user has the email, and sign-in finds it through its email's
// document alone (no find by email allowed).
func TestSignUpFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := devdb.TestDB(t)
	direct := New(db)
	if err := direct.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	direct.scans = rate.NewLimiter(0, 0)
	p, proxied := faultproxy.StartTest(t, db.Name(), 4)
	faulty := New(proxied)

	for _, coll := range []string{UserEmailsCollection, UsersCollection} {
		for _, fault := range []faultproxy.Fault{faultproxy.DropReply, faultproxy.CutBefore} {
			email := fmt.Sprintf("%s-%s@example.com", coll, fault)
			rule := p.Add(&faultproxy.Rule{Command: "insert", Collection: coll, Fault: fault, Times: 1})
			first := newUser(email, "first")
			firstErr := faulty.Create(ctx, first)
			p.Clear()
			if rule.Fired() != 1 {
				t.Fatalf("%s: the fault did not fire", email)
			}
			if firstErr == nil {
				t.Fatalf("%s: sign-up succeeded through the fault", email)
			}
			again := newUser(email, "again")
			againErr := faulty.Create(ctx, again)
			if againErr != nil && !errs.Is(againErr, errs.Conflict) {
				t.Fatalf("%s: sign-up again: %v", email, againErr)
			}
			var users []userDoc
			cur, err := db.Collection(UsersCollection).Find(ctx, bson.D{{Key: "email", Value: email}})
			if err != nil {
				t.Fatal(err)
			}
			if err := cur.All(ctx, &users); err != nil {
				t.Fatal(err)
			}
			if len(users) != 1 {
				t.Fatalf("%s: %d users with the email after a failed sign-up and its retry (%v)", email, len(users), againErr)
			}
			// The user who has it is the retry's, or (a conflict) the first attempt's, which landed.
			want := "again"
			if againErr != nil {
				want = "first"
			}
			got, err := direct.GetByEmail(ctx, email)
			if err != nil || got.ID != users[0].ID.Hex() || got.PasswordHash != want {
				t.Fatalf("%s: sign-in finds %+v, %v; want the %q sign-up's user %s", email, got, err, want, users[0].ID.Hex())
			}
		}
	}
}

// TestUserSessionGen: the session generation is stored with the change that sets it and read
// back by Get, GetByEmail and Refresh alike, also when the user document was last projected
// by an earlier version (which copies no generation and leaves a later version's in place);
// Refresh of a current user returns it unchanged, of a stale one the latest version.
func TestUserSessionGen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(devdb.TestDB(t))
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	u := newUser("gen@example.com", "h0")
	if err := s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(u.ID)
	v0, _ := s.Get(ctx, u.ID)
	if v0.SessionGen != 0 || v0.Version != 0 {
		t.Fatalf("new user: %+v", v0)
	}
	check := func(what string, version, gen int64) {
		t.Helper()
		for name, get := range map[string]func() (*core.User, error){
			"Get":        func() (*core.User, error) { return s.Get(ctx, u.ID) },
			"GetByEmail": func() (*core.User, error) { return s.GetByEmail(ctx, "gen@example.com") },
			"Refresh":    func() (*core.User, error) { return s.Refresh(ctx, v0) },
		} {
			got, err := get()
			if err != nil || got.Version != version || got.SessionGen != gen {
				t.Errorf("%s, %s: %+v %v; want version %d, generation %d", what, name, got, err, version, gen)
			}
		}
	}
	c, _ := s.Get(ctx, u.ID)
	c.PasswordHash, c.SessionGen = "h1", 1
	if err := s.Change(ctx, c); err != nil {
		t.Fatal(err)
	}
	check("a reset", 1, 1)
	cur, _ := s.Get(ctx, u.ID)
	if same, err := s.Refresh(ctx, cur); err != nil || *same != *cur {
		t.Errorf("refresh of the latest version: %+v %v", same, err)
	}
	c, _ = s.Get(ctx, u.ID)
	c.Status = core.StatusRejected // a change that keeps the generation
	if err := s.Change(ctx, c); err != nil {
		t.Fatal(err)
	}
	check("a change keeping it", 2, 1)

	// An earlier version changes the user: its change has no generation, its projection
	// leaves sessionGen 1 of version 2 in place.
	old := bson.D{{Key: "passwordHash", Value: "h2"}, {Key: "userRole", Value: "CLIENT"}, {Key: "userStatus", Value: "APPROVED"},
		{Key: "updatedAt", Value: time.Now().UTC().Truncate(time.Millisecond)}, {Key: "version", Value: int64(3)}}
	if _, err := s.changes.InsertOne(ctx, append(bson.D{{Key: "_id", Value: userChangeID(oid, 3)}, {Key: "userId", Value: oid}}, old...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "$set", Value: old}}); err != nil {
		t.Fatal(err)
	}
	check("an earlier version's change", 3, 0)

	// This version resets again (generation 4); an earlier version's projection then copies
	// that change without its generation.
	c, _ = s.Get(ctx, u.ID)
	c.PasswordHash, c.SessionGen = "h4", 4
	if err := s.Change(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "passwordHash", Value: "h4"}, {Key: "version", Value: int64(4)}}}}); err != nil {
		t.Fatal(err)
	}
	check("a reset projected by an earlier version", 4, 4)
	if _, err := s.Refresh(ctx, &core.User{ID: "nope"}); !errs.Is(err, errs.Invalid) {
		t.Errorf("refresh of a malformed id: %v", err)
	}
}
