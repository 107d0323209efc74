package docscheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// binaryDirs are where the binaries read their environment: their cmd packages and the shared
// packages they configure themselves through.
var binaryDirs = []string{"jobs/sweeper/cmd", "pkg/config", "pkg/httpx", "pkg/telemetry", "pkg/logging", "pkg/devdb/cmd"}

// systemVars are read by tools and tests from the system, not settings of CineFlow.
var systemVars = []string{"PATH", "HOME", "TMPDIR", "USER", "XDG_CACHE_HOME"}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// docFiles are the pages whose links are checked, relative to root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no docs/*.md")
	}
	files := []string{"README.md", "CONTRIBUTING.md", "SECURITY.md"}
	for _, p := range pages {
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
	}
	return files
}

func binaryEnv(t *testing.T, root string) map[string]string {
	t.Helper()
	dirs := slices.Clone(binaryDirs)
	cmds, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd"))
	if err != nil || len(cmds) == 0 {
		t.Fatalf("no services/*/cmd: %v", err)
	}
	for _, c := range cmds {
		rel, _ := filepath.Rel(root, c)
		dirs = append(dirs, rel)
	}
	vars, err := EnvReads(root, dirs, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) < 20 {
		t.Fatalf("found only %d variables read by the binaries: the scan is broken", len(vars))
	}
	return vars
}

func readDoc(t *testing.T, path string) ([]byte, *Doc) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return src, Parse(src)
}

// TestDocsLinksResolve: every relative link and #anchor of the README, CONTRIBUTING.md,
// SECURITY.md and docs/*.md names a file that exists and a heading it has.
func TestDocsLinksResolve(t *testing.T) {
	root := repoRoot(t)
	problems, err := CheckLinks(root, docFiles(t, root))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestDocsTablesOfContents: each docs page lists its ## sections before the first of them.
func TestDocsTablesOfContents(t *testing.T) {
	root := repoRoot(t)
	for _, f := range docFiles(t, root) {
		if !strings.HasPrefix(f, "docs"+string(filepath.Separator)) {
			continue
		}
		_, d := readDoc(t, filepath.Join(root, f))
		for _, p := range CheckTOC(filepath.ToSlash(f), d) {
			t.Error(p)
		}
	}
}

// TestConfigurationListsEveryVariable: the variables in docs/configuration.md's tables are
// exactly the ones the binaries read.
func TestConfigurationListsEveryVariable(t *testing.T) {
	root := repoRoot(t)
	read := binaryEnv(t, root)
	_, d := readDoc(t, filepath.Join(root, "docs", "configuration.md"))
	listed := TableVars(d)
	for _, v := range Diff(read, listed) {
		t.Errorf("%s is read at %s but not in a table of docs/configuration.md", v, read[v])
	}
	for _, v := range Diff(listed, read) {
		t.Errorf("docs/configuration.md:%d lists %s, which no binary reads (a test-only variable belongs in docs/development.md)", listed[v], v)
	}
}

// TestDevelopmentListsTestVariables: every other variable a Go file of the repository reads
// (tests, benchmarks, tools) is named in docs/development.md.
func TestDevelopmentListsTestVariables(t *testing.T) {
	root := repoRoot(t)
	binaries := binaryEnv(t, root)
	all, err := EnvReads(root, []string{"."}, true)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := readDoc(t, filepath.Join(root, "docs", "development.md"))
	named := Mentioned(src)
	for _, v := range Diff(all, binaries) {
		if !slices.Contains(systemVars, v) && !named[v] {
			t.Errorf("%s is read at %s but not named in docs/development.md", v, all[v])
		}
	}
}

// The checks themselves: they must catch what they are for.

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckLinksCatchesBrokenLinks(t *testing.T) {
	root := writeFiles(t, map[string]string{
		"README.md": "# Title\n\n" +
			"[ok](docs/a.md) [ok](docs/a.md#the-make-run-loop) [ok](#title) [ok](docs/) [web](https://example.com/x#y)\n" +
			"[missing file](docs/b.md) [missing anchor](docs/a.md#nope) [missing here](#nothing)\n" +
			"`[in code](docs/none.md)`\n" +
			"```\n[in a fence](docs/none.md)\n```\n" +
			"[ref]: docs/gone.md\n",
		"docs/a.md": "# A\n\n## The `make run` loop\n\n[back](../README.md#title) [up](../../outside.md) [anchor in code](../go.mod#x)\n",
		"go.mod":    "module x\n",
	})
	got, err := CheckLinks(root, []string{"README.md", "docs/a.md"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:4: link docs/b.md: docs/b.md does not exist",
		"README.md:4: link docs/a.md#nope: no heading of docs/a.md has the anchor #nope",
		"README.md:4: link #nothing: no heading of README.md has the anchor #nothing",
		"README.md:9: link docs/gone.md: docs/gone.md does not exist",
		"docs/a.md:5: link ../../outside.md: points outside the repository",
		"docs/a.md:5: link ../go.mod#x: an anchor into go.mod, which is not Markdown",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckTOCCatchesMissingSection(t *testing.T) {
	d := Parse([]byte("# Page\n\nIntro.\n\n- [One](#one)\n\n## One\n\n## Two: the second\n\n[two](#two-the-second)\n"))
	got := CheckTOC("docs/p.md", d)
	want := []string{`docs/p.md:9: section "Two: the second" is not in the table of contents (#two-the-second)`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEnvCheckCatchesMissingVariable(t *testing.T) {
	root := writeFiles(t, map[string]string{
		"cmd/main.go": "package main\n\nimport \"os\"\n\n" +
			"type Config struct {\n\tPort int `env:\"PORT\" envDefault:\"3000\"`\n\tToken string `env:\"API_TOKEN,required\"`\n\tskip string `json:\"X\"`\n}\n\n" +
			"func main() {\n\t_ = os.Getenv(\"OTEL_SDK_DISABLED\")\n\t_, _ = os.LookupEnv(\"DEBUG_ADDR\")\n\tlookup := func(k string) string { return k }\n\t_ = lookup(\"SWEEP_INTERVAL\")\n\t_ = os.Getenv(\"lower\")\n}\n",
		"cmd/main_test.go": "package main\n\nimport \"os\"\n\nvar _ = os.Getenv(\"TEST_ONLY\")\n",
		"configuration.md": "| variable | default |\n|---|---|\n| `PORT` | `3000` |\n| `API_TOKEN`, `SWEEP_INTERVAL` | none |\n| `OTEL_SDK_DISABLED` / `STALE_VAR` | x |\n" +
			"| not a `VAR` cell | x |\n\n```\n| `IN_FENCE` | x |\n```\n",
	})
	read, err := EnvReads(root, []string{"cmd"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Diff(read, map[string]bool{}), []string{"API_TOKEN", "DEBUG_ADDR", "OTEL_SDK_DISABLED", "PORT", "SWEEP_INTERVAL"}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	if read["DEBUG_ADDR"] != "cmd/main.go:13" {
		t.Errorf("DEBUG_ADDR read at %q", read["DEBUG_ADDR"])
	}
	withTests, err := EnvReads(root, []string{"cmd"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := withTests["TEST_ONLY"]; !ok {
		t.Error("a test file's variable is not found with tests")
	}
	src, err := os.ReadFile(filepath.Join(root, "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := TableVars(Parse(src))
	if missing := Diff(read, listed); !slices.Equal(missing, []string{"DEBUG_ADDR"}) {
		t.Errorf("missing from the doc: %v, want [DEBUG_ADDR]", missing)
	}
	if extra := Diff(listed, read); !slices.Equal(extra, []string{"STALE_VAR"}) {
		t.Errorf("listed but not read: %v, want [STALE_VAR]", extra)
	}
}

// TestSlug follows GitHub's anchor rules (those of github-slugger, which github.com uses).
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Delivery: no email lost, none sent twice":                     "delivery-no-email-lost-none-sent-twice",
		"Accounts, theatre lists and Idempotency-Keys: no lost update": "accounts-theatre-lists-and-idempotency-keys-no-lost-update",
		"The `make run` loop":                                          "the-make-run-loop",
		"make run (devstack)":                                          "make-run-devstack",
		"Without Helm: plain manifests":                                "without-helm-plain-manifests",
		"[Linked](https://example.com) heading":                        "linked-heading",
		"SWEEP_INTERVAL and **bold**":                                  "sweep_interval-and-bold",
		"Café — 2 × faster":                                            "café--2--faster",
		"Differences from the original Node API":                       "differences-from-the-original-node-api",
		"Health, metrics and OpenAPI":                                  "health-metrics-and-openapi",
		"1.0 / v2.x?":                                                  "10--v2x",
		"Release decides only: expired bookings' slots":                "release-decides-only-expired-bookings-slots",
		"<a name=\"x\"></a>HTML tags go":                               "html-tags-go",
		"Trailing hashes are not the heading's":                        "trailing-hashes-are-not-the-headings",
		"Test and benchmark variables":                                 "test-and-benchmark-variables",
		"The first admin and its password":                             "the-first-admin-and-its-password",
		"Booking: never oversold, each fate decided once":              "booking-never-oversold-each-fate-decided-once",
		"Why the expiry storm is released in time":                     "why-the-expiry-storm-is-released-in-time",
		"Images":                            "images",
		"A heading with `code_span` inside": "a-heading-with-code_span-inside",
	} {
		if got := Slug(headingText(heading)); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
	d := Parse([]byte("# T\n## Same\n## Same\n## Same ##\n### Same\n"))
	var slugs []string
	for _, h := range d.Headings {
		slugs = append(slugs, h.Slug)
	}
	if want := []string{"t", "same", "same-1", "same-2", "same-3"}; !slices.Equal(slugs, want) {
		t.Errorf("repeated headings: %v, want %v", slugs, want)
	}
}
