// Package pushmetrics pushes a sweep's figures to a Prometheus Pushgateway. A sweep lives
// for seconds, so it cannot be scraped: it pushes gauges with push-add under the grouping key
// job="sweeper", namespace and release (no instance label, so runs on different pods replace
// each other, while releases and namespaces sharing a Pushgateway keep their own figures; the
// Pushgateway must be scraped with honor_labels so that these labels survive). It pushes
// cineflow_sweeper_last_success_timestamp_seconds only after a successful sweep, so that an alert on
// its age fires when sweeps keep failing, and cineflow_sweeper_provider_failing only after a sweep that
// called the mail provider, so that it holds across sweeps that had nothing to send.
package pushmetrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/pkg/telemetry"
)

// Job is the Pushgateway job label of every push.
const Job = "sweeper"

// Group is the rest of the grouping key: where the sweeper runs. Empty values are left out
// of the key (a sweeper run outside Kubernetes, e.g. by make run).
type Group struct {
	Namespace string // the Kubernetes namespace (POD_NAMESPACE)
	Release   string // the Helm release (CINEFLOW_RELEASE)
	// Version is the sweeper's version: not part of the key, the version label of the
	// cineflow_build_info pushed with each run.
	Version string
}

func gauge(name, help string, v float64) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	g.Set(v)
	return g
}

// Collectors returns the gauges of one run.
func Collectors(rep sweeper.Report, success bool, now time.Time) []prometheus.Collector {
	avg := 0.0
	if rep.Requests > 0 {
		avg = rep.LatencySum.Seconds() / float64(rep.Requests)
	}
	byClass := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cineflow_sweeper_last_run_provider_errors_by_class",
		Help: "Failed mail provider requests in the last sweep, by class: 429, 4xx (other refusals), 5xx, timeout, network (no answer)."},
		[]string{"class"})
	for _, c := range sweeper.ErrorClasses {
		byClass.WithLabelValues(string(c)).Set(float64(rep.ProviderErrorsByClass[c]))
	}
	cs := []prometheus.Collector{
		gauge("cineflow_sweeper_last_run_duration_seconds", "Duration of the last sweep.", rep.Duration.Seconds()),
		gauge("cineflow_sweeper_last_run_sent", "Tickets delivered by the last sweep.", float64(rep.Sent)),
		gauge("cineflow_sweeper_last_run_failed", "Tickets that ended FAILED in the last sweep.", float64(rep.Failed)),
		gauge("cineflow_sweeper_last_run_delivery_unknown", "Tickets FAILED in the last sweep because their batch could no longer be re-sent under its idempotency key (delivery unknown).", float64(rep.Unknown)),
		gauge("cineflow_sweeper_last_run_retried", "Tickets left for a later retry by the last sweep.", float64(rep.Retried)),
		gauge("cineflow_sweeper_last_run_backlog", "Tickets waiting for delivery when the last sweep started.", float64(rep.Backlog)),
		gauge("cineflow_sweeper_last_run_batches", "Batches sent by the last sweep.", float64(rep.Batches)),
		gauge("cineflow_sweeper_last_run_released", "Batches the last sweep gave back unsent when it stopped.", float64(rep.Released)),
		gauge("cineflow_sweeper_last_run_provider_requests", "Requests to the mail provider in the last sweep.", float64(rep.Requests)),
		gauge("cineflow_sweeper_last_run_provider_rate_limited", "429 answers from the mail provider in the last sweep.", float64(rep.RateLimited)),
		gauge("cineflow_sweeper_last_run_provider_errors", "Failed mail provider requests in the last sweep.", float64(rep.ProviderErrors)),
		byClass,
		gauge("cineflow_sweeper_last_run_provider_latency_avg_seconds", "Mean mail provider latency in the last sweep.", avg),
		gauge("cineflow_sweeper_last_run_provider_latency_max_seconds", "Slowest mail provider request in the last sweep.", rep.LatencyMax.Seconds()),
		gauge("cineflow_sweeper_last_run_store_errors", "Database errors in the last sweep.", float64(rep.StoreErrors)),
		gauge("cineflow_sweeper_last_run_timestamp_seconds", "When the last sweep ended.", float64(now.Unix())),
	}
	if rep.Requests > 0 {
		failing := 0.0
		if rep.ProviderFailing() {
			failing = 1
		}
		cs = append(cs, gauge("cineflow_sweeper_provider_failing",
			"1 when the last sweep that called the mail provider delivered nothing while its requests failed (429, 5xx, timeouts, network errors, a refused API key), else 0. Sweeps that make no provider request leave it as it is.",
			failing))
	}
	if success {
		cs = append(cs, gauge("cineflow_sweeper_last_success_timestamp_seconds", "When the last successful sweep ended.", float64(now.Unix())))
	}
	return cs
}

// Push adds the run's gauges to the Pushgateway at url, under job="sweeper" and group.
func Push(ctx context.Context, url string, group Group, rep sweeper.Report, success bool, client *http.Client) error {
	p := push.New(url, Job).Client(client)
	if group.Namespace != "" {
		p = p.Grouping("namespace", group.Namespace)
	}
	if group.Release != "" {
		p = p.Grouping("release", group.Release)
	}
	for _, c := range Collectors(rep, success, time.Now()) {
		p = p.Collector(c)
	}
	p = p.Collector(telemetry.BuildInfo("sweeper", group.Version))
	return p.AddContext(ctx)
}
