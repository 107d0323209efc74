package httpx_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
)

// TestErrorLogCarriesTheTrace: the line logged for a failed request carries the trace_id of
// the request's span (here continued from the caller's traceparent), so an operator goes from
// the log line to the trace.
func TestErrorLogCarriesTheTrace(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	logs := &bytes.Buffer{}
	s := httpx.NewServer(httpx.Options{Name: "test", Logger: logging.NewTo(logs, "info", "test"), BodyLimit: 1024})
	s.App.Get("/bug", func(c *fiber.Ctx) error { return context.DeadlineExceeded })
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background(), 0) })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/bug", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("status %d, want a 5xx", resp.StatusCode)
	}
	found := false
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["level"] != "ERROR" {
			continue
		}
		found = true
		if line["trace_id"] != traceID || line["span_id"] == nil || line["span_id"] == "" {
			t.Errorf("error line without the request's trace: %s", sc.Bytes())
		}
	}
	if !found {
		t.Fatalf("no error line logged: %s", logs.String())
	}
}
