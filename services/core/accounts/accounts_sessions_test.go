package accounts_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/crypto/bcrypt"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

const sessionSecret = "session-test-secret-0123456789abcdef"

// cachingReplica is the account rules on a connection of its own to database name, with the
// default user cache (as a core replica runs them).
func cachingReplica(t *testing.T, name string) *accounts.Accounts {
	t.Helper()
	store := mongostore.New(devdb.TestDBNamed(t, name))
	if err := store.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	acc, err := accounts.NewAccounts(store, accounts.AccountsOptions{Secret: []byte(sessionSecret), BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func signIn(t *testing.T, acc *accounts.Accounts, email, password string) string {
	t.Helper()
	s, err := acc.SignIn(t.Context(), email, password)
	if err != nil {
		t.Fatalf("sign-in of %s: %v", email, err)
	}
	return s.Token
}

// accepts reports whether acc accepts tok; any failure but Unauthorized fails the test.
func accepts(t *testing.T, acc *accounts.Accounts, tok string) bool {
	t.Helper()
	_, err := acc.Authenticate(t.Context(), tok)
	if err != nil && !errs.Is(err, errs.Unauthorized) {
		t.Fatalf("authenticate: %v", err)
	}
	return err == nil
}

// TestAdminChangeEndsSessions: through two replicas whose user caches hold the user (each has
// just accepted its token), an admin's change of status or role made through one ends the
// user's sessions on both at once, in the same second; a later approval does not revive
// them; a change that changes nothing ends nothing; a new sign-in works.
func TestAdminChangeEndsSessions(t *testing.T) {
	t.Parallel()
	name := devdb.TestDatabase(t)
	a, b := cachingReplica(t, name), cachingReplica(t, name)
	ctx := t.Context()
	admin, _, err := a.EnsureAdmin(ctx, "root@example.com", "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	u, err := a.SignUp(ctx, core.SignUp{Name: "U", Email: "u@example.com", Password: "password-1", Role: core.RoleClient})
	if err != nil {
		t.Fatal(err)
	}
	role := func(r core.Role) *core.Role { return &r }
	status := func(s core.Status) *core.Status { return &s }
	change := func(r *core.Role, s *core.Status) {
		t.Helper()
		if _, err := a.UpdateUser(ctx, admin, u.ID, r, s); err != nil {
			t.Fatal(err)
		}
	}
	// warm hands tok to both replicas (filling their caches) and checks both accept it.
	warm := func(what, tok string) {
		t.Helper()
		for k, acc := range []*accounts.Accounts{a, b} {
			if !accepts(t, acc, tok) {
				t.Fatalf("%s: replica %d refuses a fresh token", what, k)
			}
		}
	}
	ended := func(what string, toks ...string) {
		t.Helper()
		for i, tok := range toks {
			for k, acc := range []*accounts.Accounts{b, a} {
				if accepts(t, acc, tok) {
					t.Errorf("%s: token %d still accepted by replica %d", what, i, k)
				}
			}
		}
	}
	began := time.Now()
	pending := signIn(t, b, "u@example.com", "password-1")
	warm("pending", pending)
	change(nil, status(core.StatusApproved))
	ended("approval", pending)

	approved := signIn(t, b, "u@example.com", "password-1")
	warm("approved", approved)
	change(role(core.RoleClient), status(core.StatusApproved)) // changes nothing
	warm("after a change of nothing", approved)

	change(nil, status(core.StatusRejected))
	ended("rejection", approved)
	rejected := signIn(t, b, "u@example.com", "password-1")
	warm("rejected", rejected)
	change(nil, status(core.StatusApproved))
	ended("approval after the rejection", approved, rejected)

	again := signIn(t, b, "u@example.com", "password-1")
	warm("approved again", again)
	change(nil, status(core.StatusPending))
	ended("back to pending", again)
	change(nil, status(core.StatusApproved))

	client := signIn(t, b, "u@example.com", "password-1")
	warm("client", client)
	change(role(core.RoleAdmin), nil)
	ended("promotion", client)
	promoted := signIn(t, b, "u@example.com", "password-1")
	warm("admin", promoted)
	change(role(core.RoleCustomer), nil)
	ended("demotion", promoted)
	change(role(core.RoleAdmin), nil)
	ended("promotion after the demotion", client, promoted)

	final := signIn(t, b, "u@example.com", "password-1")
	warm("final", final)
	got, err := b.Authenticate(ctx, final)
	if err != nil || got.Role != core.RoleAdmin || got.Status != core.StatusApproved {
		t.Fatalf("final: %+v %v", got, err)
	}
	// the reset ends sessions just as well, on the replica that did not make it
	if err := a.ResetPassword(ctx, got, "password-1", "password-2"); err != nil {
		t.Fatal(err)
	}
	ended("reset", final)
	warm("after the reset", signIn(t, b, "u@example.com", "password-2"))
	t.Logf("all in %v", time.Since(began).Round(time.Millisecond))
}

// legacyToken is a token as the previous version signed them: no "sgen".
func legacyToken(t *testing.T, userID string, iat time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: accounts.TokenIssuer, Subject: userID,
		IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(iat.Add(time.Hour))}).SignedString([]byte(sessionSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestEarlierTokensAndUsers: tokens of the previous version (no generation) and users it
// stored (no generation, no version) keep working until a reset or an admin's change; a
// user it reset keeps refusing the tokens issued before the reset; a change it writes
// during a rolling upgrade (no generation) puts the user back at generation 0, where newer
// tokens are refused; and a generation is never reused, so such a change and a later reset do
// not revive an old token.
func TestEarlierTokensAndUsers(t *testing.T) {
	t.Parallel()
	name := devdb.TestDatabase(t)
	acc := cachingReplica(t, name)
	db := devdb.TestDBNamed(t, name)
	ctx := t.Context()
	h, err := bcrypt.GenerateFromPassword([]byte("password-1"), 4)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	insertUser := func(email string, doc bson.D) string {
		t.Helper()
		oid := bson.NewObjectID()
		d := append(bson.D{{Key: "_id", Value: oid}, {Key: "name", Value: "Old"}, {Key: "email", Value: email},
			{Key: "passwordHash", Value: string(h)}, {Key: "userRole", Value: "CUSTOMER"}, {Key: "userStatus", Value: "APPROVED"},
			{Key: "createdAt", Value: now.Add(-time.Hour)}, {Key: "updatedAt", Value: now.Add(-time.Hour)}}, doc...)
		if _, err := db.Collection(mongostore.UsersCollection).InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
		return oid.Hex()
	}

	// A user as the previous version left it, and its tokens.
	old := insertUser("old@example.com", nil)
	before := legacyToken(t, old, now.Add(-10*time.Minute))
	if !accepts(t, acc, before) {
		t.Fatal("a token of the previous version is refused")
	}
	fresh := signIn(t, acc, "old@example.com", "password-1")
	if !accepts(t, acc, fresh) {
		t.Fatal("a new token of an earlier user is refused")
	}
	u, err := acc.Authenticate(ctx, fresh)
	if err != nil || u.SessionGen != 0 {
		t.Fatalf("earlier user: %+v %v", u, err)
	}
	if err := acc.ResetPassword(ctx, u, "password-1", "password-2"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{before, fresh, legacyToken(t, old, time.Now().Add(time.Second))} {
		if accepts(t, acc, tok) {
			t.Error("a token of before the reset is accepted")
		}
	}

	// A user the previous version reset: its rule holds at generation 0.
	resetAt := now.Add(-5 * time.Minute).UTC().Truncate(time.Millisecond)
	was := insertUser("was-reset@example.com", bson.D{{Key: "passwordChangedAt", Value: resetAt}, {Key: "version", Value: int64(0)}})
	if accepts(t, acc, legacyToken(t, was, resetAt.Add(-2*time.Second))) {
		t.Error("a token issued before the previous version's reset is accepted")
	}
	if !accepts(t, acc, legacyToken(t, was, resetAt.Add(time.Second))) {
		t.Error("a token issued after the previous version's reset is refused")
	}

	// A rolling upgrade: a new replica resets (generation 1), an old one then changes the user
	// (a change without a generation), a new one resets again.
	id := insertUser("upgrade@example.com", nil)
	ru, err := acc.Authenticate(ctx, signIn(t, acc, "upgrade@example.com", "password-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.ResetPassword(ctx, ru, "password-1", "password-2"); err != nil {
		t.Fatal(err)
	}
	gen1 := signIn(t, acc, "upgrade@example.com", "password-2")
	u1, err := acc.Authenticate(ctx, gen1)
	if err != nil || u1.SessionGen != 1 || u1.Version != 1 {
		t.Fatalf("after a reset: %+v %v", u1, err)
	}
	oldChange(t, db, id, 2, u1.PasswordHash, u1.PasswordChangedAt) // an admin's change: role CLIENT
	if accepts(t, acc, gen1) {
		t.Error("after an earlier version's change, a token of generation 1 is accepted")
	}
	at0 := signIn(t, acc, "upgrade@example.com", "password-2")
	u2, err := acc.Authenticate(ctx, at0)
	if err != nil || u2.SessionGen != 0 || u2.Version != 2 {
		t.Fatalf("after an earlier version's change: %+v %v", u2, err)
	}
	if err := acc.ResetPassword(ctx, u2, "password-2", "password-3"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{gen1, at0} {
		if accepts(t, acc, tok) {
			t.Error("a token of an ended generation is accepted after a later reset")
		}
	}
	if !accepts(t, acc, signIn(t, acc, "upgrade@example.com", "password-3")) {
		t.Error("a token of the latest generation is refused")
	}
}

// oldChange writes version of user id as the previous version's UserStore.Change did (no
// session generation), then its projection: role CLIENT, APPROVED.
func oldChange(t *testing.T, db *mongo.Database, id string, version int64, hash string, passwordAt time.Time) {
	t.Helper()
	oid, _ := bson.ObjectIDFromHex(id)
	ctx := context.WithoutCancel(t.Context())
	set := bson.D{{Key: "passwordHash", Value: hash}, {Key: "passwordChangedAt", Value: passwordAt}, {Key: "userRole", Value: "CLIENT"},
		{Key: "userStatus", Value: "APPROVED"}, {Key: "updatedAt", Value: time.Now().UTC().Truncate(time.Millisecond)}, {Key: "version", Value: version}}
	doc := append(bson.D{{Key: "_id", Value: id + ":" + strconv.FormatInt(version, 10)}, {Key: "userId", Value: oid}}, set...)
	if _, err := db.Collection(mongostore.UserChangesCollection).InsertOne(ctx, doc); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection(mongostore.UsersCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: oid}},
		bson.D{{Key: "$set", Value: set}}); err != nil {
		t.Fatal(err)
	}
}
