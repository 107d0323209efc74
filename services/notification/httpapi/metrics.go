package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/services/notification"
)

// statsTimeout bounds the database query behind one scrape.
const statsTimeout = 3 * time.Second

var allStatuses = []notification.Status{notification.StatusPending, notification.StatusSuccess, notification.StatusFailed}

// StatsCollector exports the ticket backlog, read from the store at scrape time. One
// store.Stats result answers every scrape for ttl (and concurrent scrapes share one query),
// so scrapes cannot hammer the database.
type StatsCollector struct {
	store notification.TicketStore
	ttl   time.Duration
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	fetched time.Time // when stats was read (zero: never)
	tried   time.Time // when a read was last attempted
	stats   notification.Stats
	ok      bool // stats holds a successful read

	tickets   *prometheus.Desc
	delivered *prometheus.Desc
	oldest    *prometheus.Desc
	up        *prometheus.Desc
}

// NewStatsCollector returns the backlog collector; register it on the server's registry.
func NewStatsCollector(store notification.TicketStore, ttl time.Duration, log *slog.Logger) *StatsCollector {
	if log == nil {
		log = slog.Default()
	}
	return &StatsCollector{
		store: store, ttl: ttl, log: log, now: time.Now,
		tickets: prometheus.NewDesc("cineflow_notification_tickets",
			"Tickets in the database by delivery status.", []string{"status"}, nil),
		delivered: prometheus.NewDesc("cineflow_notification_tickets_delivered_total",
			"Tickets delivered (status SUCCESS) since the database began.", nil, nil),
		oldest: prometheus.NewDesc("cineflow_notification_oldest_pending_age_seconds",
			"Age of the oldest PENDING ticket (0 when none is pending).", nil, nil),
		up: prometheus.NewDesc("cineflow_notification_ticket_stats_up",
			"1 if the last read of the ticket figures from the database succeeded, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (s *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.tickets
	ch <- s.delivered
	ch <- s.oldest
	ch <- s.up
}

// Collect implements prometheus.Collector.
func (s *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok, fresh := s.read()
	up := 0.0
	if fresh {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(s.up, prometheus.GaugeValue, up)
	if !ok {
		return // never read: no figures rather than made-up zeros
	}
	for _, status := range allStatuses {
		ch <- prometheus.MustNewConstMetric(s.tickets, prometheus.GaugeValue, float64(st.ByStatus[status]), string(status))
	}
	ch <- prometheus.MustNewConstMetric(s.delivered, prometheus.CounterValue, float64(st.ByStatus[notification.StatusSuccess]))
	age := 0.0
	if st.OldestPending != nil {
		age = max(0, s.now().Sub(*st.OldestPending).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(s.oldest, prometheus.GaugeValue, age)
}

// read returns the cached stats, refreshing them when older than ttl. ok says whether any
// read ever succeeded; fresh whether the latest attempt did. A failed read is not retried
// before ttl either, so a database outage does not multiply queries.
func (s *StatsCollector) read() (st notification.Stats, ok, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.tried.IsZero() || now.Sub(s.tried) >= s.ttl {
		s.tried = now
		ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
		got, err := s.store.Stats(ctx)
		cancel()
		if err != nil {
			s.log.Warn("could not read ticket figures for /metrics", "error", err.Error())
		} else {
			s.stats, s.ok, s.fetched = got, true, now
		}
	}
	return s.stats, s.ok, s.ok && s.fetched.Equal(s.tried)
}
