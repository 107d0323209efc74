// Package mongox connects to MongoDB (or the FerretDB dev database), creates indexes, traces
// every command, and recognises the errors the stores act on.
package mongox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// DefaultURL is the database `make run` starts.
const DefaultURL = "mongodb://127.0.0.1:27017/"

// Connect opens a client and checks that the server answers within timeout (or the URI's
// serverSelectionTimeoutMS). Errors never contain the password of the URI.
func Connect(ctx context.Context, uri string, timeout time.Duration) (*mongo.Client, error) {
	return ConnectPool(ctx, uri, timeout, 0)
}

// ConnectPool is Connect with a pool of at most pool connections (0: the URI's maxPoolSize,
// else 64), whatever the URI says: e.g. a client of its own for small, latency-sensitive work
// (a clock's round trips, leases) that must not queue behind the application's.
func ConnectPool(ctx context.Context, uri string, timeout time.Duration, pool uint64) (*mongo.Client, error) {
	opts := options.Client().ApplyURI(uri)
	if pool > 0 {
		opts.SetMaxPoolSize(pool)
	}
	if t := opts.ServerSelectionTimeout; t != nil && *t > 0 {
		timeout = *t // serverSelectionTimeoutMS in the URI wins
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts = opts.SetServerSelectionTimeout(timeout).
		SetConnectTimeout(timeout).
		SetMonitor(newTracer())
	if opts.MaxPoolSize == nil {
		opts.SetMaxPoolSize(64)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("database %s: %s", Redact(uri), scrub(err, uri))
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("database %s unreachable: %s", Redact(uri), scrub(err, uri))
	}
	return client, nil
}

// scrub removes the URI (and so its password) from a driver error message.
func scrub(err error, uri string) string {
	msg := err.Error()
	if uri != "" {
		msg = strings.ReplaceAll(msg, uri, Redact(uri))
	}
	if u, perr := url.Parse(uri); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// Redact returns uri without its password, for logs and errors.
func Redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparseable database URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	return u.String()
}

// DatabaseName is the database named in the URI path, or def.
func DatabaseName(uri, def string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return def
	}
	if name := strings.Trim(u.Path, "/"); name != "" {
		return name
	}
	return def
}

// IsDuplicateKey reports whether err is a unique-index violation (E11000).
func IsDuplicateKey(err error) bool {
	return err != nil && mongo.IsDuplicateKeyError(err)
}

// IsUnavailable reports whether err means the database could not be reached.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	// A connection lost mid-command comes back as a CommandError (a ServerError) labelled as
	// a network error: the labels decide before the type.
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// A pool cleared after another operation's network error fails the operations waiting on
	// it, whatever error type carries it.
	msg := err.Error()
	if strings.Contains(msg, "connection pool") && strings.Contains(msg, "cleared") {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		return false
	}
	return strings.Contains(msg, "server selection")
}

// EnsureIndexes creates the given indexes (idempotent: existing ones are kept).
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	if len(models) == 0 {
		return nil
	}
	if _, err := coll.Indexes().CreateMany(ctx, models); err != nil {
		return fmt.Errorf("indexes on %s: %w", coll.Name(), err)
	}
	return nil
}

// tracer turns driver command events into client spans.
type tracer struct {
	t     trace.Tracer
	spans sync.Map // request id -> trace.Span
}

func newTracer() *event.CommandMonitor {
	tr := &tracer{t: otel.Tracer("cineflow/mongo")}
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			if !trace.SpanContextFromContext(ctx).IsValid() {
				return // only trace commands that belong to a traced operation
			}
			_, span := tr.t.Start(ctx, e.CommandName+" "+e.DatabaseName, trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("db.system", "mongodb"),
					attribute.String("db.operation.name", e.CommandName),
					attribute.String("db.namespace", e.DatabaseName)))
			tr.spans.Store(e.RequestID, span)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			if s, ok := tr.spans.LoadAndDelete(e.RequestID); ok {
				s.(trace.Span).End()
			}
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			if s, ok := tr.spans.LoadAndDelete(e.RequestID); ok {
				span := s.(trace.Span)
				span.SetStatus(codes.Error, e.Failure.Error())
				span.End()
			}
		},
	}
}
