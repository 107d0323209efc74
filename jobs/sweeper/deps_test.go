package sweeper_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The sweep's logic reaches the database only through the store interfaces it declares: the
// package must not depend on the database driver (mongostore/ does), directly or through
// another package (services/notification's root imports no driver either).
func TestRootDependsOnNoDriver(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/cineflow/cineflow/jobs/sweeper") {
		t.Fatalf("go list -deps looks wrong:\n%s", out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "go.mongodb.org/") {
			t.Errorf("jobs/sweeper depends on %s", d)
		}
	}
}
