package booking

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts booking outcomes and seat conflicts (BookingEvents).
type Metrics struct {
	bookings   *prometheus.CounterVec
	conflicts  prometheus.Counter
	expiries   prometheus.Counter
	logDropped prometheus.Counter
}

// NewMetrics registers the booking metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bookings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cineflow_core_bookings_total",
			Help: "Booking events by outcome: created, conflict, paid, payment_failed, cancelled, expired."}, []string{"outcome"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "cineflow_core_seat_conflicts_total",
			Help: "Seats lost to another booking while holding (each is retried on another seat when possible)."}),
		expiries: prometheus.NewCounter(prometheus.CounterOpts{Name: "cineflow_core_hold_expiries_total",
			Help: "Unpaid bookings decided EXPIRED, their seats returned to sale."}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "cineflow_core_seat_log_dropped_total",
			Help: "Seat log operations that could not be written (other replicas then learn those seats from the unique seat keys)."}),
	}
	for _, o := range []string{"created", "conflict", "paid", "payment_failed", "cancelled", "expired"} {
		m.bookings.WithLabelValues(o)
	}
	reg.MustRegister(m.bookings, m.conflicts, m.expiries, m.logDropped)
	return m
}

// Booking counts one booking event.
func (m *Metrics) Booking(outcome string) {
	m.bookings.WithLabelValues(outcome).Inc()
	if outcome == "expired" {
		m.expiries.Inc()
	}
}

// SeatConflicts counts seats lost to another booking.
func (m *Metrics) SeatConflicts(n int) { m.conflicts.Add(float64(n)) }

// SeatLogDropped counts seat log operations that could not be written.
func (m *Metrics) SeatLogDropped(n int) { m.logDropped.Add(float64(n)) }
