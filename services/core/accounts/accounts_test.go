package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// comparisons records the bcrypt comparisons Accounts makes.
type comparisons struct {
	mu    sync.Mutex
	costs []int // the cost of each hash compared against
	lens  []int // the length of each password compared
}

func (c *comparisons) compare(hash, password []byte) error {
	cost, err := bcrypt.Cost(hash)
	c.mu.Lock()
	c.costs = append(c.costs, cost)
	c.lens = append(c.lens, len(password))
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return bcrypt.CompareHashAndPassword(hash, password)
}

func (c *comparisons) take() (costs, lens []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	costs, lens = c.costs, c.lens
	c.costs, c.lens = nil, nil
	return costs, lens
}

// TestSignInCostsOneComparison: whether the account exists or not, whatever the password's
// length, a sign-in (and a password change's old password) costs exactly one bcrypt comparison
// against a hash of the configured cost, of at most 72 bytes of password: the time does not
// tell an unknown account from a known one, nor a too-long password from a wrong one.
func TestSignInCostsOneComparison(t *testing.T) {
	t.Parallel()
	const cost = 5 // not the default, so the dummy hash is seen to follow the configuration
	store := mongostore.New(devdb.TestDB(t))
	if err := store.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	acc, err := accounts.NewAccounts(store, accounts.AccountsOptions{Secret: []byte("test-secret-0123456789abcdef0123456789"), BcryptCost: cost})
	if err != nil {
		t.Fatal(err)
	}
	cmp := &comparisons{}
	accounts.SetCompare(acc, cmp.compare)
	u, err := acc.SignUp(t.Context(), core.SignUp{Name: "Ann", Email: "ann@example.com", Password: "password-1"})
	if err != nil {
		t.Fatal(err)
	}
	long := "password-1" + strings.Repeat("x", 1<<20)
	cases := []struct {
		name, email, password string
		ok                    bool
	}{
		{"known, right", "ann@example.com", "password-1", true},
		{"known, wrong", "ann@example.com", "password-2", false},
		{"unknown", "nobody@example.com", "password-1", false},
		{"known, 73 bytes", "ann@example.com", strings.Repeat("p", 73), false},
		{"known, right prefix then 1 MiB", "ann@example.com", long, false},
		{"unknown, 1 MiB", "nobody@example.com", long, false},
		{"known, exactly 72 bytes", "ann@example.com", strings.Repeat("p", 72), false},
	}
	for _, c := range cases {
		_, err := acc.SignIn(t.Context(), c.email, c.password)
		if c.ok != (err == nil) || !c.ok && !errs.Is(err, errs.Unauthorized) {
			t.Errorf("%s: %v", c.name, err)
		}
		costs, lens := cmp.take()
		if len(costs) != 1 || costs[0] != cost || lens[0] > core.MaxPasswordBytes {
			t.Errorf("%s: comparisons of costs %v, password lengths %v; want one, of cost %d, at most %d bytes",
				c.name, costs, lens, cost, core.MaxPasswordBytes)
		}
	}
	// Input refused before any lookup costs nothing: it says nothing about any account.
	for _, bad := range [][2]string{{"", "x"}, {"a@b.cc", ""}, {strings.Repeat("a", 250) + "@b.cc", "password-1"}} {
		if _, err := acc.SignIn(t.Context(), bad[0], bad[1]); !errs.Is(err, errs.Invalid) {
			t.Errorf("sign-in %.20q: %v, want invalid", bad[0], err)
		}
	}
	if costs, _ := cmp.take(); len(costs) != 0 {
		t.Errorf("refused input was compared: %v", costs)
	}
	// A password change's old password: one comparison too, also when too long.
	for _, old := range []string{"password-2", long} {
		err := acc.ResetPassword(t.Context(), u, old, "password-3")
		var e *errs.Error
		if !errs.Is(err, errs.Invalid) || !errors.As(err, &e) || e.Fields["oldPassword"] != core.MsgOldPasswordMismatch {
			t.Errorf("old password %.12q: %v", old, err)
		}
		if costs, lens := cmp.take(); len(costs) != 1 || costs[0] != cost || lens[0] > core.MaxPasswordBytes {
			t.Errorf("old password %.12q: comparisons %v %v", old, costs, lens)
		}
	}
}
