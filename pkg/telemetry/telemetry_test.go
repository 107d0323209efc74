package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSetupNamesTheService: every span carries the service's name and version (a resource
// merge that failed once left them as unknown_service).
func TestSetupNamesTheService(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	stop, err := Setup(context.Background(), "core", "1.2.3", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	_, span := otel.Tracer("test").Start(context.Background(), "work")
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	attrs := map[string]string{}
	for _, kv := range ended[0].Resource().Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["service.name"] != "core" || attrs["service.version"] != "1.2.3" {
		t.Fatalf("resource %v", attrs)
	}
}
