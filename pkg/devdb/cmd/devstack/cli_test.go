package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cineflow/cineflow/pkg/config/configtest"
)

// TestCommandLine: devstack --version, --help (its flags and settings) and an unknown flag.
func TestCommandLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devstack")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	configtest.CheckCommandLine(t, bin, "devstack", "--db-dir", "SWEEP_INTERVAL", "2m", "DEVDB_ADDR", "RESEND_API_KEY")
}
