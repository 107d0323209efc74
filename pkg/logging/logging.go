// Package logging builds the JSON slog logger every binary uses. Attributes whose key names a
// secret are replaced by "[REDACTED]", so a careless log line cannot leak one. A line logged
// with a context that holds an active span (the ...Context methods) carries its trace_id and
// span_id, so a log line leads to its trace and back. Keys are snake_case.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Levels are the values LOG_LEVEL takes.
var Levels = []string{"debug", "info", "warn", "error"}

// ParseLevel reads a LOG_LEVEL: one of Levels, in any case; empty is info. The error names
// the allowed values.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("LOG_LEVEL must be one of %s", strings.Join(Levels, ", "))
}

// New returns a JSON logger at the given level (see ParseLevel; an unknown level logs at
// info: configuration checks refuse it before).
func New(level string, service string) *slog.Logger {
	return NewTo(os.Stderr, level, service)
}

// NewTo is New writing to w.
func NewTo(w io.Writer, level string, service string) *slog.Logger {
	l, _ := ParseLevel(level)
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: redact})
	return slog.New(traced{h}).With("service", service)
}

// traced adds the trace_id and span_id of the span active in a record's context.
type traced struct{ slog.Handler }

func (h traced) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traced) WithAttrs(as []slog.Attr) slog.Handler { return traced{h.Handler.WithAttrs(as)} }
func (h traced) WithGroup(name string) slog.Handler    { return traced{h.Handler.WithGroup(name)} }

var secretWords = []string{"password", "secret", "token", "authorization", "apikey", "api_key", "cookie"}

// IsSecretKey reports whether an attribute or header name looks like it holds a secret.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func redact(_ []string, a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) && a.Value.Kind() != slog.KindGroup {
		return slog.String(a.Key, "[REDACTED]")
	}
	return a
}
