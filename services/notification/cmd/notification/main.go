// Command notification is the notification service: it takes email tickets over HTTP and
// stores them for the sweeper to deliver.
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
	"github.com/cineflow/cineflow/services/notification/httpapi"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// Config is the service's environment (and .env file).
type Config struct {
	config.Common
	// Host is the interface to listen on ("" means all).
	Host string `env:"HOST"`
	Port int    `env:"PORT" envDefault:"3001"`
	// DBURL names the MongoDB server and, in its path, the database (default "noti").
	DBURL string `env:"DB_URL"`
	// DBConnectTimeout bounds the start-up connection check; a serverSelectionTimeoutMS in
	// DB_URL takes precedence.
	DBConnectTimeout time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"10s"`
	APIToken         string        `env:"NOTIFICATION_API_TOKEN"`
	// ShutdownDelay keeps serving (with /readyz failing) before draining, so load balancers
	// stop sending first; ShutdownTimeout bounds the drain of in-flight requests.
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	BodyLimit       int           `env:"BODY_LIMIT" envDefault:"1048576"`
	ReadTimeout     time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"10s"`
	WriteTimeout    time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"10s"`
	IdleTimeout     time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`
	// MetricsStatsTTL is how long one read of the ticket figures answers /metrics scrapes.
	MetricsStatsTTL time.Duration `env:"METRICS_STATS_TTL" envDefault:"5s"`
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
	if c.Production() && c.APIToken == "" {
		return errors.New("NOTIFICATION_API_TOKEN is required when APP_ENV=production: " +
			"refusing to start an open mail relay")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("PORT must be from 0 to 65535, not %d", c.Port)
	}
	if c.BodyLimit <= 0 {
		return errors.New("BODY_LIMIT must be a positive number of bytes")
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

	Client *mongo.Client
	Store  *mongostore.Store
	Server *httpx.Server

	stopTelemetry func(context.Context) error
	done          chan struct{} // closed when Serve returns
	serveErr      error
	closeOnce     sync.Once
	closeErr      error
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

	timeout := cfg.DBConnectTimeout
	if o := options.Client().ApplyURI(cfg.DBURL); o.ServerSelectionTimeout != nil && *o.ServerSelectionTimeout > 0 {
		timeout = *o.ServerSelectionTimeout
	}
	client, err := mongox.Connect(ctx, cfg.DBURL, timeout)
	if err != nil {
		return err // names the database, never its password
	}
	m.Client = client
	dbName := mongox.DatabaseName(cfg.DBURL, "noti")
	m.Store = mongostore.New(client.Database(dbName))
	ictx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	err = m.Store.EnsureIndexes(ictx)
	cancel()
	if err != nil {
		return fmt.Errorf("database %s: %w", mongox.Redact(cfg.DBURL), err)
	}

	setup := m.SetupTelemetry
	if setup == nil {
		setup = func(ctx context.Context) (func(context.Context) error, error) {
			return telemetry.Setup(ctx, "notification", version)
		}
	}
	if m.stopTelemetry, err = setup(ctx); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	m.Server = httpapi.New(m.Store, httpapi.Options{
		Token:    cfg.APIToken,
		Logger:   log,
		StatsTTL: cfg.MetricsStatsTTL,
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
	log.Info("notification service listening", "addr", m.Server.Addr(), "db", mongox.Redact(cfg.DBURL),
		"database", dbName, "auth", cfg.APIToken != "", "env", cfg.AppEnv, "version", version)
	return nil
}

// awaitServing returns once the server answers /healthz, so that a Close right after Run
// cannot miss the listener (fasthttp only learns of it inside Serve).
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

// Done is closed when the server stops serving (after Close, or on its own); Err then says why.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is the server's error once Done is closed (nil after a clean Close).
func (m *Main) Err() error {
	if m.done == nil {
		return nil
	}
	<-m.done
	return m.serveErr
}

// Close drains in-flight requests (after SHUTDOWN_DELAY with /readyz failing), then flushes
// traces and disconnects from the database. It is safe after a failed Run, and idempotent.
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
	log := logging.New(cfg.LogLevel, "notification")
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := &Main{Config: cfg, Logger: log}
	if err := m.Run(ctx); err != nil {
		log.Error("notification service cannot start", "error", err.Error())
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
	stop() // a second signal ends the process at once
	if err := m.Close(); err != nil {
		log.Error("shutdown incomplete", "error", err.Error())
		code = 1
	}
	if code == 0 {
		log.Info("notification service stopped")
	}
	os.Exit(code)
}
