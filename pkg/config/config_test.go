package config

import (
	"os"
	"strings"
	"testing"
)

func TestAppEnvDefaultsToProduction(t *testing.T) {
	t.Setenv("APP_ENV", "")
	os.Unsetenv("APP_ENV")
	t.Chdir(t.TempDir()) // no .env file
	var c Common
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.AppEnv != "production" || !c.Production() || c.Development() || c.Validate() != nil {
		t.Errorf("APP_ENV unset: %+v, production %v", c, c.Production())
	}
	for v, prod := range map[string]bool{"production": true, "PRODUCTION": true, "": true, "development": false,
		"Development": false, " development ": false} {
		c := Common{AppEnv: v}
		if c.Production() != prod || c.Development() == prod || c.Validate() != nil {
			t.Errorf("APP_ENV=%q: production %v, validate %v", v, c.Production(), c.Validate())
		}
	}
	// A misspelt value is refused, and meanwhile counts as production (fail closed).
	for _, v := range []string{"dev", "staging", "prod", "develop"} {
		c := Common{AppEnv: v}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "APP_ENV") || !c.Production() {
			t.Errorf("APP_ENV=%q: %v, production %v", v, err, c.Production())
		}
	}
}

func TestRequiredInProduction(t *testing.T) {
	msg := RequiredInProduction("JWT_SECRET", "tokens would be forgeable").Error()
	for _, want := range []string{"JWT_SECRET is required in production", "APP_ENV=development", "tokens would be forgeable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}
