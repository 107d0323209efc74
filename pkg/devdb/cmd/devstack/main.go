// Command devstack is what `make run` runs: the whole CineFlow system on one machine.
//
// It starts the embedded database (unless DB_URL names one), then each service as a child
// process, waiting for its /readyz, then runs the sweeper once right away and every
// SWEEP_INTERVAL, as the Kubernetes CronJob does in production. Children get this process's
// environment plus the few variables that wire them together (and APP_ENV=development unless
// the user set APP_ENV: the binaries default to production); their output is shown with
// their name in front. Ctrl-C (or SIGTERM) stops every child, then the database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/joho/godotenv"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/devdb"
)

// version is stamped at build time (-ldflags "-X main.version=...").
var version = "dev"

const (
	devToken        = "dev-notification-token"
	devJWTSecret    = "dev-jwt-secret-not-for-production"
	devAdminEmail   = "admin@cineflow.local"
	devAdminPass    = "dev-admin-password"
	notificationAPI = "/notiservice/api/v1/notifications"
	readyTimeout    = 30 * time.Second
	stopTimeout     = 10 * time.Second // SIGTERM, then kill
)

// settings are what devstack reads from the environment (and .env).
type settings struct {
	DBURL            string // "" starts the embedded database
	Token            string
	DevToken         bool // Token is the built-in dev value
	NotificationPort int
	Interval         time.Duration
	OutboxDir        string
	Resend           bool // RESEND_API_KEY is set: the sweeper sends for real
	JWTSecret        string
	NotificationURL  string // what core calls
	AdminEmail       string // core's first admin
	AdminPassword    string
	DevAdmin         bool // the admin is devstack's default (printed)
	// Projection is core's BOOKING_PROJECTION: off by default on the embedded database, where
	// every update scans its collection (the core never needs it; see docs/configuration.md).
	Projection string
	// AppEnv is the children's APP_ENV: development, unless the user set one. The binaries
	// default to production (they refuse to start without their secrets); `make run` is the
	// development stack.
	AppEnv string
}

// loadSettings reads the settings through lookup (the environment, then .env).
func loadSettings(lookup func(string) string) (settings, error) {
	s := settings{DBURL: lookup("DB_URL"), Token: lookup("NOTIFICATION_API_TOKEN"),
		OutboxDir: lookup("OUTBOX_DIR"), Resend: lookup("RESEND_API_KEY") != "",
		JWTSecret: lookup("JWT_SECRET"), NotificationURL: lookup("NOTIFICATION_SERVICE_URL"),
		AdminEmail: lookup("ADMIN_EMAIL"), AdminPassword: lookup("ADMIN_PASSWORD"),
		Projection: lookup("BOOKING_PROJECTION"), AppEnv: lookup("APP_ENV")}
	if s.AppEnv == "" {
		s.AppEnv = "development"
	}
	if s.Projection == "" && s.DBURL == "" {
		s.Projection = "false"
	}
	if s.AdminEmail == "" && s.AdminPassword == "" {
		s.AdminEmail, s.AdminPassword, s.DevAdmin = devAdminEmail, devAdminPass, true
	}
	var err error
	if s.Interval, err = parseInterval(lookup("SWEEP_INTERVAL")); err != nil {
		return s, err
	}
	s.NotificationPort = 3001
	if p := lookup("PORT"); p != "" {
		if s.NotificationPort, err = strconv.Atoi(p); err != nil || s.NotificationPort < 1 || s.NotificationPort > 65535 {
			return s, fmt.Errorf("PORT must be a port number from 1 to 65535, not %q", p)
		}
	}
	if s.Token == "" {
		s.Token, s.DevToken = devToken, true
	}
	if s.OutboxDir == "" {
		s.OutboxDir = ".outbox"
	}
	if s.JWTSecret == "" {
		s.JWTSecret = devJWTSecret
	}
	if s.NotificationURL == "" {
		s.NotificationURL = fmt.Sprintf("http://127.0.0.1:%d%s", s.NotificationPort, notificationAPI)
	}
	return s, nil
}

// parseInterval parses SWEEP_INTERVAL: a Go duration ("2m", "30s"), 2m when empty.
func parseInterval(v string) (time.Duration, error) {
	if v == "" {
		return 2 * time.Minute, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("SWEEP_INTERVAL must be a positive Go duration such as 2m or 30s, not %q", v)
	}
	return d, nil
}

// service is a long-running child process. Adding one to the stack is one more entry in
// services.
type service struct {
	Name     string
	Bin      string
	Port     int
	Base     string            // path printed after the address
	Env      map[string]string // set on top of the passed-through environment
	Optional bool              // skipped when its binary does not exist
}

// services lists the services in start order.
func services(s settings, notificationBin, coreBin string) []service {
	list := []service{
		{Name: "notification", Bin: notificationBin, Port: s.NotificationPort, Base: notificationAPI,
			Env: map[string]string{"DB_URL": s.DBURL, "PORT": strconv.Itoa(s.NotificationPort),
				"NOTIFICATION_API_TOKEN": s.Token, "APP_ENV": s.AppEnv}},
		{Name: "core", Bin: coreBin, Port: 3000, Base: "/mba/api/v1", Optional: true,
			Env: map[string]string{"DB_URL": s.DBURL, "PORT": "3000", "JWT_SECRET": s.JWTSecret, "APP_ENV": s.AppEnv,
				"ADMIN_EMAIL": s.AdminEmail, "ADMIN_PASSWORD": s.AdminPassword,
				"NOTIFICATION_SERVICE_URL": s.NotificationURL, "NOTIFICATION_API_TOKEN": s.Token}},
	}
	if s.Projection != "" {
		list[1].Env["BOOKING_PROJECTION"] = s.Projection
	}
	return list
}

// sweeperEnv is what the sweeper gets on top of the environment (RESEND_* and EMAIL_FROM pass
// through as they are).
func sweeperEnv(s settings) map[string]string {
	return map[string]string{"DB_URL": s.DBURL, "OUTBOX_DIR": s.OutboxDir, "APP_ENV": s.AppEnv}
}

// program describes devstack for --help and --version: it reads its settings with lookup (below),
// not through config structs, so they are listed here.
var program = config.Program{Name: "devstack", Version: version, Summary: `
What make run runs: the whole CineFlow system on this machine. It starts the embedded database
(unless DB_URL names one), the notification service and the core service as child processes,
waiting for each one's /readyz, then runs the sweeper now and every SWEEP_INTERVAL. Every other
variable passes through to the children (see their --help). Ctrl-C stops everything.`,
	Env: [][2]string{
		{"DB_URL", "(unset) a MongoDB to use instead of the embedded database"},
		{"DEVDB_ADDR", "127.0.0.1:27017 (or --db-addr)"},
		{"DEVDB_DIR", ".data/devdb (or --db-dir)"},
		{"SWEEP_INTERVAL", "2m"},
		{"PORT", "3001 (the notification service's port)"},
		{"NOTIFICATION_API_TOKEN", devToken},
		{"NOTIFICATION_SERVICE_URL", "http://127.0.0.1:<PORT>" + notificationAPI},
		{"JWT_SECRET", "a development key"},
		{"ADMIN_EMAIL", devAdminEmail},
		{"ADMIN_PASSWORD", devAdminPass},
		{"OUTBOX_DIR", ".outbox"},
		{"RESEND_API_KEY", "(unset) set: the sweeper sends real e-mail"},
		{"BOOKING_PROJECTION", "false on the embedded database"},
		{"APP_ENV", "development"},
	}}

func main() {
	dotenv, err := godotenv.Read() // .env in the working directory, as every binary reads it
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "devstack: .env:", err)
		os.Exit(1)
	}
	lookup := func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
		return dotenv[k]
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	dbAddr := fs.String("db-addr", or(lookup("DEVDB_ADDR"), "127.0.0.1:27017"), "embedded database listen address (env DEVDB_ADDR)")
	dbDir := fs.String("db-dir", or(lookup("DEVDB_DIR"), ".data/devdb"), "embedded database data directory (env DEVDB_DIR)")
	notificationBin := fs.String("notification", "./bin/notification", "notification service binary")
	coreBin := fs.String("core", "./bin/core", "core service binary (skipped if missing)")
	sweeperBin := fs.String("sweeper", "./bin/sweeper", "sweeper binary")
	if done, code := config.ParseArgs(program, fs, os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}

	s, err := loadSettings(lookup)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
	os.Exit(run(s, *dbAddr, *dbDir, *sweeperBin, services(s, *notificationBin, *coreBin)))
}

// run starts everything, waits for a signal or a service's death, stops everything, and
// returns the exit code.
func run(s settings, dbAddr, dbDir, sweeperBin string, svcs []service) int {
	out := newOutput(os.Stdout)
	required := []string{sweeperBin}
	for _, svc := range svcs {
		if !svc.Optional {
			required = append(required, svc.Bin)
		}
	}
	for _, bin := range required {
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "devstack: %s not found: build it with `make build` (`make run` does)\n", bin)
			return 1
		}
	}
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()

	// Every child runs under childCtx: cancelling it sends each one SIGTERM (kill after 10s).
	childCtx, stopChildren := context.WithCancel(context.Background())
	var (
		db      *devdb.Server
		running []*child
		sweeps  sync.WaitGroup
	)
	// stopAll stops the children, then the database, and returns code; why (if any) is
	// printed last, on stderr.
	stopAll := func(code int, why string) int {
		stopChildren()
		for _, c := range running {
			<-c.done
			out.logf("devstack", "%s %s", c.name, c.how())
		}
		sweeps.Wait()
		if db != nil {
			db.Close()
			out.logf("devstack", "database stopped")
		}
		if why != "" {
			fmt.Fprintln(os.Stderr, "devstack: "+why)
		}
		return code
	}
	failf := func(format string, args ...any) int {
		if sigCtx.Err() != nil {
			return stopAll(0, "") // Ctrl-C during start-up
		}
		return stopAll(1, fmt.Sprintf(format, args...))
	}

	startedDB := ""
	if s.DBURL == "" {
		if err := portFree(dbAddr); err != nil {
			return failf("cannot start the embedded database: %s is already in use (another `make run`? a MongoDB?). "+
				"Stop it, or set DB_URL to use that database instead (or DEVDB_ADDR to listen elsewhere).", dbAddr)
		}
		out.logf("devstack", "starting the embedded database on %s (data in %s)", dbAddr, dbDir)
		logger := slog.New(slog.NewJSONHandler(out.writer("devdb"), &slog.HandlerOptions{Level: slog.LevelError})) // its warnings are protocol noise
		var err error
		if db, err = devdb.Start(sigCtx, devdb.Options{Addr: dbAddr, Dir: dbDir, Logger: logger}); err != nil {
			return failf("cannot start the embedded database: %v", err)
		}
		// SQLite has one writer: a few connections per process queue requests in the driver
		// instead of in SQLite's sleeping busy handler (far lower tail latency).
		s.DBURL = db.URI() + "?maxPoolSize=4"
		startedDB = dbDir
		for i := range svcs {
			svcs[i].Env["DB_URL"] = s.DBURL
		}
	}

	exited := make(chan *child, len(svcs))
	var skipped []service
	for _, svc := range svcs {
		if _, err := os.Stat(svc.Bin); err != nil && svc.Optional {
			skipped = append(skipped, svc)
			continue
		}
		if err := portFree(fmt.Sprintf(":%d", svc.Port)); err != nil {
			return failf("cannot start %s: port %d is already in use (another `make run`?)", svc.Name, svc.Port)
		}
		c, err := startChild(childCtx, svc.Name, svc.Bin, childEnv(os.Environ(), svc.Env), out)
		if err != nil {
			return failf("cannot start %s: %v", svc.Name, err)
		}
		running = append(running, c)
		go func() { <-c.done; exited <- c }()
		if err := waitReady(sigCtx, c, fmt.Sprintf("http://127.0.0.1:%d/readyz", svc.Port), readyTimeout); err != nil {
			return failf("%v", err)
		}
	}

	banner(out, s, startedDB, svcs, skipped)
	sweeps.Go(func() { sweepLoop(childCtx, sweeperBin, childEnv(os.Environ(), sweeperEnv(s)), s.Interval, out) })

	select {
	case <-sigCtx.Done():
		out.logf("devstack", "stopping: SIGTERM to every process (killed after %s)", stopTimeout)
		return stopAll(0, "")
	case c := <-exited:
		out.logf("devstack", "%s %s unexpectedly: stopping everything", c.name, c.how())
		return stopAll(1, c.name+" died, so everything was stopped: see its output above")
	}
}

// sweepLoop runs the sweeper now and then every interval (start to start; a sweep that
// overruns delays the next one) until ctx ends.
func sweepLoop(ctx context.Context, bin string, env []string, every time.Duration, out *output) {
	for {
		start := time.Now()
		c, err := startChild(ctx, "sweeper", bin, env, out)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			out.logf("devstack", "cannot run the sweeper: %v", err)
		} else {
			<-c.done
			if ctx.Err() != nil {
				out.logf("devstack", "sweeper %s", c.how())
				return
			}
			result := "done"
			if c.err != nil {
				result = "FAILED (" + c.err.Error() + ")"
			}
			out.logf("devstack", "sweep %s in %s; next sweep at %s", result,
				time.Since(start).Round(time.Millisecond), start.Add(every).Format("15:04:05"))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(every))):
		}
	}
}

// waitReady polls url until it answers 200, the child exits, or timeout passes.
func waitReady(ctx context.Context, c *child, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.After(timeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s %s before it was ready: see its output above", c.name, c.how())
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", c.name)
		case <-deadline:
			return fmt.Errorf("%s did not answer 200 on %s within %s (last: %s)", c.name, url, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// portFree reports an error if addr cannot be listened on.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// banner prints what runs where and how to try it. dbDir is the embedded database's
// directory, "" when DB_URL names the database.
func banner(out *output, s settings, dbDir string, svcs, skipped []service) {
	dbNote, stop := "from DB_URL; no embedded database started", "Stop: Ctrl-C (stops every process)"
	if dbDir != "" {
		dbNote = "embedded FerretDB, data in " + dbDir
		stop = "Stop: Ctrl-C (stops every process, then the database; its data stays in " + dbDir + ")"
	}
	u, tokenShown := s.DBURL, s.Token
	if p, err := url.Parse(s.DBURL); err == nil {
		u = p.Redacted()
	}
	if !s.DevToken {
		tokenShown = "$NOTIFICATION_API_TOKEN" // the user's own secret: not printed
	}
	api := fmt.Sprintf("http://127.0.0.1:%d%s", s.NotificationPort, notificationAPI)
	mail := "dev mailer: each email is logged below and written to " + s.OutboxDir + "/ (set RESEND_API_KEY to send for real)"
	if s.Resend {
		mail = "sent through Resend (RESEND_API_KEY is set)"
	}
	lines := []string{"", "CineFlow is running (devstack " + version + "):",
		fmt.Sprintf("  %-13s %s (%s)", "database", u, dbNote)}
	for _, svc := range svcs {
		if !slices.ContainsFunc(skipped, func(k service) bool { return k.Name == svc.Name }) {
			lines = append(lines, fmt.Sprintf("  %-13s http://127.0.0.1:%d%s", svc.Name, svc.Port, svc.Base))
		}
	}
	lines = append(lines, fmt.Sprintf("  %-13s Authorization: Bearer %s", "token", tokenShown))
	if s.DevAdmin && !slices.ContainsFunc(skipped, func(k service) bool { return k.Name == "core" }) {
		lines = append(lines, fmt.Sprintf("  %-13s %s / %s (dev default; set ADMIN_EMAIL and ADMIN_PASSWORD)", "core admin", s.AdminEmail, s.AdminPassword))
	}
	for _, svc := range skipped {
		lines = append(lines, fmt.Sprintf("  %-13s not started: %s does not exist", svc.Name, svc.Bin))
	}
	lines = append(lines,
		fmt.Sprintf("  %-13s now, then every %s (SWEEP_INTERVAL)", "sweeper", s.Interval),
		fmt.Sprintf("  %-13s %s", "emails", mail),
		"Try it:",
		fmt.Sprintf(`  curl -s -X POST %s -H "Authorization: Bearer %s" -H 'Content-Type: application/json' \`, api, tokenShown),
		`       -d '{"subject":"Hello","content":"It works","recepientEmails":["you@example.com"]}'`,
		fmt.Sprintf(`  curl -s %s -H "Authorization: Bearer %s"`, api, tokenShown),
		stop, "")
	for _, l := range lines {
		out.println(l)
	}
}
