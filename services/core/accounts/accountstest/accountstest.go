// Package accountstest is the conformance suite of accounts.UserStore, in the manner of
// riverqueue/river's driver suite (riverdrivertest): one function runs every method's
// contract, and its concurrency contract, against a store an implementation's own tests make.
//
// The contract it checks, method by method (subtest names say the same):
//
//   - Create stores a user and sets its ID; zero CreatedAt and UpdatedAt are set, given ones
//     are kept (to the millisecond). An email has one account: of any number of Creates of
//     one email, at once or one after the other, exactly one succeeds and every other is
//     errs.Conflict; the store's unique key decides, never a read.
//   - Get finds a user by id at its latest version: errs.NotFound for an unknown id,
//     errs.Invalid for a malformed one. GetByEmail finds one by its (lowercased) email:
//     errs.NotFound when none has it.
//   - Change stores the mutable state (role, status, password hash and its date, session
//     generation, UpdatedAt) as the version after the one the user was read at, and sets
//     u.Version to it. Of many Changes from one version, at once, exactly one lands; every
//     other is errs.Conflict and stores nothing. Changes that redo themselves on Conflict
//     (as Accounts does) all land, each on a version of its own. A malformed id is
//     errs.Invalid.
//   - Refresh returns the user unchanged while it is the latest version, else the latest
//     version: a Change acknowledged before Refresh began is seen. A malformed id is
//     errs.Invalid.
//   - Ping answers nil while the store is up.
package accountstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
)

// RunUserStore runs the suite. newStore returns a new, empty store of its own on each call
// (the subtests run in parallel), ready for use (indexes made).
func RunUserStore(t *testing.T, newStore func(t *testing.T) accounts.UserStore) {
	t.Helper()
	at := time.Date(2030, 6, 1, 18, 30, 0, 123456789, time.UTC)
	ms := at.Truncate(time.Millisecond)

	run := func(name string, f func(t *testing.T, ctx context.Context, s accounts.UserStore)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, t.Context(), newStore(t))
		})
	}

	run("Create/SetsIDAndZeroTimes_KeepsGivenTimes", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("zero@example.com", "h")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		if !core.IsID(u.ID) || u.CreatedAt.IsZero() || u.UpdatedAt.IsZero() {
			t.Fatalf("created %+v: want an id and both times set", u)
		}
		g := newUser("given@example.com", "h")
		g.CreatedAt, g.UpdatedAt = at, at.Add(time.Second)
		if err := s.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != g.ID || got.Email != g.Email || got.Name != g.Name || got.PasswordHash != g.PasswordHash ||
			got.Role != g.Role || got.Status != g.Status || got.Version != 0 || got.SessionGen != 0 ||
			!got.CreatedAt.Equal(ms) || !got.UpdatedAt.Equal(ms.Add(time.Second)) {
			t.Fatalf("read back %+v, want %+v (times to the millisecond)", got, g)
		}
		if got.ID == u.ID {
			t.Fatal("two users, one id")
		}
	})

	run("Create/TakenEmailIsConflict", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		first := newUser("taken@example.com", "h1")
		if err := s.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, newUser("taken@example.com", "h2")); !errs.Is(err, errs.Conflict) {
			t.Fatalf("second sign-up with the email: %v, want conflict", err)
		}
		got, err := s.GetByEmail(ctx, "taken@example.com")
		if err != nil || got.ID != first.ID || got.PasswordHash != "h1" {
			t.Fatalf("the email's user after the refused sign-up: %+v, %v; want the first", got, err)
		}
	})

	run(fmt.Sprintf("Create/Race%dSameEmail_OneWinsRestConflict", racetest.Racers), func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		errsOf := make([]error, racetest.Racers)
		users := make([]*core.User, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) {
			users[i] = newUser("race@example.com", fmt.Sprint("h", i))
			errsOf[i] = s.Create(ctx, users[i])
		})
		winner := -1
		for i, err := range errsOf {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("sign-ups %d and %d both succeeded", winner, i)
			case err == nil:
				winner = i
			case !errs.Is(err, errs.Conflict):
				t.Fatalf("sign-up %d: %v, want nil or conflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no sign-up succeeded")
		}
		got, err := s.GetByEmail(ctx, "race@example.com")
		if err != nil || got.ID != users[winner].ID || got.PasswordHash != users[winner].PasswordHash {
			t.Fatalf("the email's user: %+v, %v; want the winner %+v", got, err, users[winner])
		}
		if byID, err := s.Get(ctx, users[winner].ID); err != nil || byID.Email != "race@example.com" {
			t.Fatalf("the winner by id: %+v, %v", byID, err)
		}
	})

	run("Get/UnknownIsNotFound_MalformedIsInvalid", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		if _, err := s.Get(ctx, "0123456789abcdef01234567"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		for _, id := range []string{"", "nope", "0123456789abcdef0123456z", "0123456789abcdef012345678"} {
			if _, err := s.Get(ctx, id); !errs.Is(err, errs.Invalid) {
				t.Fatalf("malformed id %q: %v, want invalid", id, err)
			}
		}
	})

	run("GetByEmail/FindsLatestVersion_UnknownIsNotFound", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("ann@example.com", "h0")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetByEmail(ctx, "nobody@example.com"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown email: %v, want not_found", err)
		}
		c, _ := s.Get(ctx, u.ID)
		c.Status = core.StatusRejected
		if err := s.Change(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetByEmail(ctx, "ann@example.com")
		if err != nil || got.ID != u.ID || got.Version != 1 || got.Status != core.StatusRejected {
			t.Fatalf("by email after a change: %+v, %v; want version 1, REJECTED", got, err)
		}
	})

	run("Change/StoresNextVersion", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("c@example.com", "h0")
		u.Status = core.StatusPending
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		c, err := s.Get(ctx, u.ID)
		if err != nil || c.Version != 0 {
			t.Fatalf("new user: %+v, %v; want version 0", c, err)
		}
		c.Role, c.Status, c.PasswordHash = core.RoleAdmin, core.StatusApproved, "h1"
		c.PasswordChangedAt, c.SessionGen, c.UpdatedAt = at, 1, at
		if err := s.Change(ctx, c); err != nil || c.Version != 1 {
			t.Fatalf("change: %v, version %d; want nil, 1", err, c.Version)
		}
		got, err := s.Get(ctx, u.ID)
		if err != nil || got.Version != 1 || got.Role != core.RoleAdmin || got.Status != core.StatusApproved ||
			got.PasswordHash != "h1" || !got.PasswordChangedAt.Equal(ms) || got.SessionGen != 1 || !got.UpdatedAt.Equal(ms) ||
			got.Name != u.Name || got.Email != u.Email || !got.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("after the change: %+v, %v", got, err)
		}
	})

	run("Change/StaleVersionIsConflict_StoresNothing", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("stale@example.com", "h0")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		a, _ := s.Get(ctx, u.ID)
		b, _ := s.Get(ctx, u.ID)
		a.Status = core.StatusRejected
		if err := s.Change(ctx, a); err != nil {
			t.Fatal(err)
		}
		b.PasswordHash, b.SessionGen = "h-stale", 1
		if err := s.Change(ctx, b); !errs.Is(err, errs.Conflict) {
			t.Fatalf("change from a stale version: %v, want conflict", err)
		}
		got, _ := s.Get(ctx, u.ID)
		if got.Version != 1 || got.PasswordHash != "h0" || got.SessionGen != 0 || got.Status != core.StatusRejected {
			t.Fatalf("after the refused change: %+v; want version 1 with the first change alone", got)
		}
	})

	run(fmt.Sprintf("Change/Race%dOneVersion_OneLandsRestConflict", racetest.Racers), func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("cv@example.com", "h")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) {
			c := *u
			c.PasswordHash, c.SessionGen = fmt.Sprint("h", i), int64(i+1)
			errsOf[i] = s.Change(ctx, &c)
		})
		winner := -1
		for i, err := range errsOf {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("changes %d and %d both landed on version 1", winner, i)
			case err == nil:
				winner = i
			case !errs.Is(err, errs.Conflict):
				t.Fatalf("change %d: %v, want nil or conflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no change landed")
		}
		got, err := s.Get(ctx, u.ID)
		if err != nil || got.Version != 1 || got.PasswordHash != fmt.Sprint("h", winner) || got.SessionGen != int64(winner+1) {
			t.Fatalf("after the race: %+v, %v; want version 1 holding change %d", got, err, winner)
		}
	})

	run(fmt.Sprintf("Change/Race%dRedoOnConflict_AllLandOnVersionsOfTheirOwn", racetest.Racers), func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("redo@example.com", "h")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		versions := make([]int64, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) {
			for range 10 * racetest.Racers {
				c, err := s.Get(ctx, u.ID)
				if err != nil {
					errsOf[i] = err
					return
				}
				c.PasswordHash = fmt.Sprint("h", i)
				err = s.Change(ctx, c)
				if errs.Is(err, errs.Conflict) {
					continue
				}
				errsOf[i], versions[i] = err, c.Version
				return
			}
			errsOf[i] = fmt.Errorf("change %d lost %d times", i, 10*racetest.Racers)
		})
		seen := map[int64]int{}
		for i, err := range errsOf {
			if err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
			if j, dup := seen[versions[i]]; dup {
				t.Fatalf("changes %d and %d both stored as version %d", j, i, versions[i])
			}
			seen[versions[i]] = i
		}
		got, err := s.Get(ctx, u.ID)
		if err != nil || got.Version != racetest.Racers {
			t.Fatalf("after %d changes: %+v, %v; want version %d", racetest.Racers, got, err, racetest.Racers)
		}
		if last := seen[racetest.Racers]; got.PasswordHash != fmt.Sprint("h", last) {
			t.Fatalf("latest version holds %q, want change %d's", got.PasswordHash, last)
		}
	})

	run("Change/MalformedIDIsInvalid", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		if err := s.Change(ctx, &core.User{ID: "nope", Role: core.RoleCustomer, Status: core.StatusApproved}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("change of a malformed id: %v, want invalid", err)
		}
	})

	run("Refresh/SameWhileLatest_SeesAcknowledgedChange", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		u := newUser("r@example.com", "h0")
		if err := s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		kept, _ := s.Get(ctx, u.ID)
		got, err := s.Refresh(ctx, kept)
		if err != nil || got.Version != 0 || got.PasswordHash != "h0" || got.ID != u.ID || got.Email != u.Email {
			t.Fatalf("refresh of the latest version: %+v, %v", got, err)
		}
		for v := int64(1); v <= 3; v++ { // changed elsewhere, more than once
			c, _ := s.Get(ctx, u.ID)
			c.PasswordHash, c.SessionGen = fmt.Sprint("h", v), v
			if err := s.Change(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		got, err = s.Refresh(ctx, kept)
		if err != nil || got.Version != 3 || got.PasswordHash != "h3" || got.SessionGen != 3 || got.ID != u.ID ||
			got.Email != u.Email || got.Name != u.Name {
			t.Fatalf("refresh after 3 changes: %+v, %v; want version 3", got, err)
		}
		if _, err := s.Refresh(ctx, &core.User{ID: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("refresh of a malformed id: %v, want invalid", err)
		}
	})

	run("Ping/AnswersNil", func(t *testing.T, ctx context.Context, s accounts.UserStore) {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func newUser(email, hash string) *core.User {
	return &core.User{Name: "N", Email: email, PasswordHash: hash, Role: core.RoleClient, Status: core.StatusApproved}
}
