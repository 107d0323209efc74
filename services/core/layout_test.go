package core_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The shape of the core service, kept: the contracts in the root import no framework, no
// driver and no bson; each subdomain imports the contracts and pkg, never an adapter or the
// driver; each adapter imports the subdomains it serves, never another adapter; nothing
// imports cmd/core. (Go refuses import cycles by itself.)
const module = "github.com/cineflow/cineflow/services/core"

var (
	subdomains = []string{"accounts", "booking", "catalogue", "outbox"}
	adapters   = []string{"httpapi", "mongostore", "notifyclient"}
	// Imported by no contract and no subdomain.
	frameworks = []string{"github.com/gofiber/", "github.com/valyala/", "go.mongodb.org/mongo-driver"}
)

type listed struct {
	ImportPath string
	Deps       []string
}

func TestPackageLayout(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps", "./...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p.Deps
	}
	for _, name := range append(append([]string{"", "cmd/core"}, subdomains...), adapters...) {
		if _, ok := pkgs[name]; !ok {
			t.Fatalf("package %q is missing from go list: the layout changed, change this test with it", module+"/"+name)
		}
	}
	local := func(deps []string) (out []string) {
		for _, d := range deps {
			if rest, ok := strings.CutPrefix(d, module+"/"); ok {
				out = append(out, rest)
			}
		}
		return out
	}
	framework := func(deps []string) []string {
		var out []string
		for _, d := range deps {
			for _, f := range frameworks {
				if strings.HasPrefix(d, f) {
					out = append(out, d)
					break
				}
			}
		}
		return out
	}
	for name, deps := range pkgs {
		what := module
		if name != "" {
			what += "/" + name
		}
		top, _, _ := strings.Cut(name, "/")
		switch {
		case name == "":
			if l := local(deps); len(l) > 0 {
				t.Errorf("%s (the contracts) imports %v", what, l)
			}
			if f := framework(deps); len(f) > 0 {
				t.Errorf("%s (the contracts) imports %v", what, f)
			}
		case slices.Contains(subdomains, top):
			for _, d := range local(deps) {
				dtop, _, _ := strings.Cut(d, "/")
				if slices.Contains(adapters, dtop) || dtop == "cmd" {
					t.Errorf("%s (a subdomain) imports %s", what, d)
				}
			}
			if f := framework(deps); len(f) > 0 {
				t.Errorf("%s (a subdomain) imports %v", what, f)
			}
		case slices.Contains(adapters, top):
			for _, d := range local(deps) {
				dtop, _, _ := strings.Cut(d, "/")
				if dtop != top && slices.Contains(adapters, dtop) || dtop == "cmd" {
					t.Errorf("%s (an adapter) imports %s", what, d)
				}
			}
		}
		if name != "cmd/core" && slices.Contains(local(deps), "cmd/core") {
			t.Errorf("%s imports cmd/core", what)
		}
	}
}
