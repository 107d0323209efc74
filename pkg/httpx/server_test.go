package httpx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
)

func newServer(t *testing.T, ready func(context.Context) error) (*httpx.Server, string, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	s := httpx.NewServer(httpx.Options{Name: "test", Logger: slog.New(slog.NewJSONHandler(logs, nil)), BodyLimit: 1024, Ready: ready})
	s.App.Get("/things/:id", func(c *fiber.Ctx) error {
		switch c.Params("id") {
		case "panic":
			panic("boom")
		case "missing":
			return errs.E(errs.NotFound, "thing %s not found", "missing")
		case "bug":
			return errors.New("secret internal detail")
		case "slow":
			return errs.E(errs.RateLimited, "slow down")
		}
		return httpx.OK(c, 200, fiber.Map{"id": c.Params("id")}, "found")
	})
	s.App.Post("/things", func(c *fiber.Ctx) error {
		var body struct {
			Name string `json:"name"`
			N    int    `json:"n"`
		}
		if err := httpx.DecodeJSON(c, &body); err != nil {
			return err
		}
		return httpx.OK(c, 201, body, "created")
	})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background(), 0) })
	return s, "http://" + s.Addr(), logs
}

func call(t *testing.T, method, url, body string) (int, httpx.Envelope, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env httpx.Envelope
	if err := json.Unmarshal(raw, &env); err != nil && !strings.HasPrefix(url[strings.LastIndex(url, "/"):], "/metrics") {
		t.Fatalf("%s %s: body is not an envelope: %s", method, url, raw)
	}
	return resp.StatusCode, env, resp.Header
}

func TestEnvelopeAndErrorTable(t *testing.T) {
	t.Parallel()
	_, base, logs := newServer(t, nil)
	cases := []struct {
		method, path, body string
		status             int
		success            bool
	}{
		{"GET", "/things/1", "", 200, true},
		{"GET", "/things/missing", "", 404, false},
		{"GET", "/things/panic", "", 500, false},
		{"GET", "/things/bug", "", 500, false},
		{"GET", "/things/slow", "", 429, false},
		{"GET", "/nowhere", "", 404, false},
		{"PUT", "/things/1", "", 405, false},
		{"POST", "/things", `{"name":"x","n":1}`, 201, true},
		{"POST", "/things", `{"name":`, 400, false},
		{"POST", "/things", `{"name":5}`, 400, false},
		{"POST", "/things", `[1,2]`, 400, false},
		{"POST", "/things", `{"name":"a"} {"name":"b"}`, 400, false},
		{"POST", "/things", ``, 400, false},
		{"POST", "/things", `{"name":"` + strings.Repeat("x", 2000) + `"}`, 413, false},
	}
	for _, c := range cases {
		status, env, _ := call(t, c.method, base+c.path, c.body)
		if status != c.status || env.Success != c.success || env.Message == "" || env.Error == nil || env.Data == nil {
			t.Errorf("%s %s %.20q: %d %+v, want %d success=%v", c.method, c.path, c.body, status, env, c.status, c.success)
		}
	}
	_, env, _ := call(t, "POST", base+"/things", `{"name":5}`)
	if m, ok := env.Error.(map[string]any); !ok || m["name"] != "must be a string" {
		t.Errorf("field error: %#v", env.Error)
	}
	if strings.Contains(func() string { _, e, _ := call(t, "GET", base+"/things/bug", ""); return e.Message + e.Error.(string) }(), "secret") {
		t.Error("an internal error detail reached the client")
	}
	if !strings.Contains(logs.String(), "secret internal detail") || !strings.Contains(logs.String(), "panic") {
		t.Error("unexpected errors and panics must be logged")
	}
	_, _, h := call(t, "GET", base+"/things/slow", "")
	if h.Get("X-Request-Id") == "" {
		t.Error("no request id")
	}
}

func TestMetricsUseRouteTemplates(t *testing.T) {
	t.Parallel()
	_, base, _ := newServer(t, nil)
	for _, p := range []string{"/things/1", "/things/2", "/things/missing", "/random/path/1", "/random/path/2"} {
		call(t, "GET", base+p, "")
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(raw)
	for _, want := range []string{
		`test_http_requests_total{code="200",method="GET",route="/things/:id"} 2`,
		`test_http_requests_total{code="404",method="GET",route="/things/:id"} 1`,
		`test_http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`test_http_request_duration_seconds_bucket`, `go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s in\n%s", want, grepLines(m, "test_http_requests_total"))
		}
	}
	if strings.Contains(m, "/random/path") {
		t.Error("raw paths leaked into metric labels")
	}
}

func TestReadinessFollowsTheDatabaseAndShutdown(t *testing.T) {
	t.Parallel()
	var down bool
	s, base, _ := newServer(t, func(context.Context) error {
		if down {
			return errors.New("no database")
		}
		return nil
	})
	if st, _, _ := call(t, "GET", base+"/readyz", ""); st != 200 {
		t.Fatalf("readyz %d", st)
	}
	down = true
	if st, _, _ := call(t, "GET", base+"/readyz", ""); st != 503 {
		t.Fatalf("readyz with the database down: %d", st)
	}
	if st, _, _ := call(t, "GET", base+"/healthz", ""); st != 200 {
		t.Fatalf("healthz %d", st)
	}
	down = false
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background(), 300*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond)
	if st, _, _ := call(t, "GET", base+"/readyz", ""); st != 503 {
		t.Fatalf("readyz while draining: %d", st)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRequireBearer(t *testing.T) {
	t.Parallel()
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		return c.SendStatus(errs.Status(errs.CodeOf(err)))
	}})
	app.Get("/", httpx.RequireBearer("s3cret"), func(c *fiber.Ctx) error { return c.SendStatus(204) })
	for header, want := range map[string]int{"": 401, "Bearer nope": 401, "Basic s3cret": 401, "Bearer s3cret": 204, "bearer s3cret": 204} {
		req, _ := http.NewRequest("GET", "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := app.Test(req)
		if err != nil || resp.StatusCode != want {
			t.Errorf("%q: %v %v, want %d", header, resp.StatusCode, err, want)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// get returns the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsOnTheirOwnPort: with MetricsAddr, /metrics answers there and not on the API's
// port (which an Ingress or a public Service reaches); without it, on the API's port.
func TestMetricsOnTheirOwnPort(t *testing.T) {
	s := httpx.NewServer(httpx.Options{Name: "test", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		MetricsAddr: "127.0.0.1:0"})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	if s.MetricsAddr() == s.Addr() {
		t.Fatalf("metrics share the API's address %s", s.Addr())
	}
	if code, _ := get(t, "http://"+s.Addr()+"/healthz"); code != 200 {
		t.Fatalf("/healthz on the API port: %d", code)
	}
	if code, _ := get(t, "http://"+s.Addr()+"/metrics"); code != 404 {
		t.Fatalf("/metrics on the API port answered %d, want 404", code)
	}
	code, body := get(t, "http://"+s.MetricsAddr()+"/metrics")
	if code != 200 || !strings.Contains(body, "test_http_internal_errors_total") {
		t.Fatalf("/metrics on the metrics port: %d\n%.300s", code, body)
	}
	if code, _ := get(t, "http://"+s.MetricsAddr()+"/healthz"); code != 404 {
		t.Fatalf("the metrics port serves more than /metrics: /healthz answered %d", code)
	}
	if err := s.Shutdown(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.MetricsAddr() + "/metrics"); err == nil {
		t.Fatal("the metrics listener still answers after Shutdown")
	}

	_, url, _ := newServer(t, nil)
	if code, body := get(t, url+"/metrics"); code != 200 || !strings.Contains(body, "test_http_internal_errors_total") {
		t.Fatalf("/metrics on the API port without MetricsAddr: %d", code)
	}
}

func TestSettingsMetricsPort(t *testing.T) {
	s := httpx.Settings{BodyLimit: 1, MetricsPort: 9090}
	if err := s.Validate(3000); err != nil {
		t.Fatal(err)
	}
	if got := s.Options().MetricsAddr; got != ":9090" {
		t.Fatalf("MetricsAddr %q", got)
	}
	if err := s.Validate(9090); err == nil {
		t.Fatal("METRICS_PORT equal to PORT accepted")
	}
	if err := (httpx.Settings{BodyLimit: 1, MetricsPort: 70000}).Validate(3000); err == nil {
		t.Fatal("METRICS_PORT 70000 accepted")
	}
	if got := (httpx.Settings{BodyLimit: 1}).Options().MetricsAddr; got != "" {
		t.Fatalf("default MetricsAddr %q, want the API's port", got)
	}
}
