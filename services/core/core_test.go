package core

import (
	"strings"
	"testing"

	"github.com/cineflow/cineflow/pkg/errs"
)

func TestSignUpValidate(t *testing.T) {
	t.Parallel()
	s := SignUp{Name: " Ann ", Email: " Ann@Example.COM", Password: "password-1"}
	if err := s.Validate(); err != nil || s.Name != "Ann" || s.Email != "ann@example.com" || s.Role != RoleCustomer {
		t.Fatalf("%v %+v", err, s)
	}
	if InitialStatus(RoleCustomer) != StatusApproved || InitialStatus(RoleClient) != StatusPending || InitialStatus(RoleAdmin) != StatusPending {
		t.Error("initial statuses")
	}
	bad := SignUp{Email: "a@b", Password: strings.Repeat("x", 73), Role: "ROOT"}
	err := bad.Validate()
	var e *errs.Error
	if !errs.Is(err, errs.Invalid) {
		t.Fatal(err)
	}
	e = err.(*errs.Error)
	for _, k := range []string{"name", "email", "password", "userRole"} {
		if e.Fields[k] == "" {
			t.Errorf("no error for %s: %v", k, e.Fields)
		}
	}
	for _, email := range []string{"x", "a b@c.de", "Ann <a@b.cd>", "@b.cd", "a@", strings.Repeat("a", 250) + "@b.cd"} {
		if _, msg := NormalizeEmail(email); msg == "" {
			t.Errorf("%q accepted", email)
		}
	}
}
