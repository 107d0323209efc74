// Package otlptest is an OTLP/HTTP trace receiver for tests: the binaries a test starts export
// their spans to it (OTEL_EXPORTER_OTLP_ENDPOINT=its URL, OTEL_BSP_SCHEDULE_DELAY=100 to have
// them within a tenth of a second), and the test reads every span back with Snapshot.
package otlptest

import (
	"cmp"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span kinds (OTLP's SpanKind).
const (
	KindServer = 2
	KindClient = 3
)

// Start serves a Receiver on 127.0.0.1 until the test ends and returns it with its URL (the
// OTEL_EXPORTER_OTLP_ENDPOINT of the binaries to trace).
func Start(tb testing.TB) (*Receiver, string) {
	tb.Helper()
	rc := &Receiver{}
	srv := httptest.NewServer(rc)
	tb.Cleanup(srv.Close)
	return rc, srv.URL
}

// Link is a link of a span to another one.
type Link struct{ TraceID, SpanID string }

// Span is what a test checks of a received span: ids in lower-case hex (ParentID "" for a
// root), the service.name of its resource, and its kind.
type Span struct {
	TraceID, SpanID, ParentID string
	Name, Service             string
	Kind                      int32
	Links                     []Link
}

func (s Span) String() string {
	var links []string
	for _, l := range s.Links {
		links = append(links, l.TraceID+"/"+l.SpanID)
	}
	return fmt.Sprintf("%-12s %-45q kind=%d trace=%s span=%s parent=%s links=%v",
		s.Service, s.Name, s.Kind, s.TraceID, s.SpanID, cmp.Or(s.ParentID, "-"), links)
}

// Receiver is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf or JSON) that keeps
// every span it is sent. The zero value is ready to serve.
type Receiver struct {
	mu       sync.Mutex
	spans    []Span
	requests int
	errs     []string
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		rc.fail("unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			rc.fail("gzip: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		rc.fail("read: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var spans []Span
	if ct == "application/json" {
		spans, err = decodeJSON(data)
	} else {
		spans, err = decodeProto(data)
	}
	if err != nil {
		rc.fail("decode %s: %v", ct, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.spans = append(rc.spans, spans...)
	rc.requests++
	rc.mu.Unlock()
	if ct == "application/json" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *Receiver) fail(format string, args ...any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.errs = append(rc.errs, fmt.Sprintf(format, args...))
}

// Snapshot returns the spans received so far, how many export requests brought them, and
// what went wrong with requests it could not read.
func (rc *Receiver) Snapshot() (spans []Span, requests int, errs []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.spans), rc.requests, slices.Clone(rc.errs)
}

func decodeProto(data []byte) ([]Span, error) {
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = anyString(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := Span{TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
					ParentID: hex.EncodeToString(sp.GetParentSpanId()), Name: sp.GetName(), Service: svc, Kind: int32(sp.GetKind())}
				for _, l := range sp.GetLinks() {
					s.Links = append(s.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func anyString(v *commonpb.AnyValue) string {
	if v == nil {
		return ""
	}
	return v.GetStringValue()
}

// decodeJSON reads OTLP/JSON, whose ids are hex strings (not protobuf JSON's base64).
func decodeJSON(data []byte) ([]Span, error) {
	type kv struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	}
	type link struct {
		TraceID string `json:"traceId"`
		SpanID  string `json:"spanId"`
	}
	var req struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []kv `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []struct {
					TraceID      string          `json:"traceId"`
					SpanID       string          `json:"spanId"`
					ParentSpanID string          `json:"parentSpanId"`
					Name         string          `json:"name"`
					Kind         json.RawMessage `json:"kind"`
					Links        []link          `json:"links"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	var out []Span
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				svc = a.Value.StringValue
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s := Span{TraceID: strings.ToLower(sp.TraceID), SpanID: strings.ToLower(sp.SpanID),
					ParentID: strings.ToLower(sp.ParentSpanID), Name: sp.Name, Service: svc}
				if k, err := strconv.Atoi(string(sp.Kind)); err == nil {
					s.Kind = int32(k)
				} else if k, ok := map[string]int32{`"SPAN_KIND_SERVER"`: 2, `"SPAN_KIND_CLIENT"`: 3}[string(sp.Kind)]; ok {
					s.Kind = k
				}
				for _, l := range sp.Links {
					s.Links = append(s.Links, Link{TraceID: strings.ToLower(l.TraceID), SpanID: strings.ToLower(l.SpanID)})
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}
