package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// CacheRoot is where built binaries are kept between runs: $CINEFLOW_K8S_CACHE, default
// <user cache dir>/cineflow-k8s (the chart tests in charts/test use the same place).
func CacheRoot() string {
	if d := os.Getenv("CINEFLOW_K8S_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "cineflow-k8s")
}

// KubeTools are the Kubernetes programs the cluster runs, built from the module k8s/apiserver.
var KubeTools = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// ModuleKey is the cache key of a Go module's build: a hash of its go.mod and go.sum and the
// platform (the same key as charts/test's, so both share the API server's build).
func ModuleKey(modDir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s/%s\n", runtime.GOOS, runtime.GOARCH)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// BuildModuleTools builds the main packages pkgs of the module in modDir (outside go.work) into
// CacheRoot()/<ModuleKey>/, unless they are there already, and returns that directory. Each
// binary is named after its package's last element. A module that builds Kubernetes gets its
// version stamped in (see kubeVersionLDFlags), in CacheRoot()/<ModuleKey>-<version>/.
func BuildModuleTools(modDir string, pkgs []string, logf func(string, ...any)) (string, error) {
	key, err := ModuleKey(modDir)
	if err != nil {
		return "", err
	}
	ldflags, version := kubeVersionLDFlags(modDir)
	if version != "" {
		key += "-" + version
	}
	dir := filepath.Join(CacheRoot(), key)
	missing := missingBinaries(dir, pkgs)
	if len(missing) == 0 {
		return dir, nil
	}
	return dir, goBuildInto(dir, modDir, missing, ldflags, logf)
}

// kubeVersionLDFlags are the -X flags that stamp Kubernetes' version (the module's
// k8s.io/kubernetes, e.g. v1.34.4) into its programs, as Kubernetes' own build does
// (hack/lib/version.sh). Without them the API server reports v0.0.0-master+$Format:%H$, which a
// chart's kubeVersion constraint (the CineFlow chart's ">=1.27.0-0") refuses. Both are empty for a
// module that does not build Kubernetes.
func kubeVersionLDFlags(modDir string) (ldflags, version string) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil { // not a dependency of this module
		return "", ""
	}
	version = strings.TrimSpace(string(out))
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) != 3 {
		return "", ""
	}
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags, "-X "+pkg+".gitVersion="+version, "-X "+pkg+".gitMajor="+parts[0],
			"-X "+pkg+".gitMinor="+parts[1], "-X "+pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " "), version
}

// GoInstall builds module@version's main packages (CGO off) into
// CacheRoot()/<name>-<version>/ unless they are there already, and returns that directory. It
// builds them in a throwaway module that requires exactly that version (unlike `go install
// pkg@version`, this never asks the proxy for the module's version list, which it refuses for
// some modules).
func GoInstall(module, version string, pkgs []string, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(CacheRoot(), path.Base(module)+"-"+version)
	missing := missingBinaries(dir, pkgs)
	if len(missing) == 0 {
		return dir, nil
	}
	tmp, err := os.MkdirTemp("", "cineflow-goinstall-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module tmp\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	get := exec.Command("go", "get", module+"@"+version)
	get.Dir = tmp
	get.Env = append(os.Environ(), "GOWORK=off")
	if out, err := get.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go get %s@%s: %w\n%s", module, version, err, out)
	}
	return dir, goBuildInto(dir, tmp, missing, "", logf)
}

// goBuildInto runs `go build` (with ldflags, when given) in modDir, writing into a
// temporary directory beside dir, then moves each binary into dir: a run that is interrupted
// leaves no half-written binary in the cache.
func goBuildInto(dir, modDir string, pkgs []string, ldflags string, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	began := time.Now()
	logf("building %v into %s (minutes the first time; cached after)", pkgs, dir)
	// No -trimpath: the same flags as `go build` and `go tool` elsewhere in the repository (the
	// chart tests build Helm and the API server so), so the Go build cache is shared (-ldflags
	// changes only the link).
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, pkgs...)...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v in %s: %w\n%s", cmd.Args, modDir, err, out)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	logf("built %v in %s", pkgs, time.Since(began).Round(time.Second))
	return nil
}

// missingBinaries are the packages of pkgs whose binary (named after the package's last element)
// is not in dir.
func missingBinaries(dir string, pkgs []string) []string {
	var missing []string
	for _, p := range pkgs {
		if !isFile(filepath.Join(dir, path.Base(p))) {
			missing = append(missing, p)
		}
	}
	return missing
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
