package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
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

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/config/configtest"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
)

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func connect(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	cl, err := mongox.Connect(context.Background(), uri, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Disconnect(context.Background()) })
	return cl
}

var configVars = []string{"APP_ENV", "LOG_LEVEL", "HOST", "PORT", "DB_URL", "DB_CONNECT_TIMEOUT", "NOTIFICATION_API_TOKEN",
	"SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT", "BODY_LIMIT", "HTTP_READ_TIMEOUT", "HTTP_WRITE_TIMEOUT", "HTTP_IDLE_TIMEOUT",
	"METRICS_STATS_TTL"}

func clearConfigEnv(t *testing.T) {
	for _, k := range configVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Chdir(t.TempDir()) // no .env file
}

func TestConfigDefaults(t *testing.T) {
	clearConfigEnv(t)
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 3001 || cfg.DBURL != mongox.DefaultURL || cfg.BodyLimit != 1<<20 || cfg.ShutdownDelay != 0 ||
		cfg.APIToken != "" || cfg.AppEnv != "production" || !cfg.Production() || cfg.MetricsStatsTTL != 5*time.Second ||
		cfg.DBConnectTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if mongox.DatabaseName(cfg.DBURL, "noti") != "noti" {
		t.Errorf("default database %q", mongox.DatabaseName(cfg.DBURL, "noti"))
	}
	// Production by default: no token, no start.
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "NOTIFICATION_API_TOKEN is required in production") {
		t.Errorf("defaults without a token: %v", err)
	}
	cfg.AppEnv = "development"
	if err := cfg.Validate(); err != nil {
		t.Errorf("development defaults invalid: %v", err)
	}
}

func TestConfigFromEnvAndDotEnv(t *testing.T) {
	clearConfigEnv(t)
	os.WriteFile(".env", []byte("PORT=4001\nNOTIFICATION_API_TOKEN=from-file\nLOG_LEVEL=warn\n"), 0o600)
	t.Setenv("PORT", "4555") // the environment wins over .env
	t.Setenv("DB_URL", "mongodb://db.internal:27017/notifications")
	t.Setenv("APP_ENV", "production")
	t.Setenv("SHUTDOWN_DELAY", "5s")
	t.Setenv("BODY_LIMIT", "2048")
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 4555 || cfg.APIToken != "from-file" || cfg.LogLevel != "warn" || !cfg.Production() ||
		cfg.ShutdownDelay != 5*time.Second || cfg.BodyLimit != 2048 ||
		mongox.DatabaseName(cfg.DBURL, "noti") != "notifications" {
		t.Errorf("config: %+v", cfg)
	}
	t.Setenv("PORT", "eighty")
	if _, err := LoadConfig(); err == nil || !strings.Contains(strings.ToUpper(err.Error()), "PORT") {
		t.Errorf("bad PORT: %v", err)
	}
}

func TestProductionRequiresToken(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"production", "PRODUCTION"} {
		logs := &syncBuffer{}
		cfg := testConfig(t)
		cfg.AppEnv, cfg.APIToken = env, ""
		m := &Main{Config: cfg, Logger: logging.NewTo(logs, "debug", "notification"), SetupTelemetry: sharedTelemetry}
		start := time.Now()
		err := m.Run(t.Context())
		m.Close()
		if err == nil || !strings.Contains(err.Error(), "NOTIFICATION_API_TOKEN is required") {
			t.Fatalf("APP_ENV=%s without a token: Run = %v", env, err)
		}
		if m.Client != nil || m.Server != nil || time.Since(start) > time.Second {
			t.Error("refused only after connecting or listening")
		}
	}
	// With a token, production starts.
	s := startService(t, func(c *Config) { c.AppEnv = "production" })
	wantStatus(t, s.do(req{method: "GET", path: base}), 200)
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, url string }{
		{"uri timeout", "mongodb://svc:hunter2-db-pass@127.0.0.1:1/noti?serverSelectionTimeoutMS=500"},
		{"config timeout", "mongodb://svc:hunter2-db-pass@127.0.0.1:1/noti"},
	} {
		logs := &syncBuffer{}
		cfg := testConfig(t)
		cfg.DBURL, cfg.DBConnectTimeout = c.url, 700*time.Millisecond
		m := &Main{Config: cfg, Logger: logging.NewTo(logs, "debug", "notification"), SetupTelemetry: sharedTelemetry}
		start := time.Now()
		err := m.Run(t.Context())
		took := time.Since(start)
		if cerr := m.Close(); cerr != nil {
			t.Errorf("%s: Close after a failed Run: %v", c.name, cerr)
		}
		if err == nil {
			t.Fatalf("%s: Run succeeded against an unreachable database", c.name)
		}
		if took > 5*time.Second {
			t.Errorf("%s: took %v to give up", c.name, took)
		}
		msg := err.Error()
		if !strings.Contains(msg, "unreachable") || !strings.Contains(msg, "127.0.0.1:1") {
			t.Errorf("%s: unclear error %q", c.name, msg)
		}
		if strings.Contains(msg, "hunter2") || strings.Contains(logs.String(), "hunter2") {
			t.Errorf("%s: the database password leaked: %q / %s", c.name, msg, logs.String())
		}
	}
}

func TestCloseRightAfterRun(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	m := &Main{Config: cfg, Logger: logging.NewTo(&syncBuffer{}, "info", "notification"), SetupTelemetry: sharedTelemetry}
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

func TestBinaryDoesNotLinkDevDB(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := string(out)
	if !strings.Contains(deps, "github.com/cineflow/cineflow/services/notification/httpapi") {
		t.Fatalf("go list -deps looks wrong:\n%s", deps)
	}
	for _, banned := range []string{"github.com/FerretDB", "github.com/cineflow/cineflow/pkg/devdb", "modernc.org/sqlite"} {
		if strings.Contains(deps, banned) {
			t.Errorf("cmd/notification depends on %s", banned)
		}
	}
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// buildBinary builds cmd/notification once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "notification-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "notification")
		out, err := exec.Command(gobin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runBinary starts the binary with exactly env (in an empty directory: no .env file).
func runBinary(t *testing.T, env ...string) (*exec.Cmd, *syncBuffer) {
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

// jsonLines checks that every log line is a JSON object and returns them.
func jsonLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Run("graceful SIGTERM", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		token := "bin-token-secret-value"
		cmd, logs := runBinary(t, "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL="+testDBURL(t),
			"NOTIFICATION_API_TOKEN="+token, "APP_ENV=production", "LOG_LEVEL=debug")
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(url + "/readyz")
			if err == nil {
				resp.Body.Close()
				// Ready, and Run has returned (a SIGTERM before then is a failed start).
				if resp.StatusCode == 200 && strings.Contains(logs.String(), "notification service listening") {
					break
				}
			}
			if time.Now().After(deadline) || cmd.ProcessState != nil {
				t.Fatalf("binary not ready: %v\n%s", err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		r, _ := http.NewRequest("POST", url+base, strings.NewReader(`{"subject":"s","content":"c","recepientEmails":["a@example.com"]}`))
		r.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		checkEnvelope(t, "POST", resp)
		if resp.StatusCode != 201 {
			t.Fatalf("create: %d", resp.StatusCode)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, cmd, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM\n%s", code, logs.String())
		}
		out := logs.String()
		jsonLines(t, out)
		for _, want := range []string{"notification service listening", "shutting down", "notification service stopped"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs lack %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, token) {
			t.Errorf("logs contain the token:\n%s", out)
		}
	})
	t.Run("production without token", func(t *testing.T) {
		t.Parallel()
		cmd, logs := runBinary(t, "APP_ENV=production", "PORT="+strconv.Itoa(freePort(t)), "DB_URL="+testDBURL(t))
		if code := waitExit(t, cmd, 10*time.Second); code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		lines := jsonLines(t, logs.String())
		if len(lines) == 0 || !strings.Contains(logs.String(), "NOTIFICATION_API_TOKEN is required") ||
			lines[len(lines)-1]["level"] != "ERROR" {
			t.Errorf("unclear refusal:\n%s", logs.String())
		}
	})
	// Fail closed: without APP_ENV the binary is in production mode and refuses to start
	// without its token (naming it); APP_ENV=development starts without one.
	t.Run("APP_ENV unset without token", func(t *testing.T) {
		t.Parallel()
		cmd, logs := runBinary(t, "PORT="+strconv.Itoa(freePort(t)), "DB_URL="+testDBURL(t))
		if code := waitExit(t, cmd, 10*time.Second); code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		lines := jsonLines(t, logs.String())
		if len(lines) == 0 || !strings.Contains(logs.String(), "NOTIFICATION_API_TOKEN is required in production") ||
			lines[len(lines)-1]["level"] != "ERROR" {
			t.Errorf("unclear refusal:\n%s", logs.String())
		}
	})
	t.Run("development without token", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		cmd, logs := runBinary(t, "APP_ENV=development", "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "DB_URL="+testDBURL(t))
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(url + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(logs.String(), "notification service listening") {
					break
				}
			}
			if time.Now().After(deadline) || cmd.ProcessState != nil {
				t.Fatalf("binary not ready: %v\n%s", err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "NOTIFICATION_API_TOKEN is not set") {
			t.Errorf("no development warning:\n%s", logs.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, cmd, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM\n%s", code, logs.String())
		}
	})
	t.Run("unreachable database", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		cmd, logs := runBinary(t, "APP_ENV=development", "PORT="+strconv.Itoa(freePort(t)),
			"DB_URL=mongodb://svc:hunter2-db-pass@127.0.0.1:1/?serverSelectionTimeoutMS=500")
		if code := waitExit(t, cmd, 10*time.Second); code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v to give up", took)
		}
		out := logs.String()
		jsonLines(t, out)
		if !strings.Contains(out, "cannot start") || !strings.Contains(out, "unreachable") || strings.Contains(out, "hunter2") {
			t.Errorf("unclear or leaky error:\n%s", out)
		}
	})
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
		t.Error("services/notification/Dockerfile mentions APP_ENV: the image must run in production mode, the binary's default")
	}
}

// TestCommandLine: notification --version, --help and an unknown flag.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	configtest.CheckCommandLine(t, buildBinary(t), "notification", "PORT", "3001", "NOTIFICATION_API_TOKEN", "METRICS_PORT")
}
