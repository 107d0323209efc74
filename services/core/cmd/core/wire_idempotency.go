package main

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/services/core/mongostore"
)

// IdempotencyConfig is the Idempotency-Key store's part of the environment.
type IdempotencyConfig struct {
	// Lease is how long a claimed key without a response counts as in progress; after it, the
	// request is taken as lost (its process died) and a retry with the key runs it.
	Lease time.Duration `env:"IDEMPOTENCY_LEASE" envDefault:"1m"`
	// Retention is how long keys and their responses are kept.
	Retention time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"`
	// CleanupInterval is how often records past the retention are removed where the database
	// has no TTL indexes (the embedded one).
	CleanupInterval time.Duration `env:"IDEMPOTENCY_CLEANUP_INTERVAL" envDefault:"1m"`
}

// Validate rejects unusable settings (zero values mean the defaults).
func (c IdempotencyConfig) Validate() error {
	lease := c.Lease
	if lease == 0 {
		lease = mongostore.StaleClaim
	}
	switch {
	case c.Lease < 0 || c.Lease > 0 && c.Lease < time.Second:
		return errors.New("IDEMPOTENCY_LEASE must be at least 1s")
	case c.Retention < 0 || c.Retention > 0 && c.Retention <= lease:
		return errors.New("IDEMPOTENCY_RETENTION must be longer than IDEMPOTENCY_LEASE")
	case c.CleanupInterval < 0 || c.CleanupInterval > 0 && c.CleanupInterval < 10*time.Millisecond:
		return errors.New("IDEMPOTENCY_CLEANUP_INTERVAL must be at least 10ms")
	}
	return nil
}

// wireIdempotency builds m.Idempotency on db. Old records expire by a TTL index where the
// server has them (MongoDB); where it refuses one (the embedded database), a periodic
// clean-up removes them instead, on the replica that leads JobIdempotencyCleanup (one of the
// loops). Neither ever fails the start. Claims are dated by the database's clock (m.now), so
// that a replica whose clock runs ahead does not take over another's claim early.
func (m *Main) wireIdempotency(ctx context.Context, db *mongo.Database) {
	cfg := m.Config.IdempotencyConfig
	store := mongostore.NewIdempotencyWith(db, mongostore.IdempotencyOptions{Lease: cfg.Lease, Retention: cfg.Retention, Now: m.now})
	m.Idempotency = store
	err := store.EnsureTTL(ctx)
	if err == nil {
		m.Logger.Debug("idempotency records expire by TTL index")
		return
	}
	interval := cfg.CleanupInterval
	if interval == 0 {
		interval = time.Minute
	}
	m.Logger.Info("the database has no TTL index for idempotency records: removing old ones periodically instead",
		"interval", interval.String(), "reason", err.Error())
	leads := m.elect(ctx, JobIdempotencyCleanup).Leader
	m.loops.Add("idempotency clean-up", func(ctx context.Context) {
		store.RunCleanup(ctx, interval, leads, func(err error) {
			m.Logger.Warn("idempotency clean-up failed; retrying", "error", err.Error())
		})
	})
}
