package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestSecretsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := NewTo(&buf, "debug", "test")
	log.Info("hello", "password", "hunter2", "apiKey", "re_123", "Authorization", "Bearer abc", "email", "a@b.co")
	out := buf.String()
	for _, secret := range []string{"hunter2", "re_123", "Bearer abc"} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q in log: %s", secret, out)
		}
	}
	if !strings.Contains(out, "a@b.co") || !strings.Contains(out, `"service":"test"`) {
		t.Fatalf("log lost ordinary fields: %s", out)
	}
}

// TestTraceIDs: a line logged within a span carries its trace and span ids; one without a
// span carries none.
func TestTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := NewTo(&buf, "info", "test").With("route", "/x")
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	log.Info("plain")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines: %q", lines)
	}
	var in, out, plain map[string]any
	for i, dst := range []*map[string]any{&in, &out, &plain} {
		if err := json.Unmarshal([]byte(lines[i]), dst); err != nil {
			t.Fatal(err)
		}
	}
	sc := span.SpanContext()
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["route"] != "/x" {
		t.Fatalf("inside the span: %v; want trace_id %s, span_id %s", in, sc.TraceID(), sc.SpanID())
	}
	for _, m := range []map[string]any{out, plain} {
		if _, ok := m["trace_id"]; ok {
			t.Fatalf("a line without a span has a trace_id: %v", m)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "debug": true, "INFO": true, " warn ": true, "error": true,
		"verbose": false, "warning": false, "trace": false, "0": false} {
		_, err := ParseLevel(in)
		if (err == nil) != ok {
			t.Errorf("ParseLevel(%q): %v", in, err)
		}
		if err != nil && !strings.Contains(err.Error(), "debug, info, warn, error") {
			t.Errorf("ParseLevel(%q): %v does not name the allowed values", in, err)
		}
	}
}
