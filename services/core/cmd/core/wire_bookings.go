package main

import (
	"cmp"
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// BookingConfig is the booking engine's part of the environment.
type BookingConfig struct {
	// HoldTTL is how long a booking holds its seats unpaid.
	HoldTTL time.Duration `env:"BOOKING_HOLD_TTL" envDefault:"5m"`
	// ExpiryInterval is how often unpaid holds past their TTL are released without anyone
	// asking (a booking or payment that meets one releases it at once anyway).
	ExpiryInterval time.Duration `env:"HOLD_EXPIRY_INTERVAL" envDefault:"10s"`
	// MaxSeatsPerBooking bounds noOfSeats and seats[] of one booking (beyond it: 429).
	MaxSeatsPerBooking int `env:"MAX_SEATS_PER_BOOKING" envDefault:"10"`
	// MaxOpenSeatsPerUser bounds the seats one customer holds in unpaid bookings, across all
	// shows (beyond it: 429).
	MaxOpenSeatsPerUser int `env:"MAX_OPEN_SEATS_PER_USER" envDefault:"10"`
	// Projection copies each booking's fate onto its stored document (see
	// booking.BookingsOptions.Project). make run turns it off for the embedded database.
	Projection bool `env:"BOOKING_PROJECTION" envDefault:"true"`
	// TakeoverMargin is how long past a hold's end another booking or the expirer waits before
	// taking its seats (the customer paying is held to the end itself): the clock error between
	// replicas tolerated, beside the database's clock they share (see booking.BookingsOptions).
	// Zero means the default; negative, none.
	TakeoverMargin time.Duration `env:"HOLD_TAKEOVER_MARGIN" envDefault:"2s"`
}

// DefaultTakeoverMargin is HOLD_TAKEOVER_MARGIN's default.
const DefaultTakeoverMargin = 2 * time.Second

// Validate rejects unusable booking settings (zero values mean the defaults).
func (c BookingConfig) Validate() error {
	if c.HoldTTL < 0 || c.HoldTTL > 0 && c.HoldTTL < time.Second {
		return errors.New("BOOKING_HOLD_TTL must be at least 1s")
	}
	if c.ExpiryInterval < 0 || c.ExpiryInterval > 0 && c.ExpiryInterval < 10*time.Millisecond {
		return errors.New("HOLD_EXPIRY_INTERVAL must be at least 10ms")
	}
	if c.MaxSeatsPerBooking < 0 || c.MaxSeatsPerBooking > 1000 {
		return errors.New("MAX_SEATS_PER_BOOKING must be from 1 to 1000")
	}
	if c.MaxOpenSeatsPerUser < 0 || c.MaxOpenSeatsPerUser > 100000 {
		return errors.New("MAX_OPEN_SEATS_PER_USER must be from 1 to 100000")
	}
	if c.TakeoverMargin > time.Minute {
		return errors.New("HOLD_TAKEOVER_MARGIN must be at most 1m")
	}
	return nil
}

// wireBookings builds m.Bookings on db and adds the hold expirer to the loops. Hold
// ends follow the database's clock (m.now); the expirer runs on the replica that leads
// JobExpiry, and shares its notes of lapsed fair-use slots with the others.
func (m *Main) wireBookings(ctx context.Context, db *mongo.Database) error {
	if m.Catalogue == nil || m.Relay == nil {
		return errors.New("bookings need the catalogue and the relay (wireCatalogue and wireOutbox first)")
	}
	var shows core.ShowFinder = m.Catalogue
	cfg := m.Config.BookingConfig
	store := mongostore.NewBookings(db).SetIntentBucketWidth(mongostore.IntentBucketWidthFor(cmp.Or(cfg.HoldTTL, booking.DefaultHoldTTL)))
	if err := store.EnsureIndexes(ctx); err != nil {
		return err
	}
	m.backfillLists(ctx, store)
	if cfg.ExpiryInterval == 0 {
		cfg.ExpiryInterval = 10 * time.Second
	}
	margin := cfg.TakeoverMargin
	switch {
	case margin == 0:
		margin = DefaultTakeoverMargin
	case margin < 0:
		margin = 0
	}
	m.Bookings = booking.NewBookings(store, shows, booking.BookingsOptions{HoldTTL: cfg.HoldTTL,
		MaxSeatsPerBooking: cfg.MaxSeatsPerBooking, MaxOpenSeatsPerUser: cfg.MaxOpenSeatsPerUser,
		Project: cfg.Projection, Events: booking.NewMetrics(m.Registry), TraceParent: httpx.TraceParent, Now: m.now,
		TakeoverMargin: margin, Leads: m.elect(ctx, JobExpiry).Leader, Lapses: mongostore.NewLapses(db), Outbox: m.Relay})
	// Before serving, like the indexes: a store written by a version without seat logs gets
	// them (once).
	if err := m.Bookings.MigrateSeatLogs(ctx); err != nil {
		return err
	}
	m.loops.Add("hold expirer", func(ctx context.Context) {
		m.Bookings.Run(ctx, cfg.ExpiryInterval, func(err error) {
			m.Logger.Warn("booking background work failed; retrying", "error", err.Error())
		})
	})
	// The seat logs' compaction runs on every replica (each compacts the shows it has seen;
	// the compaction records keep them from repeating each other's work).
	m.loops.Add("seat log compaction", func(ctx context.Context) {
		m.Bookings.RunCompaction(ctx, func(err error) {
			m.Logger.Warn("seat log compaction failed; retrying", "error", err.Error())
		})
	})
	return nil
}
