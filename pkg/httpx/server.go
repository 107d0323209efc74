package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cineflow/cineflow/pkg/telemetry"
)

// Options configure a Server.
type Options struct {
	// Name names the app and the tracer ("cineflow/<Name>").
	Name string
	// Metrics names the service in its metrics: cineflow_<Metrics>_http_requests_total …, and
	// cineflow_build_info{service="<Metrics>"} (default Name).
	Metrics string
	// Version is the binary's version, in cineflow_build_info.
	Version string
	Logger  *slog.Logger
	// BodyLimit is the largest request body in bytes (default 1 MiB); larger answers 413,
	// decided from Content-Length before reading when it is given (see body.go).
	BodyLimit int
	// DiscardLimit bounds what is read and thrown away after a refused body, so that a client
	// that writes its whole body before reading gets the answer (default 64 MiB); the
	// discarding also stops after ReadTimeout.
	DiscardLimit int
	ReadTimeout  time.Duration // default 10s
	WriteTimeout time.Duration // default 10s
	IdleTimeout  time.Duration // default 60s
	// Ready reports whether the dependencies (the database) answer; /readyz calls it.
	Ready func(ctx context.Context) error
	// Registry receives the HTTP and Go runtime metrics; /metrics serves it. Nil makes one.
	Registry *prometheus.Registry
	// MetricsAddr, when set (host:port), serves /metrics on a listener of its own instead of
	// the API's port, so that nothing routed to the API (an Ingress, a public Service) reaches
	// it. Empty: /metrics is served on the API's port.
	MetricsAddr string
}

// Server is a Fiber app with the shared middleware and endpoints.
type Server struct {
	App      *fiber.App
	Registry *prometheus.Registry

	log            *slog.Logger
	opts           Options
	ln             net.Listener
	metrics        *http.Server // /metrics on MetricsAddr (nil: on the API's port)
	metricsLn      net.Listener
	draining       atomic.Bool
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	internalErrors prometheus.Counter
	done           chan struct{} // closed when Serve returns (after Start)
	serveErr       error
}

// NewServer builds the app. Register routes on s.App, then Listen and Serve.
func NewServer(opts Options) *Server {
	if opts.BodyLimit == 0 {
		opts.BodyLimit = 1 << 20
	}
	if opts.DiscardLimit == 0 {
		opts.DiscardLimit = defaultDiscardLimit
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 10 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Metrics == "" {
		opts.Metrics = opts.Name
	}
	prefix := "cineflow_" + opts.Metrics
	s := &Server{Registry: opts.Registry, log: opts.Logger, opts: opts}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prefix + "_http_requests_total",
		Help: "HTTP requests by route template, method and status code.",
	}, []string{"route", "method", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    prefix + "_http_request_duration_seconds",
		Help:    "HTTP request latency by route template and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method"})
	s.internalErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: prefix + "_http_internal_errors_total",
		Help: "Requests answered 500 because of an unexpected error or panic.",
	})
	opts.Registry.MustRegister(s.requests, s.duration, s.internalErrors, telemetry.BuildInfo(opts.Metrics, opts.Version))

	s.App = fiber.New(fiber.Config{
		AppName:   opts.Name,
		BodyLimit: opts.BodyLimit,
		// Bodies are read by guardBody, never by fasthttp before the handlers (body.go).
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  opts.ReadTimeout,
		WriteTimeout:                 opts.WriteTimeout,
		IdleTimeout:                  opts.IdleTimeout,
		DisableStartupMessage:        true,
		ErrorHandler:                 s.errorHandler,
	})
	s.App.Use(requestid.New(requestid.Config{Generator: newRequestID}))
	s.App.Use(s.observe)
	s.App.Use(recover.New(recover.Config{EnableStackTrace: true, StackTraceHandler: s.logPanic}))
	s.App.Use(s.guardBody) // before any handler or wrapper reads a body

	s.App.Get("/healthz", func(c *fiber.Ctx) error { return OK(c, 200, fiber.Map{"status": "ok"}, "alive") })
	s.App.Get("/readyz", s.readyz)
	metrics := promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry})
	if opts.MetricsAddr == "" {
		s.App.Get("/metrics", adaptor.HTTPHandler(metrics))
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: opts.ReadTimeout,
			WriteTimeout: opts.WriteTimeout, IdleTimeout: opts.IdleTimeout}
	}
	return s
}

func (s *Server) logPanic(c *fiber.Ctx, e any) {
	s.log.ErrorContext(c.UserContext(), "panic in handler", "panic", e, "route", c.Route().Path, "request_id", requestID(c))
}

var reqSeq atomic.Uint64
var reqPrefix = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

func newRequestID() string {
	return reqPrefix + "-" + strconv.FormatUint(reqSeq.Add(1), 36)
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.draining.Load() {
		return Fail(c, fiber.StatusServiceUnavailable, "shutting down", "shutting down")
	}
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			s.log.Warn("readiness check failed", "error", err.Error())
			return Fail(c, fiber.StatusServiceUnavailable, "database unreachable", "not ready")
		}
	}
	return OK(c, 200, fiber.Map{"status": "ready"}, "ready")
}

// headerCarrier lets the propagator read fasthttp request headers.
type headerCarrier struct{ c *fiber.Ctx }

func (h headerCarrier) Get(key string) string { return h.c.Get(key) }
func (h headerCarrier) Set(string, string)    {}
func (h headerCarrier) Keys() []string        { return nil }

// observe times every request, counts it by route template (never the raw path) and wraps it
// in a server span that continues the caller's W3C trace context.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	path := c.Path()
	if path == "/metrics" || path == "/healthz" || path == "/readyz" {
		return c.Next()
	}
	ctx := otel.GetTextMapPropagator().Extract(c.UserContext(), headerCarrier{c})
	ctx, span := otel.Tracer("cineflow/"+s.opts.Name).Start(ctx, c.Method(), trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	c.SetUserContext(ctx)

	err := c.Next()
	if err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	route := c.Route().Path
	method := c.Route().Method
	if fe := (*fiber.Error)(nil); errors.As(err, &fe) && fe.Code == fiber.StatusNotFound && strings.HasPrefix(fe.Message, "Cannot ") {
		route = "unmatched"
	}
	if method == "USE" || method == "" {
		method = "OTHER"
	}
	code := strconv.Itoa(status)
	s.requests.WithLabelValues(route, method, code).Inc()
	s.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status),
		attribute.String("http.request.method", method))
	if status >= 500 {
		span.SetStatus(codes.Error, code)
	}
	return nil
}

// TraceParent returns the W3C traceparent of the request's span ("" when none).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// Listen binds addr ("127.0.0.1:0" for tests).
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.metrics != nil {
		mln, err := net.Listen("tcp", s.opts.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics: %w", err)
		}
		s.metricsLn = mln
	}
	s.ln = &lingerListener{Listener: ln, discard: int64(s.opts.DiscardLimit), timeout: s.opts.ReadTimeout}
	return nil
}

// Addr is the bound address, after Listen.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// MetricsAddr is the address /metrics is served on, after Listen: Addr unless
// Options.MetricsAddr gave it a listener of its own.
func (s *Server) MetricsAddr() string {
	if s.metricsLn != nil {
		return s.metricsLn.Addr().String()
	}
	return s.Addr()
}

// Serve serves until Shutdown (and /metrics on its own listener, if it has one).
func (s *Server) Serve() error {
	if s.metricsLn != nil {
		go func() {
			if err := s.metrics.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics listener stopped", "error", err.Error())
			}
		}()
	}
	return s.App.Listener(s.ln)
}

// Shutdown fails readiness, waits delay (so load balancers stop sending), then stops
// accepting connections and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context, delay time.Duration) error {
	s.draining.Store(true)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
	}
	err := s.App.ShutdownWithContext(ctx)
	if s.metricsLn != nil {
		// Scraped to the end: the metrics stop with the API, not before.
		err = errors.Join(err, s.metrics.Shutdown(ctx))
	}
	return err
}
