package main

import (
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsOnePrefix: every metric the notification service exports is named cineflow_…
// (the Go runtime's and the process's aside), and cineflow_build_info names it.
func TestMetricsOnePrefix(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	s.create(1) // some figures
	resp, err := s.client.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(raw)
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
	for _, want := range []string{"cineflow_notification_http_requests_total", "cineflow_notification_tickets_created_total"} {
		if !names[want] {
			t.Errorf("no %s in /metrics", want)
		}
	}
	if !regexp.MustCompile(`(?m)^cineflow_build_info\{goversion="go[^"]+",service="notification",version="[^"]+"\} 1$`).MatchString(body) {
		t.Errorf("no cineflow_build_info of the notification service")
	}
}
