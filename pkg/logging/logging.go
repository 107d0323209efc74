// Package logging builds the JSON slog logger every binary uses. Attributes whose key names a
// secret are replaced by "[REDACTED]", so a careless log line cannot leak one.
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger at the given level ("debug", "info", "warn", "error").
func New(level string, service string) *slog.Logger {
	return NewTo(os.Stderr, level, service)
}

// NewTo is New writing to w.
func NewTo(w io.Writer, level string, service string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: redact})
	return slog.New(h).With("service", service)
}

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
