package otlptest_test

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cineflow/cineflow/pkg/devdb/otlptest"
)

// TestReceiverKeepsSpans: a protobuf export and an OTLP/JSON export are both read, with the
// ids in hex, the resource's service.name and the span kind; anything else is refused.
func TestReceiverKeepsSpans(t *testing.T) {
	t.Parallel()
	rc, url := otlptest.Start(t)
	id := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "notification"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: id("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: id("00f067aa0ba902b7"), ParentSpanId: id("00f067aa0ba902b6"),
			Name: "POST /x", Kind: tracepb.Span_SPAN_KIND_SERVER}}}},
	}}}
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	post := func(ct string, b []byte) int {
		resp, err := http.Post(url+"/v1/traces", ct, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("application/x-protobuf", body); st != 200 {
		t.Fatalf("protobuf export: %d", st)
	}
	if st := post("application/json", []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"core"}}]},`+
		`"scopeSpans":[{"spans":[{"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b6","name":"outbox.relay","kind":3}]}]}]}`)); st != 200 {
		t.Fatalf("JSON export: %d", st)
	}
	if st := post("application/json", []byte(`{`)); st != 400 {
		t.Fatalf("a broken export: %d, want 400", st)
	}
	spans, requests, errs := rc.Snapshot()
	if requests != 2 || len(errs) != 1 || len(spans) != 2 {
		t.Fatalf("%d requests, errors %v, spans %v", requests, errs, spans)
	}
	want := []otlptest.Span{
		{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", ParentID: "00f067aa0ba902b6",
			Name: "POST /x", Service: "notification", Kind: otlptest.KindServer},
		{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b6", Name: "outbox.relay", Service: "core",
			Kind: otlptest.KindClient},
	}
	for i := range want {
		if spans[i].String() != want[i].String() {
			t.Errorf("span %d:\n%s\nwant\n%s", i, spans[i], want[i])
		}
	}
}
