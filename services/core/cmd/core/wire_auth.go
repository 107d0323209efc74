package main

import (
	"errors"
	"time"

	"github.com/cineflow/cineflow/services/core/httpapi"
)

// AuthConfig is the environment of the sign-in, sign-up and password-change limits (see
// httpapi.AuthLimits for what each one does). Zero means the default.
type AuthConfig struct {
	// Sign-in attempts (right or wrong) per client address, and their burst.
	SigninPerMinute float64 `env:"SIGNIN_RATE_PER_MINUTE" envDefault:"300"`
	SigninBurst     int     `env:"SIGNIN_BURST" envDefault:"120"`
	// Failed sign-ins per client address.
	SigninAddressFailuresPerMinute float64 `env:"SIGNIN_ADDRESS_FAILURES_PER_MINUTE" envDefault:"30"`
	SigninAddressFailureBurst      int     `env:"SIGNIN_ADDRESS_FAILURE_BURST" envDefault:"60"`
	// Failed sign-ins per account, from every address.
	SigninAccountFailuresPerMinute float64 `env:"SIGNIN_ACCOUNT_FAILURES_PER_MINUTE" envDefault:"5"`
	SigninAccountFailureBurst      int     `env:"SIGNIN_ACCOUNT_FAILURE_BURST" envDefault:"20"`
	// Backoff of one account from one address: BASE·2^(n-1) after n failures, at most MAX.
	SigninBackoffBase time.Duration `env:"SIGNIN_BACKOFF_BASE" envDefault:"1s"`
	SigninBackoffMax  time.Duration `env:"SIGNIN_BACKOFF_MAX" envDefault:"15m"`
	// Sign-ups per client address.
	SignupPerMinute float64 `env:"SIGNUP_RATE_PER_MINUTE" envDefault:"30"`
	SignupBurst     int     `env:"SIGNUP_BURST" envDefault:"60"`
	// AuthLimiterEntries bounds each of the limits' five tables.
	AuthLimiterEntries int `env:"AUTH_LIMITER_ENTRIES" envDefault:"100000"`
	// TrustedProxies (IPs or CIDRs, comma-separated) may tell the client's address in
	// X-Forwarded-For; without them the limits see the connection's address (behind an
	// ingress, every client would share the ingress's budget).
	TrustedProxies string `env:"TRUSTED_PROXIES"`
}

// Validate rejects negative settings and a backoff whose cap is below its base.
func (c AuthConfig) Validate() error {
	if _, err := httpapi.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return err
	}
	if c.SigninPerMinute < 0 || c.SigninBurst < 0 {
		return errors.New("SIGNIN_RATE_PER_MINUTE and SIGNIN_BURST must be positive")
	}
	if c.SigninAddressFailuresPerMinute < 0 || c.SigninAddressFailureBurst < 0 {
		return errors.New("SIGNIN_ADDRESS_FAILURES_PER_MINUTE and SIGNIN_ADDRESS_FAILURE_BURST must be positive")
	}
	if c.SigninAccountFailuresPerMinute < 0 || c.SigninAccountFailureBurst < 0 {
		return errors.New("SIGNIN_ACCOUNT_FAILURES_PER_MINUTE and SIGNIN_ACCOUNT_FAILURE_BURST must be positive")
	}
	if c.SigninBackoffBase < 0 || c.SigninBackoffMax < 0 {
		return errors.New("SIGNIN_BACKOFF_BASE and SIGNIN_BACKOFF_MAX must be positive durations")
	}
	if c.SigninBackoffBase > 0 && c.SigninBackoffMax > 0 && c.SigninBackoffMax < c.SigninBackoffBase {
		return errors.New("SIGNIN_BACKOFF_MAX must be at least SIGNIN_BACKOFF_BASE")
	}
	if c.SignupPerMinute < 0 || c.SignupBurst < 0 {
		return errors.New("SIGNUP_RATE_PER_MINUTE and SIGNUP_BURST must be positive")
	}
	if c.AuthLimiterEntries < 0 || c.AuthLimiterEntries > 0 && c.AuthLimiterEntries < 100 {
		return errors.New("AUTH_LIMITER_ENTRIES must be at least 100")
	}
	return nil
}

// Limits are the httpapi options of c.
func (c AuthConfig) Limits() httpapi.AuthLimits {
	return httpapi.AuthLimits{
		SigninPerMinute: c.SigninPerMinute, SigninBurst: c.SigninBurst,
		AddressFailuresPerMinute: c.SigninAddressFailuresPerMinute, AddressFailureBurst: c.SigninAddressFailureBurst,
		AccountFailuresPerMinute: c.SigninAccountFailuresPerMinute, AccountFailureBurst: c.SigninAccountFailureBurst,
		BackoffBase: c.SigninBackoffBase, BackoffMax: c.SigninBackoffMax,
		SignupPerMinute: c.SignupPerMinute, SignupBurst: c.SignupBurst,
		Entries: c.AuthLimiterEntries,
	}
}
