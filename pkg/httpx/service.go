package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Settings is the HTTP part of every service's environment; services embed it in their
// Config (PORT stays with each service: its default differs).
type Settings struct {
	// Host is the interface to listen on ("" means all).
	Host string `env:"HOST"`
	// ShutdownDelay keeps serving (with /readyz failing) before draining, so load balancers
	// stop sending first; ShutdownTimeout bounds the drain of in-flight requests.
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	BodyLimit       int           `env:"BODY_LIMIT" envDefault:"1048576"`
	ReadTimeout     time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"10s"`
	WriteTimeout    time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"10s"`
	IdleTimeout     time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`
	// MetricsPort serves /metrics on a port of its own (on Host), so that nothing that reaches
	// the API reaches the metrics; 0 serves them on the API's port.
	MetricsPort int `env:"METRICS_PORT" envDefault:"0"`
}

// Validate checks the settings and the service's port.
func (s Settings) Validate(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("PORT must be from 0 to 65535, not %d", port)
	}
	if s.BodyLimit <= 0 {
		return errors.New("BODY_LIMIT must be a positive number of bytes")
	}
	if s.MetricsPort < 0 || s.MetricsPort > 65535 {
		return fmt.Errorf("METRICS_PORT must be from 0 to 65535, not %d", s.MetricsPort)
	}
	if s.MetricsPort != 0 && s.MetricsPort == port {
		return fmt.Errorf("METRICS_PORT must differ from PORT (%d): 0 serves the metrics on PORT", port)
	}
	return nil
}

// Options returns server options with these limits (name, logger and readiness are the
// service's).
func (s Settings) Options() Options {
	o := Options{BodyLimit: s.BodyLimit, ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout, IdleTimeout: s.IdleTimeout}
	if s.MetricsPort != 0 {
		o.MetricsAddr = net.JoinHostPort(s.Host, fmt.Sprint(s.MetricsPort))
	}
	return o
}

// Start listens on host:port, serves in the background and returns once the server
// answers /healthz (fasthttp only learns of the listener inside Serve, so a Stop right
// after Start could otherwise miss it). Port 0 picks a free port: see Addr.
func (s *Server) Start(ctx context.Context, host string, port int) error {
	if err := s.Listen(net.JoinHostPort(host, fmt.Sprint(port))); err != nil {
		return fmt.Errorf("listen on port %d: %w", port, err)
	}
	s.done = make(chan struct{})
	go func() {
		s.serveErr = s.Serve()
		close(s.done)
	}()
	h, p, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(h, p) + "/healthz"
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
		case <-s.done:
			return fmt.Errorf("serve on %s: %w", s.Addr(), s.serveErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server on %s did not answer within 10s: %w", s.Addr(), err)
		}
	}
}

// Done is closed when the server stops serving (after Stop, or on its own; nil before Start).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped, once Done is closed (nil after a clean Stop).
func (s *Server) Err() error {
	if s.done == nil {
		return nil
	}
	<-s.done
	return s.serveErr
}

// Stop drains a started server (see Shutdown) and waits until it has stopped serving.
// It does nothing for a server that was never started.
func (s *Server) Stop(ctx context.Context, delay time.Duration) error {
	if s == nil || s.done == nil {
		return nil
	}
	var errList []error
	if err := s.Shutdown(ctx, delay); err != nil {
		errList = append(errList, fmt.Errorf("http shutdown: %w", err))
	}
	select {
	case <-s.done:
		if s.serveErr != nil {
			errList = append(errList, fmt.Errorf("http: %w", s.serveErr))
		}
	case <-ctx.Done():
		errList = append(errList, errors.New("http: server did not stop in time"))
	}
	return errors.Join(errList...)
}

// Service is what a service's Main offers to RunMain.
type Service interface {
	Run(ctx context.Context) error
	Done() <-chan struct{}
	Err() error
	Close() error
}

// RunMain runs a service until SIGINT or SIGTERM and returns the process exit code: 1 if it
// cannot start, stops on its own, or does not shut down cleanly.
func RunMain(name string, log *slog.Logger, svc Service, s Settings) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error(name+" service cannot start", "error", err.Error())
		_ = svc.Close()
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "delay", s.ShutdownDelay.String(),
			"timeout", s.ShutdownTimeout.String())
	case <-svc.Done():
		log.Error("HTTP server stopped unexpectedly", "error", fmt.Sprint(svc.Err()))
		code = 1
	}
	stop() // a second signal ends the process at once
	if err := svc.Close(); err != nil {
		log.Error("shutdown incomplete", "error", err.Error())
		code = 1
	}
	if code == 0 {
		log.Info(name + " service stopped")
	}
	return code
}

// Base is the part of a service's Main that every service shares: its server, and what to
// close after the server has drained (telemetry, the database), in order. Embed it.
type Base struct {
	Server *Server

	settings  Settings
	closers   []func(context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// OnClose adds f to what Close runs after the server has drained. Close runs them in reverse
// order (last added first), so what was started on a resource stops before the resource closes.
func (b *Base) OnClose(f func(context.Context) error) { b.closers = append(b.closers, f) }

// Start starts b.Server (which the service has built) on s.Host and port, and remembers s's
// shutdown timing for Close.
func (b *Base) Start(ctx context.Context, s Settings, port int) error {
	b.settings = s
	return b.Server.Start(ctx, s.Host, port)
}

// Addr is the address the service listens on, after Run.
func (b *Base) Addr() string { return b.Server.Addr() }

// Done is closed when the server stops serving (after Close, or on its own); Err then says why.
func (b *Base) Done() <-chan struct{} {
	if b.Server == nil {
		return nil
	}
	return b.Server.Done()
}

// Err is the server's error once Done is closed (nil after a clean Close).
func (b *Base) Err() error {
	if b.Server == nil {
		return nil
	}
	return b.Server.Err()
}

// Close drains in-flight requests (after SHUTDOWN_DELAY with /readyz failing), then runs the
// OnClose functions. It is safe after a failed Run, and idempotent.
func (b *Base) Close() error {
	b.closeOnce.Do(func() {
		s := b.settings
		if s.ShutdownTimeout <= 0 {
			s.ShutdownTimeout = 20 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.ShutdownDelay+s.ShutdownTimeout)
		defer cancel()
		errList := []error{b.Server.Stop(ctx, s.ShutdownDelay)}
		for i := len(b.closers) - 1; i >= 0; i-- {
			errList = append(errList, b.closers[i](ctx))
		}
		b.closeErr = errors.Join(errList...)
	})
	return b.closeErr
}
