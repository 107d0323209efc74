package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/pkg/lease"
	"github.com/cineflow/cineflow/pkg/mongox"
)

// The jobs that need doing once among the replicas: each is led by one replica at a time (see
// pkg/lease), the others skip it.
const (
	JobExpiry             = "core-expiry"              // the hold expirer's release and clear
	JobIdempotencyCleanup = "core-idempotency-cleanup" // removing old Idempotency-Key records (no TTL index)
	JobEmailBackfill      = "core-email-backfill"      // indexing the emails of earlier versions' users
	JobOutboxRelay        = "core-outbox-relay"        // relaying the outbox to the notification service
	JobListsBackfill      = "core-lists-backfill"      // indexing earlier versions' bookings and payments for their lists
)

// ReplicaConfig is the environment of what the replicas share: the clock hold ends and leases
// are reckoned by, and the leases. Zero values take the defaults.
type ReplicaConfig struct {
	// ClockSyncInterval is how often the offset of this process's clock to the database's is
	// measured (hold ends and leases follow the database's clock, so that replicas whose clocks
	// differ agree on them); negative: never (the local clock is trusted as it is).
	ClockSyncInterval time.Duration `env:"CLOCK_SYNC_INTERVAL" envDefault:"30s"`
	// ClockOffsetWarn: an offset beyond it is logged as a warning (when it goes beyond, and
	// again when it comes back).
	ClockOffsetWarn time.Duration `env:"CLOCK_OFFSET_WARN" envDefault:"1s"`
	// LeaseWindow is the length of a leadership window of the jobs done once (JobExpiry...): a
	// replica that dies leading one is replaced at most 4/3 of a window later (one that stops
	// is replaced at once).
	LeaseWindow time.Duration `env:"LEASE_WINDOW" envDefault:"15s"`
}

// Validate rejects unusable settings (zero values mean the defaults).
func (c ReplicaConfig) Validate() error {
	switch {
	case c.ClockSyncInterval > 0 && c.ClockSyncInterval < time.Second:
		return errors.New("CLOCK_SYNC_INTERVAL must be at least 1s (or negative: never)")
	case c.ClockOffsetWarn < 0:
		return errors.New("CLOCK_OFFSET_WARN must be a positive duration")
	case c.LeaseWindow < 0 || c.LeaseWindow > 0 && c.LeaseWindow < 3*time.Second:
		return errors.New("LEASE_WINDOW must be at least 3s")
	}
	return nil
}

// wireClock builds m.Clock on the clock's client (the local clock is m.Now) and, unless
// CLOCK_SYNC_INTERVAL is negative, measures its offset now and then every interval (stopped by
// Close). It never fails the start: until a measure succeeds, the offset is 0.
func (m *Main) wireClock(ctx context.Context) {
	cfg := m.Config.ReplicaConfig
	local := m.Now
	if local == nil {
		local = time.Now
	}
	m.Clock = mongox.NewClock(m.coord.Client(), mongox.ClockOptions{Local: local, Interval: cfg.ClockSyncInterval,
		Warn: cfg.ClockOffsetWarn, Logger: m.Logger})
	if cfg.ClockSyncInterval < 0 {
		m.Logger.Info("CLOCK_SYNC_INTERVAL is negative: hold ends and leases follow this process's clock, unchecked")
		return
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	off, err := m.Clock.Measure(mctx)
	cancel()
	if err != nil {
		m.Logger.Warn("could not measure the database's clock; using this process's until a measure succeeds", "error", err.Error())
	} else {
		m.Logger.Debug("offset to the database's clock", "offset", off.String())
	}
	m.loops.Add("clock", func(ctx context.Context) {
		m.Clock.Run(ctx, func(err error) {
			m.Logger.Warn("could not measure the database's clock; keeping the last offset", "error", err.Error())
		})
	})
}

// now is the clock of the engine and the leases: the database's, as m.Clock measures it.
func (m *Main) now() time.Time { return m.Clock.Now() }

// registerClockMetrics exports the measured offset.
func (m *Main) registerClockMetrics() error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cineflow_core_clock_offset_seconds",
		Help: "Offset of the database's clock to this process's, as last measured (positive: the database's is ahead). Hold ends and leases follow the database's.",
	}, func() float64 { return m.Clock.Offset().Seconds() })
	if err := m.Registry.Register(g); err != nil {
		return fmt.Errorf("clock metrics: %w", err)
	}
	return nil
}

// elect makes this replica a candidate for job and returns its elector (in m.Electors). It
// polls once at once, so that a lone replica leads from its start; then it keeps polling
// (m.elections) until Close, which releases the job once the loops that use it have stopped
// (stopElections), so that another replica takes over at once.
func (m *Main) elect(ctx context.Context, job string) *lease.Elector {
	if m.Electors == nil {
		m.Electors = map[string]*lease.Elector{}
	}
	if e, ok := m.Electors[job]; ok {
		return e
	}
	if m.leases == nil {
		m.leases = lease.NewMongoStore(m.coord.Collection(lease.DefaultCollection))
	}
	log := m.Logger.With("job", job)
	e := lease.New(m.leases, job, lease.Options{Window: m.Config.ReplicaConfig.LeaseWindow, Now: m.now,
		OnChange: func(leading bool) {
			if leading {
				log.Info("this replica leads the job")
			} else {
				log.Info("this replica no longer leads the job")
			}
		}})
	m.Electors[job] = e
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := e.Poll(pctx)
	cancel()
	if err != nil {
		log.Warn("could not take part in the election yet; retrying", "error", err.Error())
	}
	m.elections.Add("election "+job, func(ctx context.Context) {
		e.Run(ctx, func(err error) { log.Warn("election round failed; retrying", "error", err.Error()) })
	})
	return e
}

// stopElections stops the electors' polls and releases every job this replica leads. Best
// effort, even when Close's own time is spent: a lease not released ends with its windows
// anyway (another replica takes over within 4/3 of a window instead of at once).
func (m *Main) stopElections(ctx context.Context) error {
	err := m.elections.Stop(ctx)
	for job, e := range m.Electors {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if rerr := e.Release(rctx); rerr != nil {
			m.Logger.Warn("could not release the job; another replica takes it over once its windows end",
				"job", job, "error", rerr.Error())
		}
		cancel()
	}
	return err
}
