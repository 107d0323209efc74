// Command notification is the notification service: it takes email tickets over HTTP and
// stores them for the sweeper to deliver.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/notification/httpapi"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// Config is the service's environment (and .env file).
type Config struct {
	config.Common
	httpx.Settings
	Port int `env:"PORT" envDefault:"3001"`
	// DBURL names the MongoDB server and, in its path, the database (default "noti").
	DBURL string `env:"DB_URL"`
	// DBConnectTimeout bounds the start-up connection check; a serverSelectionTimeoutMS in
	// DB_URL takes precedence.
	DBConnectTimeout time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"10s"`
	APIToken         string        `env:"NOTIFICATION_API_TOKEN"`
	// MetricsStatsTTL is how long one read of the ticket figures answers /metrics scrapes.
	MetricsStatsTTL time.Duration `env:"METRICS_STATS_TTL" envDefault:"5s"`
	// IdempotencyCleanup is how often Idempotency-Key records past their 24 hours are removed
	// where the database has no TTL index (the dev database).
	IdempotencyCleanup time.Duration `env:"IDEMPOTENCY_CLEANUP_INTERVAL" envDefault:"10m"`
}

// LoadConfig reads the configuration from .env and the environment.
func LoadConfig() (Config, error) {
	var cfg Config
	err := config.Load(&cfg)
	if cfg.DBURL == "" {
		cfg.DBURL = mongox.DefaultURL // the database `make run` starts
	}
	return cfg, err
}

// Validate rejects settings the service cannot run with.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.Production() && c.APIToken == "" {
		return config.RequiredInProduction("NOTIFICATION_API_TOKEN", "refusing to start an open mail relay")
	}
	if err := c.Settings.Validate(c.Port); err != nil {
		return err
	}
	if c.DBURL == "" {
		return errors.New("DB_URL is empty")
	}
	if c.IdempotencyCleanup < 0 {
		return errors.New("IDEMPOTENCY_CLEANUP_INTERVAL must be a positive duration, e.g. 10m")
	}
	return nil
}

// Main is the running service.
type Main struct {
	httpx.Base // the server, Addr, Done, Err, Close
	Config     Config
	Logger     *slog.Logger
	// SetupTelemetry installs the global tracer provider (default telemetry.Setup) and returns
	// its shutdown. Tests that run many Mains in one process install it once instead.
	SetupTelemetry func(ctx context.Context) (func(context.Context) error, error)

	Client *mongo.Client
	Store  *mongostore.Store
}

// Run connects to the database, ensures the indexes, and starts serving on the configured
// port (0 picks a free one: see Addr). It returns once the service accepts requests.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = logging.New(m.Config.LogLevel, "notification")
	}
	cfg := m.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := m.Logger
	if cfg.APIToken == "" {
		log.Warn("NOTIFICATION_API_TOKEN is not set: anyone who can reach the service can queue emails (development only)")
	}

	client, err := mongox.Connect(ctx, cfg.DBURL, cfg.DBConnectTimeout)
	if err != nil {
		return err // names the database, never its password
	}
	m.Client = client
	m.OnClose(func(ctx context.Context) error {
		if err := client.Disconnect(ctx); err != nil {
			return fmt.Errorf("database disconnect: %w", err)
		}
		return nil
	})
	dbName := mongox.DatabaseName(cfg.DBURL, "noti")
	m.Store = mongostore.New(client.Database(dbName))
	ictx, cancel := context.WithTimeout(ctx, cfg.DBConnectTimeout+10*time.Second)
	err = m.Store.EnsureIndexes(ictx)
	cancel()
	if err != nil {
		return fmt.Errorf("database %s: %w", mongox.Redact(cfg.DBURL), err)
	}

	// Data stored before the delivery queue is brought into it once (the sweeper does the
	// same before its first sweep; whichever comes first).
	mctx, stopMigration := context.WithCancel(context.Background())
	migrated := make(chan struct{})
	go func() {
		defer close(migrated)
		if mig, err := m.Store.MigrateLegacy(mctx); err != nil {
			if mctx.Err() == nil {
				log.Error("could not migrate the delivery records; the sweeper retries", "error", err.Error())
			}
		} else if mig.Done {
			log.Info("delivery records migrated to the work queues", "queued", mig.Queued,
				"reopened_batches", mig.Reopened, "idempotency_keys", mig.Idempotent)
		}
	}()
	m.OnClose(func(context.Context) error {
		stopMigration()
		<-migrated
		return nil
	})

	m.backfillList()

	if !m.Store.IdempotencyTTL() {
		cctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			interval := cfg.IdempotencyCleanup
			if interval <= 0 {
				interval = 10 * time.Minute
			}
			m.cleanupIdempotency(cctx, interval)
		}()
		m.OnClose(func(context.Context) error {
			stop()
			<-done
			return nil
		})
	}

	setup := m.SetupTelemetry
	if setup == nil {
		setup = func(ctx context.Context) (func(context.Context) error, error) {
			return telemetry.Setup(ctx, "notification", version)
		}
	}
	stopTelemetry, err := setup(ctx)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	m.OnClose(func(ctx context.Context) error {
		if err := stopTelemetry(ctx); err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
		return nil
	})

	m.Server = httpapi.New(m.Store, httpapi.Options{
		Token:    cfg.APIToken,
		Logger:   log,
		StatsTTL: cfg.MetricsStatsTTL,
		HTTP:     m.httpOptions(),
	})
	if err := m.Start(ctx, cfg.Settings, cfg.Port); err != nil {
		return err
	}
	log.Info("notification service listening", "addr", m.Server.Addr(), "db", mongox.Redact(cfg.DBURL),
		"database", dbName, "auth", cfg.APIToken != "", "env", cfg.AppEnv, "version", version)
	return nil
}

// backfillRetry is how long the list back-fill waits after a failure before it tries again.
const backfillRetry = 10 * time.Second

// backfillList lists, in the background, the tickets an earlier version stored, retrying until
// it is done (lists read the tickets themselves meanwhile; see mongostore.BackfillList).
func (m *Main) backfillList() {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			began := time.Now()
			n, err := m.Store.BackfillList(ctx)
			if err == nil {
				if n > 0 {
					m.Logger.Info("listed the tickets of earlier versions", "tickets", n, "took", time.Since(began).String())
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			m.Logger.Warn("listing the tickets of earlier versions failed; retrying", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backfillRetry):
			}
		}
	}()
	m.OnClose(func(context.Context) error {
		stop()
		<-done
		return nil
	})
}

// cleanupBatch and cleanupRounds bound one clean-up of Idempotency-Key records.
const (
	cleanupBatch  = 1000
	cleanupRounds = 50
)

// cleanupIdempotency removes Idempotency-Key records past their retention now and then every
// interval, until ctx ends (a database without TTL indexes keeps them otherwise).
func (m *Main) cleanupIdempotency(ctx context.Context, interval time.Duration) {
	for {
		removed := 0
		for range cleanupRounds {
			n, err := m.Store.CleanupIdempotency(ctx, cleanupBatch)
			removed += n
			if err != nil {
				if ctx.Err() == nil {
					m.Logger.Warn("could not remove expired Idempotency-Key records; retrying later", "error", err.Error())
				}
				break
			}
			if n < cleanupBatch {
				break
			}
		}
		if removed > 0 {
			m.Logger.Info("removed expired Idempotency-Key records", "removed", removed)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// program describes the binary for --help and --version.
func program() config.Program {
	return config.Program{Name: "notification", Version: version, Config: []any{&Config{}}, Env: telemetry.Env, Summary: `
The CineFlow notification service: the REST API (base /notiservice/api/v1/notifications)
that accepts e-mail tickets and stores them PENDING in MongoDB (DB_URL) for the sweeper to
deliver. Every route needs Authorization: Bearer NOTIFICATION_API_TOKEN.`}
}

func main() {
	if done, code := config.ParseArgs(program(), nil, os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	cfg, err := LoadConfig()
	log := logging.New(cfg.LogLevel, "notification")
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	os.Exit(httpx.RunMain("notification", log, &Main{Config: cfg, Logger: log}, cfg.Settings))
}

// httpOptions are the server's options: the settings' limits, and the version in
// cineflow_build_info.
func (m *Main) httpOptions() httpx.Options {
	o := m.Config.Settings.Options()
	o.Version = version
	return o
}
