// Package charttest checks the Helm chart in charts/cineflow: lint and template over a matrix of
// values, the values schema, and (not in -short mode) an install on a real Kubernetes API server.
// It is its own module, outside go.work, so that Helm's and Kubernetes' dependencies never mix
// with the services'. Run it with `cd charts/test && GOWORK=off go test ./...`.
package charttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository's root directory.
func repoRoot(t testing.TB) string {
	if t != nil {
		t.Helper()
	}
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
		cmd := exec.Command("go", "build", "-ldflags", helmLDFlags(), "-o", helmPath, "helm.sh/helm/v3/cmd/helm")
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

// kubeMinor is the Kubernetes minor version of this module's client-go (v0.X.Y is Kubernetes 1.X).
var kubeMinor = sync.OnceValue(func() string {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go")
	cmd.Dir, cmd.Env = filepath.Join(repoRoot(nil), "charts", "test"), append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	parts := strings.Split(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
	if err != nil || len(parts) != 3 || parts[0] != "0" {
		panic(fmt.Sprintf("the version of k8s.io/client-go: %q, %v", out, err))
	}
	return parts[1]
})

// helmLDFlags set the Kubernetes version Helm assumes without a cluster (helm template, lint,
// client-only dry runs) to the client-go version it is built with, as Helm's own release builds
// do (its Makefile); a plain `go build` would leave it at 1.20, which the chart's kubeVersion
// refuses.
func helmLDFlags() string {
	return fmt.Sprintf("-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=%[1]s "+
		"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=%[1]s", kubeMinor())
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
