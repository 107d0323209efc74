// Package charttest checks the Helm chart in charts/cineflow: lint and template over a matrix of
// values, the values schema, and (not in -short mode) an install on a real Kubernetes API server.
// It is its own module, outside go.work, so that Helm's and Kubernetes' dependencies never mix
// with the services'. Run it with `cd charts/test && GOWORK=off go test ./...`.
package charttest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// repoRoot is the repository's root directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// chartDir is the chart under test.
func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "cineflow") }

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBin builds Helm from this module's tool dependency (once per test binary; the Go build
// cache makes it seconds after the first time) and returns its path.
func helmBin(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cineflow-helm-")
		if err != nil {
			helmErr = err
			return
		}
		helmPath = filepath.Join(dir, "helm")
		cmd := exec.Command("go", "build", "-o", helmPath, "helm.sh/helm/v3/cmd/helm")
		cmd.Dir = filepath.Join(repoRoot(t), "charts", "test")
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = &buildError{err: err, out: out}
		}
	})
	if helmErr != nil {
		t.Fatalf("build helm: %v", helmErr)
	}
	return helmPath
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// helm runs helm with args (HELM_* state in a temporary home) and returns stdout, stderr and
// the error.
func helm(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestHelmBuilds makes sure the tool builds and runs.
func TestHelmBuilds(t *testing.T) {
	out, errOut, err := helm(t, "version", "--short")
	if err != nil {
		t.Fatalf("helm version: %v\n%s", err, errOut)
	}
	if !bytes.HasPrefix([]byte(out), []byte("v3.")) {
		t.Fatalf("helm version %q", out)
	}
}
