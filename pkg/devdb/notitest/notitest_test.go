package notitest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb/notitest"
	"github.com/cineflow/cineflow/pkg/devdb/otlptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	notitest.Cleanup()
	os.Exit(code)
}

// TestServiceRunsTheRealBinary: the service refuses connections until Start, then creates a
// ticket for a caller with its token (and refuses one without), exports its server span to
// the OTLP receiver, and refuses connections again after Stop.
func TestServiceRunsTheRealBinary(t *testing.T) {
	t.Parallel()
	rc, otlpURL := otlptest.Start(t)
	s := notitest.New(t, notitest.Options{OTLPEndpoint: otlpURL})
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(token string) (*http.Response, error) {
		body, _ := json.Marshal(map[string]any{"subject": "Booking confirmed", "content": "Seats A1, A2",
			"recepientEmails": []string{"ann@example.com"}})
		req, _ := http.NewRequest(http.MethodPost, s.URL(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return client.Do(req)
	}
	if resp, err := post(s.Token()); err == nil {
		resp.Body.Close()
		t.Fatalf("before Start: %d, want a refused connection", resp.StatusCode)
	}
	s.Start()
	for token, want := range map[string]int{"": 401, "wrong": 401, s.Token(): 201} {
		resp, err := post(token)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST with token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	if s.Token() != notitest.DefaultToken {
		t.Errorf("token %q, want the default", s.Token())
	}
	deadline := time.Now().Add(10 * time.Second)
	for found := false; !found; time.Sleep(50 * time.Millisecond) {
		spans, _, _ := rc.Snapshot()
		for _, sp := range spans {
			if sp.TraceID == "4bf92f3577b34da6a3ce929d0e0e4736" && sp.Name == "POST "+notitest.BasePath && sp.Kind == otlptest.KindServer {
				found = true
			}
		}
		if !found && time.Now().After(deadline) {
			t.Fatalf("no server span of the POST within 10s: %v", spans)
		}
	}
	s.Stop()
	if resp, err := post(s.Token()); err == nil {
		resp.Body.Close()
		t.Fatalf("after Stop: %d, want a refused connection", resp.StatusCode)
	}
	if s.Output() == "" {
		t.Error("no output of the service")
	}
}
