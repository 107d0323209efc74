package telemetry

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is the cineflow_build_info gauge of a binary: 1, labelled with the service, its
// version and the Go version it was built with (join on it to see which version runs where).
func BuildInfo(service, version string) prometheus.Collector {
	if version == "" {
		version = "dev"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cineflow_build_info",
		Help:        "1, labelled with the binary's service, version and Go version.",
		ConstLabels: prometheus.Labels{"service": service, "version": version, "goversion": runtime.Version()}})
	g.Set(1)
	return g
}
