// Package notitest runs the real notification service for the tests of other modules (the
// core's outbox relay): its binary, built from this repository's sources once per test
// process, as a process of its own on 127.0.0.1, over a database of the test's own on the
// test database server (devdb.TestURI). The tests talk to it over real HTTP, as the core
// does in production, and their module needs no dependency on the service's.
//
// The binary lives in a temporary directory until Cleanup, which the test binary's TestMain
// calls after the tests.
package notitest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
)

// BasePath is the prefix of the service's ticket routes (CONTRACT.md).
const BasePath = "/notiservice/api/v1/notifications"

// DefaultToken is the API token the service requires unless Options say otherwise.
const DefaultToken = "noti-test-token-0123456789"

// startTimeout bounds a start: the process up and its /readyz answering 200.
const startTimeout = time.Minute

// Options configure a Service; zero values are the defaults.
type Options struct {
	// Token is the bearer token the service requires (DefaultToken).
	Token string
	// OTLPEndpoint, when set, is the OTLP/HTTP collector the service exports its spans to,
	// every 100 ms (see otlptest). Unset: it exports none.
	OTLPEndpoint string
}

// Service is the notification service of one test: prepared on a free port by New, running
// between Start and Stop (the test's cleanup stops it).
type Service struct {
	t     testing.TB
	port  int
	dbURL string
	opts  Options
	dir   string // its working directory: empty, so no .env is read

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    lockedBuffer
}

// New prepares the service on a free port without starting it: until Start, connections to
// its URL are refused (the service is down). Its database is one of this test's own.
func New(tb testing.TB, opts Options) *Service {
	tb.Helper()
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	dbURL, err := url.Parse(devdb.TestURI(tb))
	if err != nil {
		tb.Fatalf("test database URI: %v", err)
	}
	dbURL.Path = "/" + devdb.TestDatabase(tb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // free until Start
	s := &Service{t: tb, port: port, dbURL: dbURL.String(), opts: opts, dir: tb.TempDir()}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("notification service output:\n%s", s.Output())
		}
	})
	return s
}

// URL is the base of the ticket routes: http://127.0.0.1:<port>/notiservice/api/v1/notifications.
func (s *Service) URL() string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, BasePath) }

// Token is the bearer token the service requires.
func (s *Service) Token() string { return s.opts.Token }

// Output is what the service wrote to stdout and stderr (its JSON log lines).
func (s *Service) Output() string { return s.out.String() }

// Start starts the service on its port and returns once it is ready (its /readyz answers 200).
func (s *Service) Start() {
	s.t.Helper()
	bin, err := binary()
	if err != nil {
		s.t.Fatalf("notification service: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("notification service: started twice")
	}
	env := map[string]string{"DB_URL": s.dbURL, "PORT": strconv.Itoa(s.port), "HOST": "127.0.0.1",
		"NOTIFICATION_API_TOKEN": s.opts.Token, "APP_ENV": "development"}
	if s.opts.OTLPEndpoint != "" {
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = s.opts.OTLPEndpoint
		env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
	}
	cmd := exec.Command(bin)
	cmd.Dir, cmd.Env = s.dir, childEnv(env)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("notification service: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(s.exited)

	ready := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) + "/readyz"
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(startTimeout); ; {
		if resp, err := client.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("notification service exited at its start (%v):\n%s", cmd.ProcessState, s.Output())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("notification service: %s did not answer 200 within %v:\n%s", ready, startTimeout, s.Output())
		}
	}
}

// Stop stops the service (SIGTERM: it drains and exits; killed after 20 s). Stopping a service
// that is not running does nothing.
func (s *Service) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = terminate(s.cmd.Process)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// childEnv is the little of the test process's environment a process needs (not its
// configuration: nothing else of the test's environment may point the service elsewhere),
// plus set.
func childEnv(set map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// binary builds the service's binary once per test process and returns its path.
func binary() (string, error) {
	build.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			build.err = err
			return
		}
		if build.dir, err = os.MkdirTemp("", "cineflow-notitest-"); err != nil {
			build.err = err
			return
		}
		bin := filepath.Join(build.dir, "notification")
		if runtime.GOOS == "windows" {
			bin += ".exe"
		}
		// Built as `make build` builds it: in the repository's workspace, whatever GOWORK the
		// tests run with.
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/notification")
		cmd.Dir = filepath.Join(root, "services", "notification")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if work := filepath.Join(root, "go.work"); fileExists(work) {
			cmd.Env = append(cmd.Env, "GOWORK="+work)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/notification in %s: %v\n%s", cmd.Dir, err, out)
			return
		}
		build.bin = bin
	})
	return build.bin, build.err
}

// Cleanup removes the binary this test process built (if any). Call it from TestMain, after
// m.Run: without it, the binary stays in the temporary directory.
func Cleanup() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// repoRoot is the repository around the working directory (a test runs in its package's
// directory): the first directory upwards that holds the notification service's module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "services", "notification", "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no services/notification/go.mod above the working directory: run the test inside the repository")
		}
		dir = parent
	}
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// lockedBuffer collects the output of a process's two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
