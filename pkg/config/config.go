// Package config loads settings from the environment, after reading a .env file in the
// working directory if there is one (variables already set win over the file).
// Parsing and defaults come from github.com/caarlos0/env struct tags.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"
)

// Common holds what every binary reads.
type Common struct {
	// AppEnv is "development" or "production"; production refuses unsafe defaults.
	AppEnv   string `env:"APP_ENV" envDefault:"development"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Production reports whether the binary runs in production mode.
func (c Common) Production() bool { return strings.EqualFold(c.AppEnv, "production") }

// Load fills dst (a pointer to a struct with `env` tags) from .env and the environment.
// Errors name the variable, never its value.
func Load(dst any) error {
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config: .env: %w", err)
	}
	if err := env.Parse(dst); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
