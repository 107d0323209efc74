// Command core is the core (mba) service. This part serves the accounts: sign-up, sign-in,
// password reset and the approval of users by an admin.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/lease"
	"github.com/cineflow/cineflow/pkg/lifecycle"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/httpapi"
	"github.com/cineflow/cineflow/services/core/mongostore"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// devJWTSecret signs tokens when JWT_SECRET is unset in development (APP_ENV=development,
// with a warning); production (the default) refuses to start without JWT_SECRET.
const devJWTSecret = "cineflow-development-jwt-secret-not-for-production"

// minProductionSecret is the shortest JWT_SECRET production accepts, in bytes.
const minProductionSecret = 32

// Config is the service's environment (and .env file).
type Config struct {
	config.Common
	httpx.Settings
	CatalogueConfig
	OutboxConfig
	BookingConfig
	AuthConfig
	IdempotencyConfig
	ReplicaConfig
	Port int `env:"PORT" envDefault:"3000"`
	// DBURL names the MongoDB server and, in its path, the database (default "mba").
	DBURL            string        `env:"DB_URL"`
	DBConnectTimeout time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"10s"`
	// JWTSecret signs the tokens (HS256): required, at least 32 bytes, in production.
	JWTSecret  string        `env:"JWT_SECRET"`
	JWTTTL     time.Duration `env:"JWT_TTL" envDefault:"24h"`
	BcryptCost int           `env:"BCRYPT_COST" envDefault:"10"`
	// AdminEmail and AdminPassword create the first APPROVED ADMIN at start (idempotent).
	AdminEmail    string `env:"ADMIN_EMAIL"`
	AdminPassword string `env:"ADMIN_PASSWORD"`
	// CORSAllowedOrigins are the browser origins (comma-separated) allowed to call the API:
	// none by default (see httpapi.ParseCORSOrigins).
	CORSAllowedOrigins string `env:"CORS_ALLOWED_ORIGINS"`
}

// LoadConfig reads the configuration from .env and the environment.
func LoadConfig() (Config, error) {
	var cfg Config
	err := config.Load(&cfg)
	if cfg.DBURL == "" {
		cfg.DBURL = mongox.DefaultURL
	}
	return cfg, err
}

// Validate rejects settings the service cannot run with. Messages name variables, never
// their values.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.Production() {
		if c.JWTSecret == "" {
			return config.RequiredInProduction("JWT_SECRET", fmt.Sprintf("a random secret of at least %d bytes signs the tokens", minProductionSecret))
		}
		if len(c.JWTSecret) < minProductionSecret {
			return fmt.Errorf("JWT_SECRET must be at least %d bytes in production (APP_ENV unset or production)", minProductionSecret)
		}
		if c.BcryptCost < accounts.DefaultBcryptCost {
			return fmt.Errorf("BCRYPT_COST must be at least %d in production (APP_ENV unset or production)", accounts.DefaultBcryptCost)
		}
	}
	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		return errors.New("ADMIN_EMAIL and ADMIN_PASSWORD go together: set both or neither")
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		return errors.New("BCRYPT_COST must be from 4 to 31")
	}
	if c.JWTTTL <= 0 {
		return errors.New("JWT_TTL must be a positive duration")
	}
	if err := c.OutboxConfig.Validate(c.Production()); err != nil {
		return err
	}
	if err := c.CatalogueConfig.Validate(); err != nil {
		return err
	}
	if err := c.BookingConfig.Validate(); err != nil {
		return err
	}
	if err := c.IdempotencyConfig.Validate(); err != nil {
		return err
	}
	if err := c.ReplicaConfig.Validate(); err != nil {
		return err
	}
	if err := c.Settings.Validate(c.Port); err != nil {
		return err
	}
	if err := c.AuthConfig.Validate(); err != nil {
		return err
	}
	if c.DBURL == "" {
		return errors.New("DB_URL is empty")
	}
	if _, err := httpapi.ParseCORSOrigins(c.CORSAllowedOrigins); err != nil {
		return err
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
	// Now is this process's local clock (default time.Now). The booking engine and the leases
	// run on the database's clock, measured against it (see ReplicaConfig and Clock); a test
	// that moves it to make holds end turns that measure off (CLOCK_SYNC_INTERVAL negative),
	// else the next measure would take the move back.
	Now func() time.Time
	// Clock is the database's clock as measured against Now.
	Clock *mongox.Clock
	// Electors are this replica's candidacies for the jobs done once among the replicas, by
	// job (JobExpiry...).
	Electors map[string]*lease.Elector
	leases   *lease.MongoStore
	coord    *mongo.Database // the database through the clock's and leases' client
	// loops are the background loops (the clock's measures, the relay, the expirer, the
	// seat logs' compaction, the idempotency clean-up, the back-fills), added while wiring
	// and started together once everything is built; elections are the electors' polls,
	// stopped after the loops that ask them who leads.
	loops, elections lifecycle.Loops

	Registry  *prometheus.Registry
	Client    *mongo.Client
	DB        *mongo.Database
	Users     *mongostore.Users
	Accounts  *accounts.Accounts
	Catalogue *catalogue.Catalogue
	// Relay relays the outbox's emails (built before the catalogue and the engine, which
	// write to it, and started with the other loops).
	Relay    *outbox.Relay
	Bookings *booking.Bookings
	// Idempotency keeps the first response per Idempotency-Key.
	Idempotency httpapi.IdempotencyStore
	// EditAuthLimits, when set, edits the sign-in and sign-up limits before they are used
	// (tests set their clock and sweep period).
	EditAuthLimits func(*httpapi.AuthLimits)
}

// Run connects to the database, ensures the indexes and the first admin, and starts serving
// (port 0 picks a free one: see Addr). It returns once the service accepts requests.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = logging.New(m.Config.LogLevel, "core")
	}
	cfg := m.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := m.Logger
	secret := cfg.JWTSecret
	if secret == "" {
		secret = devJWTSecret
		log.Warn("JWT_SECRET is not set: signing tokens with a built-in development key (never in production)")
	} else if len(secret) < minProductionSecret {
		log.Warn(fmt.Sprintf("JWT_SECRET is shorter than %d bytes (production refuses it)", minProductionSecret))
	}

	setup := m.SetupTelemetry
	if setup == nil {
		setup = func(ctx context.Context) (func(context.Context) error, error) {
			return telemetry.Setup(ctx, "core", version)
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

	client, err := mongox.Connect(ctx, cfg.DBURL, cfg.DBConnectTimeout)
	if err != nil {
		return err
	}
	m.Client = client
	m.OnClose(func(ctx context.Context) error {
		if err := client.Disconnect(ctx); err != nil {
			return fmt.Errorf("database disconnect: %w", err)
		}
		return nil
	})
	dbName := mongox.DatabaseName(cfg.DBURL, "mba")
	m.DB = client.Database(dbName)
	// The clock and the leases have a client of their own with a small pool: a clock's round
	// trip queued behind the service's requests would measure the queue, and a lease's renewal
	// queued behind its holder's own work (the expirer in a storm) would lose the lease.
	coord, err := mongox.ConnectPool(ctx, cfg.DBURL, cfg.DBConnectTimeout, 2)
	if err != nil {
		return err
	}
	m.OnClose(func(ctx context.Context) error {
		if err := coord.Disconnect(ctx); err != nil {
			return fmt.Errorf("database disconnect: %w", err)
		}
		return nil
	})
	m.coord = coord.Database(dbName)
	m.OnClose(m.stopElections) // after the loops have stopped (closers run last-added first)
	m.wireClock(ctx)
	m.Users = mongostore.New(m.DB)
	ictx, cancel := context.WithTimeout(ctx, cfg.DBConnectTimeout+10*time.Second)
	defer cancel()
	if err := m.Users.EnsureIndexes(ictx); err != nil {
		return fmt.Errorf("database %s: %w", mongox.Redact(cfg.DBURL), err)
	}
	m.backfillUserEmails(ctx)
	m.Accounts, err = accounts.NewAccounts(m.Users, accounts.AccountsOptions{
		Secret: []byte(secret), TokenTTL: cfg.JWTTTL, BcryptCost: cfg.BcryptCost})
	if err != nil {
		return err
	}
	if cfg.AdminEmail != "" {
		u, created, err := m.Accounts.EnsureAdmin(ictx, cfg.AdminEmail, cfg.AdminPassword)
		switch {
		case err != nil:
			return fmt.Errorf("first admin (ADMIN_EMAIL, ADMIN_PASSWORD): %w", err)
		case created:
			log.Info("first admin created from ADMIN_EMAIL", "user_id", u.ID)
		case !u.Is(core.RoleAdmin):
			log.Warn("ADMIN_EMAIL belongs to an existing account that is not an approved admin; left unchanged",
				"user_id", u.ID, "role", string(u.Role), "status", string(u.Status))
		default:
			log.Info("first admin already exists", "user_id", u.ID)
		}
	}

	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := m.registerClockMetrics(); err != nil {
		return err
	}
	// The relay first (not started): the catalogue and the engine write their emails to it.
	if err := m.wireOutbox(ictx, m.DB); err != nil {
		return err
	}
	if err := m.wireCatalogue(ictx, m.DB); err != nil {
		return err
	}
	if err := m.wireBookings(ictx, m.DB); err != nil {
		return err
	}
	m.wireIdempotency(ictx, m.DB)
	// A show is deleted only once the engine has checked it has no bookings that stand.
	m.Catalogue.SetShowDeletion(m.Bookings.ReserveShowDeletion)
	// The relay sends an email of a guarded kind only once its guard says the decision stands.
	m.Relay.Guard(booking.PaidEmailKind, func(ctx context.Context, _, ref string) (core.GuardVerdict, error) {
		return m.Bookings.PaidGuard(ctx, ref)
	})
	m.Relay.Guard(catalogue.EmailKindTheatreCreated, m.Catalogue.TheatreCreatedGuard)

	proxies, _ := httpapi.ParseTrustedProxies(cfg.TrustedProxies)  // checked by Validate
	origins, _ := httpapi.ParseCORSOrigins(cfg.CORSAllowedOrigins) // checked by Validate
	httpOpts := cfg.Settings.Options()
	httpOpts.Registry = m.Registry
	httpOpts.Version = version
	limits := cfg.AuthConfig.Limits()
	if m.EditAuthLimits != nil {
		m.EditAuthLimits(&limits)
	}
	m.Server = httpapi.New(httpapi.Services{Accounts: m.Accounts, Users: m.Users, Catalogue: m.Catalogue,
		Bookings: m.Bookings, Idempotency: m.Idempotency}, httpapi.Options{
		Logger:         log,
		AuthLimits:     limits,
		TrustedProxies: proxies,
		CORSOrigins:    origins,
		Catalogue:      cfg.CatalogueConfig.HTTPOptions(),
		HTTP:           httpOpts,
	})
	// Everything is built: the background loops start, and stop first when the service
	// closes (after the server has drained).
	m.elections.Start(ctx)
	m.loops.Start(ctx)
	m.OnClose(m.loops.Stop)
	if err := m.Start(ctx, cfg.Settings, cfg.Port); err != nil {
		return err
	}
	log.Info("core service listening", "addr", m.Server.Addr(), "db", mongox.Redact(cfg.DBURL),
		"database", dbName, "env", cfg.AppEnv, "version", version)
	return nil
}

// backfillUserEmails indexes, in the background, the emails of users an earlier version
// created, retrying until it is done (sign-in finds them meanwhile by a find on email). The
// replica that leads JobEmailBackfill does it; the others wait until it is done, and take it
// up if the leader goes away first.
func (m *Main) backfillUserEmails(ctx context.Context) {
	e := m.elect(ctx, JobEmailBackfill)
	m.loops.Add("email backfill", func(bctx context.Context) {
		defer func() { // done, or stopping
			rctx, cancel := context.WithTimeout(context.WithoutCancel(bctx), time.Second)
			defer cancel()
			_ = e.Release(rctx)
		}()
		for {
			wait := 10 * time.Second
			if e.Leader() {
				began := time.Now()
				n, err := m.Users.Backfill(bctx)
				if err == nil {
					if n > 0 {
						m.Logger.Info("indexed the emails of existing users", "users", n, "took", time.Since(began).String())
					}
					return
				}
				if bctx.Err() != nil {
					return
				}
				m.Logger.Warn("indexing the emails of existing users failed; retrying", "error", err.Error())
			} else if ok, err := m.Users.Backfilled(bctx); err == nil && ok {
				return // another replica did it
			} else {
				wait = time.Second
			}
			select {
			case <-bctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

// program describes the binary for --help and --version.
func program() config.Program {
	return config.Program{Name: "core", Version: version, Config: []any{&Config{}}, Env: telemetry.Env, Summary: `
The CineFlow core service: the REST API (base /mba/api/v1) for sign-up and JWT sign-in,
theatres, movies, shows, seat booking that never oversells, expiring holds and payments. It
keeps its data in MongoDB (DB_URL) and hands the e-mails it owes to the notification service
(NOTIFICATION_SERVICE_URL) through an outbox.`}
}

func main() {
	if done, code := config.ParseArgs(program(), nil, os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	cfg, err := LoadConfig()
	log := logging.New(cfg.LogLevel, "core")
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	os.Exit(httpx.RunMain("core", log, &Main{Config: cfg, Logger: log}, cfg.Settings))
}
