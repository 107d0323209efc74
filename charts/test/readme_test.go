package charttest

// The chart's README: its parameters tables are what bitnami's readme-generator-for-helm makes
// of values.yaml now (charts/readme.sh, `make chart-readme`), and its hand-written part says what
// users must know before they install.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartReadmeUpToDate regenerates the README into a temporary copy (charts/readme.sh -) and
// requires it to be byte for byte the committed one. Without npm it is skipped, unless CI is set:
// then it fails (`make deps` installs Debian's nodejs and npm).
func TestChartReadmeUpToDate(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("npm not found: the chart README's parameters tables cannot be checked (make deps installs Debian's nodejs and npm)")
		}
		t.Skip("npm not found (apt-get install nodejs npm, or make deps): skipping the chart README check")
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "charts", "readme.sh"), "-")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("charts/readme.sh: %v\n%s", err, errOut.String())
	}
	got, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out.Bytes()) {
		t.Fatalf("charts/cineflow/README.md's parameters tables are not what values.yaml gives now: run `make chart-readme` and commit the result.\n%s",
			firstDifference(got, out.Bytes()))
	}
}

// TestChartReadmeContents: the hand-written part covers what the issue asked for.
func TestChartReadmeContents(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, want := range []string{
		"## TL;DR", "--set devDatabase.enabled=true", "## Prerequisites",
		"oci://ghcr.io/cineflow/charts/cineflow", "helm install cineflow charts/cineflow",
		"existingSecret", "**not for production**",
		"only **seeds** the first admin", "PATCH", "/mba/api/v1/auth/reset",
		"## Parameters", "`devDatabase.enabled`", "`ingress.hostname`", "`metrics.port`", "`global.imageRegistry`",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("charts/cineflow/README.md does not say %q", want)
		}
	}
}
