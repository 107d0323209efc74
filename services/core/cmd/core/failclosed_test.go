package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/config/configtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds cmd/core once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "core-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "core")
		cmd := exec.Command(gobin, "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

// runCore starts the binary with exactly env (no APP_ENV unless given) in an empty directory
// (no .env file), and returns it with its output.
func runCore(t *testing.T, env ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(buildBinary(t))
	cmd.Dir = t.TempDir()
	cmd.Env = env
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, logs
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(within):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the binary did not exit within %v", within)
		return -1
	}
}

// TestBinaryFailsClosed: the core binary, run without APP_ENV, is in production mode: it
// refuses to start without a JWT_SECRET of at least 32 bytes and without
// NOTIFICATION_API_TOKEN, with a message that names the variable and never a secret's value.
// With APP_ENV=development it starts without them (as `make run` and the tests run it).
func TestBinaryFailsClosed(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const (
		shortSecret = "short-jwt-secret-value-xyz"
		longSecret  = "long-jwt-secret-value-0123456789abcdefghij"
		adminPass   = "admin-password-value-123"
	)
	common := func(extra ...string) []string {
		return append([]string{"PORT=" + strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "DB_URL=" + testDBURL(t),
			"ADMIN_EMAIL=root@cineflow.test", "ADMIN_PASSWORD=" + adminPass, "LOG_LEVEL=debug"}, extra...)
	}
	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"no JWT_SECRET", common(), "JWT_SECRET is required in production"},
		{"APP_ENV empty", common("APP_ENV="), "JWT_SECRET is required in production"},
		{"short JWT_SECRET", common("JWT_SECRET="+shortSecret, "NOTIFICATION_API_TOKEN=service-token-value"), "JWT_SECRET must be at least 32 bytes"},
		{"no NOTIFICATION_API_TOKEN", common("JWT_SECRET=" + longSecret), "NOTIFICATION_API_TOKEN is required in production"},
		{"misspelt APP_ENV", common("APP_ENV=dev"), "APP_ENV must be production"},
		{"unknown LOG_LEVEL", common("APP_ENV=development", "LOG_LEVEL=verbose"), "LOG_LEVEL must be one of debug, info, warn, error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd, logs := runCore(t, c.env...)
			if code := waitExit(t, cmd, 20*time.Second); code != 1 {
				t.Errorf("exit code %d, want 1\n%s", code, logs.String())
			}
			out := logs.String()
			if !strings.Contains(out, c.want) || !strings.Contains(out, "cannot start") {
				t.Errorf("want a refusal naming %q:\n%s", c.want, out)
			}
			for _, secret := range []string{shortSecret, longSecret, adminPass, "service-token-value"} {
				if strings.Contains(out, secret) {
					t.Errorf("the output shows a secret value %q:\n%s", secret, out)
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"development without secrets", common("APP_ENV=development")},
		{"production with its secrets", common("JWT_SECRET="+longSecret, "NOTIFICATION_API_TOKEN=service-token-value")},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd, logs := runCore(t, c.env...)
			port := strings.TrimPrefix(c.env[0], "PORT=")
			deadline := time.Now().Add(60 * time.Second)
			for {
				resp, err := http.Get("http://127.0.0.1:" + port + "/readyz")
				if err == nil {
					resp.Body.Close()
					// Ready, and Run has returned (a signal before then is a failed start).
					if resp.StatusCode == 200 && strings.Contains(logs.String(), "core service listening") {
						break
					}
				}
				if time.Now().After(deadline) || cmd.ProcessState != nil {
					t.Fatalf("not ready: %v\n%s", err, logs.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := waitExit(t, cmd, 30*time.Second); code != 0 {
				t.Errorf("exit code %d after SIGTERM\n%s", code, logs.String())
			}
			out := logs.String()
			if dev := strings.Contains(c.name, "development"); dev != strings.Contains(out, "JWT_SECRET is not set") {
				t.Errorf("development warning present: %v, want %v:\n%s", !dev, dev, out)
			}
			for _, secret := range []string{longSecret, adminPass, "service-token-value"} {
				if strings.Contains(out, secret) {
					t.Errorf("the output shows a secret value %q:\n%s", secret, out)
				}
			}
		})
	}
}

// TestImageRunsInProduction: the image sets no APP_ENV, so it runs as the binary defaults:
// in production mode.
func TestImageRunsInProduction(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dockerfile), "APP_ENV") {
		t.Error("services/core/Dockerfile mentions APP_ENV: the image must run in production mode, the binary's default")
	}
}

// TestCommandLine: core --version, --help (what it is, the variables with their defaults) and an
// unknown flag.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	configtest.CheckCommandLine(t, buildBinary(t), "core", "PORT", "3000", "DB_URL", "JWT_SECRET", "BOOKING_HOLD_TTL", "5m",
		"METRICS_PORT", "OTEL_EXPORTER_OTLP_ENDPOINT")
}
