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

	"github.com/cineflow/cineflow/pkg/logging"
)

// Common holds what every binary reads.
type Common struct {
	// AppEnv is "production" (the default: a binary or image run without settings fails
	// closed) or "development" (what `make run` and the tests set); production refuses unsafe
	// defaults such as a missing secret.
	AppEnv   string `env:"APP_ENV" envDefault:"production"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Development reports whether APP_ENV asks for development mode, the only mode that accepts
// missing secrets.
func (c Common) Development() bool {
	return strings.EqualFold(strings.TrimSpace(c.AppEnv), "development")
}

// Production reports whether the binary runs in production mode: anything but development,
// so that an empty or misspelt APP_ENV fails closed (Validate refuses a misspelt one).
func (c Common) Production() bool { return !c.Development() }

// Validate refuses an APP_ENV other than production or development (empty means production)
// and a LOG_LEVEL other than debug, info, warn or error.
func (c Common) Validate() error {
	switch v := strings.ToLower(strings.TrimSpace(c.AppEnv)); v {
	case "", "production", "development":
	default:
		return errors.New("APP_ENV must be production (the default) or development")
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

// RequiredInProduction is the error of a binary that refuses to start in production without
// the variable name (why says what would go wrong; may be empty). It names the variable,
// never a value.
func RequiredInProduction(name, why string) error {
	if why != "" {
		why = ": " + why
	}
	return fmt.Errorf("%s is required in production (APP_ENV unset or production; set APP_ENV=development "+
		"to run without it, never in production)%s", name, why)
}

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
