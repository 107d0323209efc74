package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/mongostore"
	"github.com/cineflow/cineflow/services/core/notifyclient"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// OutboxConfig is the outbox relay's part of the environment. Zero values take the
// defaults (tests build Config by hand).
type OutboxConfig struct {
	// NotificationURL is the notification service's ticket endpoint.
	NotificationURL string `env:"NOTIFICATION_SERVICE_URL" envDefault:"http://localhost:3001/notiservice/api/v1/notifications"`
	// NotificationToken is the notification service's bearer token: required in production.
	NotificationToken string `env:"NOTIFICATION_API_TOKEN"`
	// NotificationTimeout bounds each POST to the notification service.
	NotificationTimeout time.Duration `env:"NOTIFICATION_TIMEOUT" envDefault:"5s"`
	// RelayInterval is how often the relay looks for due emails (an enqueue wakes it at once).
	RelayInterval time.Duration `env:"RELAY_INTERVAL" envDefault:"1s"`
	// RelayMaxBackoff caps the delay between attempts at one email.
	RelayMaxBackoff time.Duration `env:"RELAY_MAX_BACKOFF" envDefault:"5m"`
}

// Validate rejects outbox settings the service cannot run with; messages name variables,
// never their values.
func (c OutboxConfig) Validate(production bool) error {
	if c.NotificationURL != "" {
		if err := notifyclient.CheckURL(c.NotificationURL); err != nil {
			return err
		}
	}
	if production && c.NotificationToken == "" {
		return config.RequiredInProduction("NOTIFICATION_API_TOKEN", "the notification service's bearer token")
	}
	if c.NotificationTimeout < 0 || c.RelayInterval < 0 || c.RelayMaxBackoff < 0 {
		return errors.New("NOTIFICATION_TIMEOUT, RELAY_INTERVAL and RELAY_MAX_BACKOFF must be positive durations")
	}
	return nil
}

// wireOutbox builds m.Relay on db, and adds it to the loops (not started: guards are
// registered first).
func (m *Main) wireOutbox(ctx context.Context, db *mongo.Database) error {
	cfg := m.Config.OutboxConfig
	if err := cfg.Validate(m.Config.Production()); err != nil {
		return err
	}
	if cfg.NotificationToken == "" {
		m.Logger.Warn("NOTIFICATION_API_TOKEN is not set: posting to the notification service without credentials (development only)")
	}
	store := mongostore.NewOutbox(db)
	if err := store.EnsureIndexes(ctx); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	client, err := notifyclient.New(notifyclient.Options{URL: cfg.NotificationURL, Token: cfg.NotificationToken,
		Timeout: cfg.NotificationTimeout})
	if err != nil {
		return err
	}
	metrics := outbox.NewMetrics(store, 5*time.Second)
	relay := outbox.NewRelay(ledOutbox{OutboxStore: store, leads: m.elect(ctx, JobOutboxRelay).Leader}, client, outbox.RelayOptions{
		Interval:   cfg.RelayInterval,
		MaxBackoff: cfg.RelayMaxBackoff,
		Logger:     m.Logger,
		Metrics:    metrics,
		// Until wireBookings registers the paid guard, confirmations wait (never sent for a
		// booking nobody has checked is paid).
		GuardedKinds: []string{booking.PaidEmailKind},
	})
	if m.Registry != nil {
		if err := m.Registry.Register(metrics); err != nil {
			return fmt.Errorf("outbox metrics: %w", err)
		}
	}
	m.Relay = relay // Enqueue stores the email and wakes the relay
	// The store writes its share of the outbox count once the relay has stopped (the loops
	// stop first: closers run last-added first).
	m.OnClose(store.Flush)
	m.loops.Add("outbox relay", relay.Run)
	return nil
}

// ledOutbox is the outbox store as the relay sees it: only on the replica that leads
// JobOutboxRelay does Pending find due emails, so only that one relays (every replica stores
// the emails it owes). An email owed on another replica is relayed by the leader at its next
// round (RELAY_INTERVAL); two relays at once (a change of leader) stay correct, each POST
// carrying the email's Idempotency-Key.
type ledOutbox struct {
	outbox.OutboxStore
	leads func() bool
}

func (o ledOutbox) Pending(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error) {
	if !o.leads() {
		return nil, nil
	}
	return o.OutboxStore.Pending(ctx, now, limit)
}
