package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Skaffold returns the skaffold binary built from the module k8s/skaffold, in the cache its own
// tests use (<user cache>/cineflow/skaffold-<hash of go.mod, go.sum and the Go version>/), so
// that `make test` and `make e2e` build it once between them.
func Skaffold(root string, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(root, "k8s", "skaffold")
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "cineflow", "skaffold-"+hex.EncodeToString(h.Sum(nil))[:16], "skaffold")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	began := time.Now()
	logf("building skaffold from %s (minutes the first time; cached after)", dir)
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build skaffold: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	logf("built skaffold in %s", time.Since(began).Round(time.Second))
	return bin, nil
}
