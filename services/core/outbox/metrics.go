package outbox

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/services/core"
)

// Metrics exports a relay's results (counted as they happen), whether its breaker
// has paused it, and the backlog (read from the store at scrape time, one read per ttl at
// most, at a cost that does not grow with the backlog).
type Metrics struct {
	store   OutboxStore
	relay   *Relay
	ttl     time.Duration
	relayed *prometheus.CounterVec
	open    *prometheus.Desc
	pending *prometheus.Desc
	oldest  *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	cached core.OutboxBacklog
	err    error
}

// NewMetrics returns the figures of the relay given it in RelayOptions.Metrics, with the
// backlog read from store at most once per ttl. Register it (a prometheus.Collector).
func NewMetrics(store OutboxStore, ttl time.Duration) *Metrics {
	return &Metrics{store: store, ttl: ttl,
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cineflow_core_outbox_relayed_total",
			Help: "Attempts to relay an outbox email to the notification service, by kind and result (sent, dropped, retry, failed).",
		}, []string{"kind", "result"}),
		open: prometheus.NewDesc("cineflow_core_outbox_relay_open",
			"1 while this replica's outbox relay is paused by its circuit breaker (the notification service keeps failing: "+
				"one email is tried per probe interval), else 0.", nil, nil),
		pending: prometheus.NewDesc("cineflow_core_outbox_pending",
			"Emails in the outbox not yet accepted by the notification service (kept as emails come and go: an estimate, "+
				"settled to 0 when the outbox is seen empty).", nil, nil),
		oldest: prometheus.NewDesc("cineflow_core_outbox_oldest_pending_age_seconds",
			"Age of the oldest email in the outbox (0 when empty).", nil, nil),
	}
}

// observe counts one attempt (the relay's OnResult).
func (o *Metrics) observe(kind string, r RelayResult) {
	o.relayed.WithLabelValues(kind, string(r)).Inc()
}

// Describe implements prometheus.Collector.
func (o *Metrics) Describe(ch chan<- *prometheus.Desc) {
	o.relayed.Describe(ch)
	ch <- o.open
	ch <- o.pending
	ch <- o.oldest
}

// Collect implements prometheus.Collector. When the store cannot answer, the backlog gauges
// are left out (a gap in the graph rather than a false zero).
func (o *Metrics) Collect(ch chan<- prometheus.Metric) {
	o.relayed.Collect(ch)
	if o.relay != nil {
		open := 0.0
		if o.relay.BreakerOpen() {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(o.open, prometheus.GaugeValue, open)
	}
	b, err := o.backlog()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(o.pending, prometheus.GaugeValue, float64(b.Pending))
	age := 0.0
	if !b.Oldest.IsZero() {
		age = max(time.Since(b.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(o.oldest, prometheus.GaugeValue, age)
}

func (o *Metrics) backlog() (core.OutboxBacklog, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.at.IsZero() && time.Since(o.at) < o.ttl {
		return o.cached, o.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	o.cached, o.err = o.store.Backlog(ctx)
	o.at = time.Now()
	return o.cached, o.err
}
