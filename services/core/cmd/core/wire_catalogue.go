package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/httpapi"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// CatalogueConfig is the catalogue's part of the environment.
type CatalogueConfig struct {
	// CacheTTL is how long catalogue reads are served from memory: a change made through
	// another replica is visible after at most this long (one made through this one at once).
	// A negative value turns the response cache off.
	CacheTTL time.Duration `env:"CATALOGUE_CACHE_TTL" envDefault:"2s"`
	// CacheEntries bounds the response cache.
	CacheEntries int `env:"CATALOGUE_CACHE_ENTRIES" envDefault:"1000"`
}

// Validate rejects catalogue settings the service cannot run with.
func (c CatalogueConfig) Validate() error {
	if c.CacheEntries < 0 {
		return errors.New("CATALOGUE_CACHE_ENTRIES must not be negative")
	}
	return nil
}

// HTTPOptions are the catalogue routes' options for httpapi.Options.Catalogue.
func (c CatalogueConfig) HTTPOptions() httpapi.CatalogueOptions {
	return httpapi.CatalogueOptions{CacheTTL: c.CacheTTL, CacheEntries: c.CacheEntries}
}

// showCacheTTL bounds how long the booking engine's show lookups are served from memory: the
// response cache's TTL, at most a second (0 keeps the default; negative turns it off).
func (c CatalogueConfig) showCacheTTL() time.Duration {
	switch {
	case c.CacheTTL < 0:
		return -1
	case c.CacheTTL == 0:
		return 0
	}
	return min(c.CacheTTL, time.Second)
}

// wireCatalogue builds m.Catalogue on db (indexes included). The theatre-created emails go to
// m.Relay (wireOutbox first).
func (m *Main) wireCatalogue(ctx context.Context, db *mongo.Database) error {
	cfg := m.Config.CatalogueConfig
	if err := cfg.Validate(); err != nil {
		return err
	}
	stores := mongostore.NewCatalogue(db)
	if err := stores.EnsureIndexes(ctx); err != nil {
		return fmt.Errorf("catalogue: %w", err)
	}
	m.Catalogue = catalogue.NewCatalogue(stores.Stores(), catalogue.CatalogueOptions{
		Outbox:       m.Relay,
		TraceParent:  httpx.TraceParent,
		ShowCacheTTL: cfg.showCacheTTL(),
		// The database's clock (see wireClock): deletion markers are dated by it, so the
		// replicas agree on their age whatever their own clocks say.
		Now: m.now,
	})
	return nil
}
