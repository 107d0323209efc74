// Command core is the core (mba) service. This part serves the accounts: sign-up, sign-in,
// password reset and the approval of users by an admin.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/httpapi"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// devJWTSecret signs tokens when JWT_SECRET is unset outside production (with a warning).
const devJWTSecret = "cineflow-development-jwt-secret-not-for-production"

// minProductionSecret is the shortest JWT_SECRET production accepts, in bytes.
const minProductionSecret = 32

// Config is the service's environment (and .env file).
type Config struct {
	config.Common
	Host string `env:"HOST"`
	Port int    `env:"PORT" envDefault:"3000"`
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
	// Sign-in attempts allowed per minute (and burst) per client IP and per email.
	SigninPerMinute float64       `env:"SIGNIN_RATE_PER_MINUTE" envDefault:"10"`
	SigninBurst     int           `env:"SIGNIN_BURST" envDefault:"5"`
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	BodyLimit       int           `env:"BODY_LIMIT" envDefault:"1048576"`
	ReadTimeout     time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"10s"`
	WriteTimeout    time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"10s"`
	IdleTimeout     time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`
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
	if c.Production() {
		if c.JWTSecret == "" {
			return errors.New("JWT_SECRET is required when APP_ENV=production")
		}
		if len(c.JWTSecret) < minProductionSecret {
			return fmt.Errorf("JWT_SECRET must be at least %d bytes when APP_ENV=production", minProductionSecret)
		}
		if c.BcryptCost < core.DefaultBcryptCost {
			return fmt.Errorf("BCRYPT_COST must be at least %d when APP_ENV=production", core.DefaultBcryptCost)
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
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("PORT must be from 0 to 65535, not %d", c.Port)
	}
	if c.BodyLimit <= 0 {
		return errors.New("BODY_LIMIT must be a positive number of bytes")
	}
	if c.SigninPerMinute <= 0 || c.SigninBurst <= 0 {
		return errors.New("SIGNIN_RATE_PER_MINUTE and SIGNIN_BURST must be positive")
	}
	if c.DBURL == "" {
		return errors.New("DB_URL is empty")
	}
	return nil
}

// Main is the running service.
type Main struct {
	Config Config
	Logger *slog.Logger
	// SetupTelemetry installs the global tracer provider (default telemetry.Setup) and returns
	// its shutdown. Tests that run many Mains in one process install it once instead.
	SetupTelemetry func(ctx context.Context) (func(context.Context) error, error)

	Client   *mongo.Client
	Users    *mongostore.Users
	Accounts *core.Accounts
	Server   *httpx.Server

	stopTelemetry func(context.Context) error
	done          chan struct{}
	serveErr      error
	closeOnce     sync.Once
	closeErr      error
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

	timeout := cfg.DBConnectTimeout
	if o := options.Client().ApplyURI(cfg.DBURL); o.ServerSelectionTimeout != nil && *o.ServerSelectionTimeout > 0 {
		timeout = *o.ServerSelectionTimeout
	}
	client, err := mongox.Connect(ctx, cfg.DBURL, timeout)
	if err != nil {
		return err
	}
	m.Client = client
	dbName := mongox.DatabaseName(cfg.DBURL, "mba")
	m.Users = mongostore.New(client.Database(dbName))
	ictx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	if err := m.Users.EnsureIndexes(ictx); err != nil {
		return fmt.Errorf("database %s: %w", mongox.Redact(cfg.DBURL), err)
	}
	m.Accounts, err = core.NewAccounts(m.Users, core.AccountsOptions{
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
			log.Info("first admin created from ADMIN_EMAIL", "userId", u.ID)
		case !u.Is(core.RoleAdmin):
			log.Warn("ADMIN_EMAIL belongs to an existing account that is not an approved admin; left unchanged",
				"userId", u.ID, "role", string(u.Role), "status", string(u.Status))
		default:
			log.Info("first admin already exists", "userId", u.ID)
		}
	}

	setup := m.SetupTelemetry
	if setup == nil {
		setup = func(ctx context.Context) (func(context.Context) error, error) {
			return telemetry.Setup(ctx, "core", version)
		}
	}
	if m.stopTelemetry, err = setup(ctx); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	m.Server = httpapi.New(m.Accounts, m.Users, httpapi.Options{
		Logger:          log,
		SigninPerMinute: cfg.SigninPerMinute,
		SigninBurst:     cfg.SigninBurst,
		HTTP: httpx.Options{
			BodyLimit:    cfg.BodyLimit,
			ReadTimeout:  cfg.ReadTimeout,
			WriteTimeout: cfg.WriteTimeout,
			IdleTimeout:  cfg.IdleTimeout,
		},
	})
	if err := m.Server.Listen(net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))); err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	m.done = make(chan struct{})
	go func() {
		m.serveErr = m.Server.Serve()
		close(m.done)
	}()
	if err := m.awaitServing(ctx); err != nil {
		return err
	}
	log.Info("core service listening", "addr", m.Server.Addr(), "db", mongox.Redact(cfg.DBURL),
		"database", dbName, "env", cfg.AppEnv, "version", version)
	return nil
}

// awaitServing returns once the server answers /healthz.
func (m *Main) awaitServing(ctx context.Context) error {
	host, port, _ := net.SplitHostPort(m.Server.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-m.done:
			return fmt.Errorf("serve on %s: %w", m.Server.Addr(), m.serveErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server on %s did not answer within 10s: %w", m.Server.Addr(), err)
		}
	}
}

// Addr is the address the service listens on, after Run.
func (m *Main) Addr() string { return m.Server.Addr() }

// Done is closed when the server stops serving.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is the server's error once Done is closed (nil after a clean Close).
func (m *Main) Err() error {
	if m.done == nil {
		return nil
	}
	<-m.done
	return m.serveErr
}

// Close drains in-flight requests, flushes traces and disconnects from the database. It is
// safe after a failed Run, and idempotent.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		timeout := m.Config.ShutdownTimeout
		if timeout <= 0 {
			timeout = 20 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownDelay+timeout)
		defer cancel()
		var errList []error
		if m.done != nil {
			if err := m.Server.Shutdown(ctx, m.Config.ShutdownDelay); err != nil {
				errList = append(errList, fmt.Errorf("http shutdown: %w", err))
			}
			select {
			case <-m.done:
				if m.serveErr != nil {
					errList = append(errList, fmt.Errorf("http: %w", m.serveErr))
				}
			case <-ctx.Done():
				errList = append(errList, errors.New("http: server did not stop in time"))
			}
		}
		if m.stopTelemetry != nil {
			if err := m.stopTelemetry(ctx); err != nil {
				errList = append(errList, fmt.Errorf("telemetry: %w", err))
			}
		}
		if m.Client != nil {
			if err := m.Client.Disconnect(ctx); err != nil {
				errList = append(errList, fmt.Errorf("database disconnect: %w", err))
			}
		}
		m.closeErr = errors.Join(errList...)
	})
	return m.closeErr
}

func main() {
	cfg, err := LoadConfig()
	log := logging.New(cfg.LogLevel, "core")
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := &Main{Config: cfg, Logger: log}
	if err := m.Run(ctx); err != nil {
		log.Error("core service cannot start", "error", err.Error())
		_ = m.Close()
		os.Exit(1)
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "delay", cfg.ShutdownDelay.String(),
			"timeout", cfg.ShutdownTimeout.String())
	case <-m.Done():
		log.Error("HTTP server stopped unexpectedly", "error", fmt.Sprint(m.Err()))
		code = 1
	}
	stop()
	if err := m.Close(); err != nil {
		log.Error("shutdown incomplete", "error", err.Error())
		code = 1
	}
	if code == 0 {
		log.Info("core service stopped")
	}
	os.Exit(code)
}
