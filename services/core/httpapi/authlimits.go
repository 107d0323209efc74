package httpapi

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// AuthLimits configure the limits of sign-in, sign-up and password-change attempts. They stop
// guessing without locking out the many honest users who share one address (an office, a
// campus, a carrier NAT, every client behind a proxy that is not in TrustedProxies):
//
//   - every sign-in attempt from an address takes a token of a generous bucket
//     (SigninPerMinute, SigninBurst), and every failed one a token of a tighter bucket of
//     that address (AddressFailuresPerMinute, AddressFailureBurst): an office's many right
//     passwords pass, one address's many wrong ones stop;
//   - each (account, address) pair backs off exponentially: after n failed attempts in a row
//     the next waits BackoffBase·2^(n-1), at most BackoffMax; an attempt counts as failed
//     from the moment it is let in until it succeeds, so parallel guesses gain nothing, and a
//     success clears the pair. The record is forgotten 4·BackoffMax after the last attempt;
//   - the failures of one account from every address take tokens of a looser bucket
//     (AccountFailuresPerMinute, AccountFailureBurst): a guesser spread over many addresses
//     stops there. A pair that signed in successfully within 4·BackoffMax is exempt from it,
//     so the owner at their usual address is not locked out by someone else's guessing;
//   - sign-ups take a token of a bucket per address (SignupPerMinute, SignupBurst): each one
//     costs a bcrypt hash;
//   - a signed-in user's password changes back off like a pair.
//
// IPv6 addresses are counted per /64 (what one subscriber gets). The limits live in the
// memory of each process: with n replicas behind a load balancer an address gets up to n
// times the budget. Zero fields take the defaults of DefaultAuthLimits.
type AuthLimits struct {
	SigninPerMinute          float64
	SigninBurst              int
	AddressFailuresPerMinute float64
	AddressFailureBurst      int
	AccountFailuresPerMinute float64
	AccountFailureBurst      int
	BackoffBase              time.Duration
	BackoffMax               time.Duration
	SignupPerMinute          float64
	SignupBurst              int
	// Entries bounds each limiter table (five of them); a full table drops an entry at random.
	Entries int
	// Sweep is how often idle entries are dropped (default 1m).
	Sweep time.Duration
	// Now is the limits' clock (default time.Now; tests move it).
	Now func() time.Time
}

// DefaultAuthLimits are the defaults of every AuthLimits field.
func DefaultAuthLimits() AuthLimits {
	return AuthLimits{
		SigninPerMinute: 300, SigninBurst: 120,
		AddressFailuresPerMinute: 30, AddressFailureBurst: 60,
		AccountFailuresPerMinute: 5, AccountFailureBurst: 20,
		BackoffBase: time.Second, BackoffMax: 15 * time.Minute,
		SignupPerMinute: 30, SignupBurst: 60,
		Entries: 100_000, Sweep: time.Minute, Now: time.Now,
	}
}

func (l AuthLimits) withDefaults() AuthLimits {
	d := DefaultAuthLimits()
	def := func(v *float64, dv float64) {
		if *v <= 0 {
			*v = dv
		}
	}
	defInt := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	defDur := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&l.SigninPerMinute, d.SigninPerMinute)
	defInt(&l.SigninBurst, d.SigninBurst)
	def(&l.AddressFailuresPerMinute, d.AddressFailuresPerMinute)
	defInt(&l.AddressFailureBurst, d.AddressFailureBurst)
	def(&l.AccountFailuresPerMinute, d.AccountFailuresPerMinute)
	defInt(&l.AccountFailureBurst, d.AccountFailureBurst)
	defDur(&l.BackoffBase, d.BackoffBase)
	defDur(&l.BackoffMax, d.BackoffMax)
	l.BackoffMax = max(l.BackoffMax, l.BackoffBase)
	def(&l.SignupPerMinute, d.SignupPerMinute)
	defInt(&l.SignupBurst, d.SignupBurst)
	defInt(&l.Entries, d.Entries)
	defDur(&l.Sweep, d.Sweep)
	if l.Now == nil {
		l.Now = d.Now
	}
	return l
}

// authLimits are the limiter tables of one API.
type authLimits struct {
	cfg       AuthLimits
	keys      keyer
	attempts  *buckets // sign-in attempts per address
	addrFails *buckets // failed sign-ins per address
	acctFails *buckets // failed sign-ins per account
	signups   *buckets // sign-ups per address
	pairs     *backoff // failures per (account, address) and per user's password changes
	refused   *prometheus.CounterVec
}

func newAuthLimits(cfg AuthLimits, reg prometheus.Registerer) *authLimits {
	cfg = cfg.withDefaults()
	n, every, now := cfg.Entries, cfg.Sweep, cfg.Now
	l := &authLimits{cfg: cfg, keys: newKeyer(),
		attempts:  newBuckets(cfg.SigninPerMinute, cfg.SigninBurst, n, every, now),
		addrFails: newBuckets(cfg.AddressFailuresPerMinute, cfg.AddressFailureBurst, n, every, now),
		acctFails: newBuckets(cfg.AccountFailuresPerMinute, cfg.AccountFailureBurst, n, every, now),
		signups:   newBuckets(cfg.SignupPerMinute, cfg.SignupBurst, n, every, now),
		pairs:     newBackoff(cfg.BackoffBase, cfg.BackoffMax, 4*cfg.BackoffMax, n, every, now),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cineflow_core_auth_rate_limited_total",
			Help: "Sign-in, sign-up and password-change attempts refused with 429, by the limit that refused them.",
		}, []string{"limit"}),
	}
	for _, lim := range []string{"address", "address_failures", "account_failures", "pair_backoff", "signup", "password_change"} {
		l.refused.WithLabelValues(lim)
	}
	if reg != nil {
		reg.MustRegister(l.refused)
		for name, size := range map[string]func() int{"address": l.attempts.size, "address_failures": l.addrFails.size,
			"account_failures": l.acctFails.size, "signup": l.signups.size, "backoff": l.pairs.size} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "cineflow_core_auth_limiter_entries",
				Help:        "Entries (fixed size, hashed keys) in each table of the sign-in and sign-up limits; idle ones expire.",
				ConstLabels: prometheus.Labels{"table": name},
			}, func() float64 { return float64(size()) }))
		}
	}
	return l
}

// stop ends the tables' sweeps (the server is shut down).
func (l *authLimits) stop() {
	l.attempts.stop()
	l.addrFails.stop()
	l.acctFails.stop()
	l.signups.stop()
	l.pairs.stop()
}

// addressKey is the part of a client address that limits count: the address itself, or its
// /64 for IPv6.
func addressKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func tooMany(msg string, wait time.Duration) error {
	e := errs.E(errs.RateLimited, "%s", msg).Because(core.ReasonTooManyAttempts)
	e.RetryAfter = max(wait, time.Second)
	return e
}

// signInAttempt is one admitted sign-in; tell it how it ended.
type signInAttempt struct {
	l                *authLimits
	addr, acct, pair limitKey
}

// beginSignIn admits a sign-in of email (normalised, at most core.MaxEmailBytes) from addr,
// or answers 429 with the longest wait of the limits that refuse it (taking nothing then).
func (l *authLimits) beginSignIn(addr netip.Addr, email string) (*signInAttempt, error) {
	now := l.cfg.Now()
	a := addressKey(addr)
	at := &signInAttempt{l: l, addr: l.keys.key("addr", a), acct: l.keys.key("account", email),
		pair: l.keys.key("pair", email, a)}
	var wait time.Duration
	var limit string
	refuse := func(w time.Duration, name string) {
		if w > wait {
			wait, limit = w, name
		}
	}
	pairWait, trusted := l.pairs.state(at.pair, now)
	refuse(pairWait, "pair_backoff")
	refuse(l.addrFails.wait(at.addr, now), "address_failures")
	if !trusted {
		refuse(l.acctFails.wait(at.acct, now), "account_failures")
	}
	if wait == 0 {
		refuse(l.attempts.take(at.addr, now), "address")
	}
	if wait == 0 {
		refuse(l.pairs.admit(at.pair, now), "pair_backoff") // another attempt came in between
	}
	if wait > 0 {
		l.refused.WithLabelValues(limit).Inc()
		return nil, tooMany("too many sign-in attempts; try again later", wait)
	}
	return at, nil
}

// succeeded: the password was right.
func (at *signInAttempt) succeeded() { at.l.pairs.succeeded(at.pair, at.l.cfg.Now()) }

// failed: the password was wrong (or the account unknown).
func (at *signInAttempt) failed() {
	now := at.l.cfg.Now()
	at.l.addrFails.charge(at.addr, now)
	at.l.acctFails.charge(at.acct, now)
}

// abandoned: the attempt decided nothing (the store failed).
func (at *signInAttempt) abandoned() { at.l.pairs.abandon(at.pair) }

// signUp takes a sign-up token of addr, or answers 429.
func (l *authLimits) signUp(addr netip.Addr) error {
	if wait := l.signups.take(l.keys.key("signup", addressKey(addr)), l.cfg.Now()); wait > 0 {
		l.refused.WithLabelValues("signup").Inc()
		return tooMany("too many sign-ups from your address; try again later", wait)
	}
	return nil
}

// passwordChange is one admitted password change of a signed-in user.
type passwordChange struct {
	l   *authLimits
	key limitKey
}

// beginPasswordChange admits a password change of userID, or answers 429 while the user's
// wrong old passwords back off.
func (l *authLimits) beginPasswordChange(userID string) (*passwordChange, error) {
	k := l.keys.key("reset", userID)
	if wait := l.pairs.admit(k, l.cfg.Now()); wait > 0 {
		l.refused.WithLabelValues("password_change").Inc()
		return nil, tooMany("too many password changes; try again later", wait)
	}
	return &passwordChange{l: l, key: k}, nil
}

// succeeded: the password was changed; the user's failures are cleared.
func (pc *passwordChange) succeeded() {
	pc.l.pairs.mu.Lock()
	pc.l.pairs.drop(pc.key)
	pc.l.pairs.mu.Unlock()
}

// abandoned: the change decided nothing (the store failed).
func (pc *passwordChange) abandoned() { pc.l.pairs.abandon(pc.key) }

// A wrong old password leaves the attempt counted as failed: nothing to call.
