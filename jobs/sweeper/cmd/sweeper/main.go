// Command sweeper runs one sweep over the notification database, then exits: 0 when the
// sweep did its job (even if some emails failed; they are recorded), 1 when it could not
// (bad configuration, database unreachable, the provider refusing the API key, or nothing
// delivered while the provider failed the sweep's requests). Kubernetes then shows the Job
// failed; the chart's backoffLimit is 0, and a retried sweep re-sends a batch only under its
// idempotency key, so a non-zero exit never causes a second email.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/devmail"
	"github.com/cineflow/cineflow/jobs/sweeper/mongostore"
	"github.com/cineflow/cineflow/jobs/sweeper/pushmetrics"
	"github.com/cineflow/cineflow/jobs/sweeper/resendmail"
	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/logging"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/pkg/telemetry"
)

// version is stamped at build time (-ldflags "-X main.version=...").
var version = "dev"

// Config is read from the environment (and .env).
type Config struct {
	config.Common
	DBURL          string        `env:"DB_URL" envDefault:"mongodb://127.0.0.1:27017/"`
	DBTimeout      time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"10s"`
	ResendAPIKey   string        `env:"RESEND_API_KEY"`
	ResendBaseURL  string        `env:"RESEND_BASE_URL"`
	EmailFrom      string        `env:"EMAIL_FROM" envDefault:"CineFlow <onboarding@resend.dev>"`
	RateLimit      float64       `env:"RESEND_RATE_LIMIT" envDefault:"2"`
	MaxAttempts    int           `env:"MAX_ATTEMPTS" envDefault:"8"`
	Deadline       time.Duration `env:"SWEEP_DEADLINE" envDefault:"90s"`
	SendTimeout    time.Duration `env:"SEND_TIMEOUT" envDefault:"30s"`
	Concurrency    int           `env:"SWEEP_CONCURRENCY" envDefault:"4"`
	BatchSize      int           `env:"BATCH_SIZE" envDefault:"100"`
	PageSize       int           `env:"SWEEP_PAGE_SIZE" envDefault:"1000"`
	BackoffBase    time.Duration `env:"RETRY_BACKOFF_BASE" envDefault:"30s"`
	BackoffMax     time.Duration `env:"RETRY_BACKOFF_MAX" envDefault:"1h"`
	LeaseMargin    time.Duration `env:"LEASE_MARGIN" envDefault:"30s"`
	ProjectFor     time.Duration `env:"PROJECT_FOR" envDefault:"10s"`
	DBShare        float64       `env:"SWEEP_DB_SHARE" envDefault:"0.25"`
	ProjectShare   float64       `env:"PROJECT_DB_SHARE" envDefault:"0.25"`
	DBConcurrency  int           `env:"SWEEP_DB_CONCURRENCY" envDefault:"1"`
	PushgatewayURL string        `env:"PUSHGATEWAY_URL"`
	Namespace      string        `env:"POD_NAMESPACE"`
	Release        string        `env:"CINEFLOW_RELEASE"`
	OutboxDir      string        `env:"OUTBOX_DIR" envDefault:".outbox"`
}

// Validate rejects settings the sweep cannot work with.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Production() && c.ResendAPIKey == "" {
		errs = append(errs, config.RequiredInProduction("RESEND_API_KEY", "without it emails are only logged, never sent"))
	}
	if strings.TrimSpace(c.EmailFrom) == "" {
		errs = append(errs, errors.New("EMAIL_FROM must name the sender, e.g. CineFlow <tickets@example.com>"))
	}
	if c.RateLimit <= 0 {
		errs = append(errs, errors.New("RESEND_RATE_LIMIT must be > 0 requests per second"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("MAX_ATTEMPTS must be at least 1"))
	}
	if c.Deadline < time.Second {
		errs = append(errs, errors.New("SWEEP_DEADLINE must be at least 1s"))
	}
	if c.BatchSize < 1 || c.BatchSize > sweeper.MaxBatch {
		errs = append(errs, fmt.Errorf("BATCH_SIZE must be from 1 to %d", sweeper.MaxBatch))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("SWEEP_CONCURRENCY must be at least 1"))
	}
	if c.DBShare <= 0 || c.DBShare > 1 {
		errs = append(errs, errors.New("SWEEP_DB_SHARE must be a fraction of the time, above 0 and at most 1 (1: no bound)"))
	}
	if c.DBConcurrency < 1 {
		errs = append(errs, errors.New("SWEEP_DB_CONCURRENCY must be at least 1"))
	}
	if c.ProjectShare <= 0 || c.ProjectShare > 1 {
		errs = append(errs, errors.New("PROJECT_DB_SHARE must be a fraction of the time, above 0 and at most 1 (1: no bound)"))
	}
	return errors.Join(errs...)
}

// program describes the binary for --help and --version.
func program() config.Program {
	return config.Program{Name: "sweeper", Version: version, Config: []any{&Config{}}, Env: telemetry.Env, Summary: `
The CineFlow sweeper: runs one sweep over the notification database (DB_URL) and exits. A sweep
delivers the PENDING e-mail tickets through the Resend API (RESEND_API_KEY; without it, a dev
mailer logs each e-mail and writes it to OUTBOX_DIR) and marks them SUCCESS or FAILED. A
Kubernetes CronJob runs it every 2 minutes. Exit 0 when the sweep did its job, 1 when it could
not (including a sweep that delivered nothing while the provider failed its requests). The run's
figures go to PUSHGATEWAY_URL, grouped by POD_NAMESPACE and CINEFLOW_RELEASE when they are set.`}
}

func main() {
	if done, code := config.ParseArgs(program(), nil, os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Stderr))
}

// run performs one sweep and returns the exit code.
func run(ctx context.Context, logOut *os.File) int {
	var cfg Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(logOut, "sweeper:", err)
		return 1
	}
	log := logging.NewTo(logOut, cfg.LogLevel, "sweeper")
	if err := cfg.Validate(); err != nil {
		log.Error("bad configuration", "error", err.Error())
		return 1
	}
	shutdown, err := telemetry.Setup(ctx, "sweeper", version)
	if err != nil {
		log.Error("telemetry", "error", err.Error())
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()

	rep, err := sweep(ctx, cfg, log)
	success := err == nil
	if cfg.PushgatewayURL != "" {
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		client := &http.Client{Timeout: 10 * time.Second}
		group := pushmetrics.Group{Namespace: cfg.Namespace, Release: cfg.Release, Version: version}
		if perr := pushmetrics.Push(pctx, cfg.PushgatewayURL, group, rep, success, client); perr != nil {
			log.Warn("could not push metrics to the Pushgateway", "error", perr.Error())
		}
		cancel()
	}
	if err != nil {
		log.Error("sweep failed", "error", err.Error())
		return 1
	}
	return 0
}

func sweep(ctx context.Context, cfg Config, log *slog.Logger) (sweeper.Report, error) {
	client, err := mongox.Connect(ctx, cfg.DBURL, cfg.DBTimeout)
	if err != nil {
		if cfg.DBURL == mongox.DefaultURL {
			err = fmt.Errorf("%w (is `make run` running? it serves the dev database there)", err)
		}
		return sweeper.Report{}, err
	}
	defer client.Disconnect(context.Background())
	store := mongostore.New(client.Database(mongox.DatabaseName(cfg.DBURL, "noti")))
	if err := store.EnsureIndexes(ctx); err != nil {
		return sweeper.Report{}, err
	}
	if mig, err := store.MigrateLegacy(ctx); err != nil {
		return sweeper.Report{}, fmt.Errorf("migrating the delivery records: %w", err)
	} else if mig.Done {
		log.Info("delivery records migrated to the work queues", "queued", mig.Queued, "reopened_batches", mig.Reopened,
			"idempotency_keys", mig.Idempotent)
	}

	var mailer sweeper.Mailer
	if cfg.ResendAPIKey == "" {
		log.Info("RESEND_API_KEY is not set: emails are logged and written to OUTBOX_DIR, not sent", "outbox", cfg.OutboxDir)
		mailer = devmail.New(log, cfg.OutboxDir)
	} else {
		mailer = resendmail.New(cfg.ResendAPIKey, cfg.ResendBaseURL, cfg.SendTimeout, telemetry.Transport(nil))
	}
	s := sweeper.New(store, mailer, sweeper.Config{
		From: cfg.EmailFrom, BatchSize: cfg.BatchSize, PageSize: cfg.PageSize, MaxAttempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, Deadline: cfg.Deadline, SendTimeout: cfg.SendTimeout,
		Concurrency: cfg.Concurrency, RateLimit: cfg.RateLimit, LeaseMargin: cfg.LeaseMargin, ProjectFor: cfg.ProjectFor,
		DBShare: cfg.DBShare, ProjectShare: cfg.ProjectShare, DBConcurrency: cfg.DBConcurrency, Logger: log,
	})
	return s.Run(ctx)
}
