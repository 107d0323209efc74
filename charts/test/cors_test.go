package charttest

import (
	"strings"
	"testing"
)

// TestChartCORS: core.config.corsAllowedOrigins becomes the core's CORS_ALLOWED_ORIGINS
// (comma-separated); by default the core has none; the schema refuses an origin with a path.
func TestChartCORS(t *testing.T) {
	t.Parallel()
	objs := ctRender(t, ctCase{files: []string{ctRequired}}.args(t)...)
	if v, ok := ctConfig(t, objs, ctFullname, "core")["CORS_ALLOWED_ORIGINS"]; ok {
		t.Errorf("default CORS_ALLOWED_ORIGINS %q, want none", v)
	}
	objs = ctRender(t, ctCase{files: []string{ctRequired}, sets: []string{
		"core.config.corsAllowedOrigins={https://tickets.example.com,http://localhost:5173}"}}.args(t)...)
	if got := ctConfig(t, objs, ctFullname, "core")["CORS_ALLOWED_ORIGINS"]; got != "https://tickets.example.com,http://localhost:5173" {
		t.Errorf("CORS_ALLOWED_ORIGINS %q", got)
	}
	args := ctCase{files: []string{ctRequired}, sets: []string{
		"core.config.corsAllowedOrigins={https://tickets.example.com/app}"}}.args(t)
	if _, errOut, err := helm(t, append([]string{"template", ctRelease, chartDir(t), "--namespace", ctNamespace}, args...)...); err == nil {
		t.Errorf("an origin with a path rendered: the schema should refuse it")
	} else if !strings.Contains(errOut, "corsAllowedOrigins") {
		t.Errorf("the refusal does not name corsAllowedOrigins: %s", errOut)
	}
}
