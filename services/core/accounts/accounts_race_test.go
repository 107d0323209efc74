package accounts_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// accountsReplica is the account rules on a connection of its own to the test's database, as
// another core replica has.
func accountsReplica(t *testing.T, dbName string) *accounts.Accounts {
	t.Helper()
	store := mongostore.New(devdb.TestDBNamed(t, dbName))
	if err := store.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	acc, err := accounts.NewAccounts(store, accounts.AccountsOptions{Secret: []byte("race-test-secret"), BcryptCost: 4, UserCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestUserChangesRace: 4 goroutines reset a user's password 6 times each (each from the
// password they last saw in force) while 4 admins change its role and status 6 times each,
// through two replicas. Every change answered without error must be one version of the user
// (nothing else stored), admin changes that did not overlap in time must be ordered as they
// happened, the user must end with the role and status of the latest admin change and the
// password of the latest acknowledged reset, and earlier passwords must fail.
func TestUserChangesRace(t *testing.T) {
	t.Parallel()
	name := devdb.TestDatabase(t)
	replicas := []*accounts.Accounts{accountsReplica(t, name), accountsReplica(t, name)}
	ctx := context.Background()
	admin, _, err := replicas[0].EnsureAdmin(ctx, "root@example.com", "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	u, err := replicas[0].SignUp(ctx, core.SignUp{Name: "U", Email: "u@example.com", Password: "password-0", Role: core.RoleClient})
	if err != nil {
		t.Fatal(err)
	}

	type adminChange struct {
		role       core.Role
		status     core.Status
		version    int64
		start, end time.Time
	}
	var (
		mu       sync.Mutex
		current  = "password-0" // the password of the latest acknowledged reset
		chain    = []string{current}
		acked    []adminChange
		refused  int
		resetsOK int
	)
	const workers, each = 4, 6
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		acc := replicas[w%2]
		wg.Go(func() {
			<-start
			for k := range each {
				mu.Lock()
				old := current
				mu.Unlock()
				next := fmt.Sprintf("password-%d-%d", w, k)
				err := acc.ResetPassword(ctx, u, old, next)
				mu.Lock()
				switch {
				case err == nil:
					if chain[len(chain)-1] != old {
						t.Errorf("reset from %q acknowledged, but %q was in force", old, chain[len(chain)-1])
					}
					current, chain = next, append(chain, next)
					resetsOK++
				case errs.Is(err, errs.Conflict), errs.Is(err, errs.Invalid):
					refused++ // another reset won (Invalid: before this one read the user)
				default:
					t.Errorf("reset: %v", err)
				}
				mu.Unlock()
			}
		})
		acc = replicas[(w+1)%2]
		wg.Go(func() {
			<-start
			for range each {
				role := []core.Role{core.RoleCustomer, core.RoleClient, core.RoleAdmin}[rand.IntN(3)]
				status := []core.Status{core.StatusApproved, core.StatusPending, core.StatusRejected}[rand.IntN(3)]
				began := time.Now()
				got, err := acc.UpdateUser(ctx, admin, u.ID, &role, &status)
				ended := time.Now()
				mu.Lock()
				switch {
				case err == nil:
					if got.Role != role || got.Status != status {
						t.Errorf("UpdateUser answered %s/%s for %s/%s", got.Role, got.Status, role, status)
					}
					acked = append(acked, adminChange{role, status, got.Version, began, ended})
				case errs.Is(err, errs.Conflict):
					refused++
				default:
					t.Errorf("update: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()

	versions := map[int64]bool{}
	var last adminChange
	for _, a := range acked {
		if versions[a.version] {
			t.Errorf("two acknowledged admin changes stored as version %d: one is lost", a.version)
		}
		versions[a.version] = true
		if a.version > last.version {
			last = a
		}
		for _, b := range acked {
			if a.end.Before(b.start) && a.version >= b.version {
				t.Errorf("change %d ended before change %d began, yet is not older", a.version, b.version)
			}
		}
	}
	final, err := mongostore.New(devdb.TestDBNamed(t, name)).Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(acked) + resetsOK); final.Version != want {
		t.Errorf("user at version %d; %d admin changes and %d resets acknowledged", final.Version, len(acked), resetsOK)
	}
	if len(acked) > 0 && (final.Role != last.role || final.Status != last.status) {
		t.Errorf("user ends %s/%s; the latest admin change (version %d) set %s/%s", final.Role, final.Status, last.version, last.role, last.status)
	}
	for i, p := range chain {
		_, err := replicas[i%2].SignIn(ctx, "u@example.com", p)
		if i == len(chain)-1 && err != nil {
			t.Errorf("the latest acknowledged password %q does not sign in: %v", p, err)
		}
		if i < len(chain)-1 && err == nil {
			t.Errorf("the replaced password %q still signs in", p)
		}
	}
	if resetsOK == 0 || len(acked) == 0 {
		t.Errorf("%d resets and %d admin changes acknowledged: the race did not run", resetsOK, len(acked))
	}
	t.Logf("%d resets and %d admin changes acknowledged, %d refused; user at version %d", resetsOK, len(acked), refused, final.Version)
}
