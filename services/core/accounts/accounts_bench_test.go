package accounts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// memoryUsers is a UserStore of one user in memory: Authenticate over it costs the token's
// check alone, what a request whose user was trusted from the cache (no read) cost before.
type memoryUsers struct{ u core.User }

func (m *memoryUsers) Create(context.Context, *core.User) error {
	return errs.E(errs.Internal, "read only")
}
func (m *memoryUsers) Get(context.Context, string) (*core.User, error) {
	u := m.u
	return &u, nil
}
func (m *memoryUsers) GetByEmail(context.Context, string) (*core.User, error) {
	u := m.u
	return &u, nil
}
func (m *memoryUsers) Change(context.Context, *core.User) error {
	return errs.E(errs.Internal, "read only")
}
func (m *memoryUsers) Refresh(context.Context, *core.User) (*core.User, error) {
	u := m.u
	return &u, nil
}
func (m *memoryUsers) Ping(context.Context) error { return nil }

// BenchmarkAuthenticate: the cost of an authenticated request's token check, at 1,000 and
// 100,000 users (each with one change) on the embedded database, for the newest user (whose
// session generation is 1):
//   - kept: the user is in Authenticate's cache and refreshed (one read of user_changes by
//     exact _id, finding nothing): the default;
//   - read: no cache (UserCacheTTL < 0): the user document and the check for a newer change;
//   - no-read: the same token checked against a store in memory: the check of the token
//     alone, as a request whose user was trusted from the cache cost before.
func BenchmarkAuthenticate(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			ctx := b.Context()
			name := devdb.TestDatabase(b)
			db := devdb.TestDBNamed(b, name)
			now := time.Now().UTC().Truncate(time.Millisecond)
			var users, changes []any
			var last bson.ObjectID
			for i := range n {
				last = bson.NewObjectID()
				users = append(users, bson.D{{Key: "_id", Value: last}, {Key: "name", Value: "U"},
					{Key: "email", Value: fmt.Sprintf("user%d@example.com", i)}, {Key: "passwordHash", Value: "$2a$04$x"},
					{Key: "userRole", Value: "CUSTOMER"}, {Key: "userStatus", Value: "APPROVED"}, {Key: "createdAt", Value: now},
					{Key: "updatedAt", Value: now}, {Key: "version", Value: int64(1)}, {Key: "sessionGen", Value: int64(1)},
					{Key: "sessionGenVersion", Value: int64(1)}})
				changes = append(changes, bson.D{{Key: "_id", Value: last.Hex() + ":1"}, {Key: "userId", Value: last},
					{Key: "version", Value: int64(1)}, {Key: "passwordHash", Value: "$2a$04$x"}, {Key: "userRole", Value: "CUSTOMER"},
					{Key: "userStatus", Value: "APPROVED"}, {Key: "updatedAt", Value: now}, {Key: "sessionGen", Value: int64(1)}})
				if len(users) == 1000 || i == n-1 {
					for coll, docs := range map[string][]any{mongostore.UsersCollection: users, mongostore.UserChangesCollection: changes} {
						if _, err := db.Collection(coll).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
							b.Fatal(err)
						}
					}
					users, changes = users[:0], changes[:0]
				}
			}
			time.Sleep(time.Second) // the embedded database's _id index repair runs every 200 ms
			store := mongostore.New(db)
			u, err := store.Get(ctx, last.Hex())
			if err != nil || u.SessionGen != 1 {
				b.Fatalf("newest user: %+v %v", u, err)
			}
			for _, c := range []struct {
				name  string
				store accounts.UserStore
				ttl   time.Duration
			}{{"kept", store, 0}, {"read", store, -1}, {"no-read", &memoryUsers{u: *u}, -1}} {
				acc, err := accounts.NewAccounts(c.store, accounts.AccountsOptions{Secret: []byte(sessionSecret), BcryptCost: 4, UserCacheTTL: c.ttl})
				if err != nil {
					b.Fatal(err)
				}
				tok, err := acc.IssueToken(u)
				if err != nil {
					b.Fatal(err)
				}
				b.Run(c.name, func(b *testing.B) {
					for b.Loop() {
						if _, err := acc.Authenticate(ctx, tok); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
