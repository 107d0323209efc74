// Package telemetry sets up OpenTelemetry tracing. Spans are always created (so trace
// context flows between services and into stored tickets), and exported over OTLP/HTTP only
// when an OTLP endpoint is configured by the standard OTEL_* variables.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Exporting reports whether the OTEL_* variables ask for traces to be exported.
func Exporting() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the global tracer provider and W3C propagators. The returned function
// flushes and stops the exporter. extra span processors (tests) may be added.
func Setup(ctx context.Context, service, version string, extra ...sdktrace.SpanProcessor) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// Schemaless: a schema URL of ours that differs from the SDK's default resource's would make
	// Merge fail, and the spans would lose their service name.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if Exporting() {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	for _, p := range extra {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Transport wraps base (nil: the default transport) so that outgoing requests carry the
// W3C traceparent of their context and get client spans.
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base)
}

// Env lists the standard OpenTelemetry variables that matter here, for a binary's --help.
var Env = [][2]string{
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "(unset) OTLP/HTTP collector, e.g. http://otel-collector:4318; unset: no traces are exported"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "(unset) the same, for traces only"},
	{"OTEL_SDK_DISABLED", "(unset) true: export nothing"},
	{"OTEL_*", "every other standard OpenTelemetry SDK variable (headers, sampler, resource attributes)"},
}
