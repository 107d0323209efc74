package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestMetricsOnePrefix: every metric the core exports is named cineflow_… (the Go runtime's
// and the process's aside), and cineflow_build_info says which service and version runs.
func TestMetricsOnePrefix(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.expect(s.signUp("M", "metrics@example.com", "password-1", ""), 201) // some figures
	resp, raw := s.rawGet("/metrics", nil)
	body := string(raw)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			names[strings.Fields(line)[2]] = true
		}
	}
	for n := range names {
		if !strings.HasPrefix(n, "cineflow_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") &&
			!strings.HasPrefix(n, "promhttp_") {
			t.Errorf("metric %s lacks the cineflow_ prefix", n)
		}
	}
	for _, want := range []string{"cineflow_core_http_requests_total", "cineflow_core_bookings_total", "cineflow_core_outbox_pending"} {
		if !names[want] {
			t.Errorf("no %s in /metrics", want)
		}
	}
	if !regexp.MustCompile(`(?m)^cineflow_build_info\{goversion="go[^"]+",service="core",version="[^"]+"\} 1$`).MatchString(body) {
		t.Errorf("no cineflow_build_info of the core:\n%s", grepLines(body, "build_info"))
	}
}
