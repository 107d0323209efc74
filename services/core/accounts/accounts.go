package accounts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

// TokenIssuer is the "iss" claim of every token.
const TokenIssuer = "cineflow"

// DefaultBcryptCost is the bcrypt cost of stored password hashes.
const DefaultBcryptCost = 10

// DefaultTokenTTL is how long a token is valid.
const DefaultTokenTTL = 24 * time.Hour

// AccountsOptions configure Accounts.
type AccountsOptions struct {
	Secret     []byte        // HS256 key; required
	TokenTTL   time.Duration // default DefaultTokenTTL
	BcryptCost int           // default DefaultBcryptCost (tests lower it)
	// UserCacheTTL is how long Authenticate keeps a user it read, unused (default
	// DefaultUserCacheTTL; negative: keep none). A kept user is never trusted as it is: each
	// request checks that no newer version of it exists (UserStore.Refresh, one read by exact
	// _id), so a change made through any replica takes effect at once. Keeping it saves the
	// read of the user document.
	UserCacheTTL time.Duration
	Now          func() time.Time
}

// DefaultUserCacheTTL is how long a user unused stays in Authenticate's cache.
const DefaultUserCacheTTL = time.Minute

// maxCachedUsers bounds the user cache; a full cache starts over.
const maxCachedUsers = 10000

type cachedUser struct {
	u  core.User
	at time.Time
}

// Accounts are the account rules: sign up, sign in, password reset, approval and tokens.
type Accounts struct {
	store     UserStore
	secret    []byte
	ttl       time.Duration
	cost      int
	now       func() time.Time
	dummyHash []byte // compared against when the email is unknown, so timing does not tell
	// compare is bcrypt.CompareHashAndPassword (tests count the comparisons).
	compare func(hash, password []byte) error

	cacheTTL time.Duration
	cacheMu  sync.Mutex
	cache    map[string]cachedUser
}

// NewAccounts returns the account rules on store.
func NewAccounts(store UserStore, opts AccountsOptions) (*Accounts, error) {
	if len(opts.Secret) == 0 {
		return nil, errors.New("accounts: empty token secret")
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = DefaultBcryptCost
	}
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		return nil, errors.New("accounts: bcrypt cost out of range")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The dummy hash is of a random password at the configured cost: comparing against it
	// costs what comparing against a real hash does, and nothing matches it.
	var pw [32]byte
	_, _ = rand.Read(pw[:])
	dummy, err := bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(pw[:])[:core.MaxPasswordBytes/2]), opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	if opts.UserCacheTTL == 0 {
		opts.UserCacheTTL = DefaultUserCacheTTL
	}
	return &Accounts{store: store, secret: opts.Secret, ttl: opts.TokenTTL, cost: opts.BcryptCost,
		now: opts.Now, dummyHash: dummy, compare: bcrypt.CompareHashAndPassword, cacheTTL: opts.UserCacheTTL, cache: map[string]cachedUser{}}, nil
}

func (a *Accounts) hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cost)
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "could not hash the password")
	}
	return string(h), nil
}

// SignUp validates s and creates the user: CUSTOMER APPROVED, CLIENT/ADMIN PENDING. A taken
// email is errs.Conflict.
func (a *Accounts) SignUp(ctx context.Context, s core.SignUp) (*core.User, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return a.create(ctx, s, core.InitialStatus(s.Role))
}

func (a *Accounts) create(ctx context.Context, s core.SignUp, status core.Status) (*core.User, error) {
	h, err := a.hash(s.Password)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC().Truncate(time.Millisecond)
	u := &core.User{Name: s.Name, Email: s.Email, PasswordHash: h, Role: s.Role, Status: status,
		CreatedAt: now, UpdatedAt: now}
	if err := a.store.Create(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// EnsureAdmin creates an APPROVED ADMIN with email and password unless the email is taken
// (then it is already there: created is false). Safe to call at every start.
func (a *Accounts) EnsureAdmin(ctx context.Context, email, password string) (u *core.User, created bool, err error) {
	s := core.SignUp{Name: "Administrator", Email: email, Password: password, Role: core.RoleAdmin}
	if err := s.Validate(); err != nil {
		return nil, false, err
	}
	u, err = a.create(ctx, s, core.StatusApproved)
	if errs.Is(err, errs.Conflict) {
		u, err = a.store.GetByEmail(ctx, s.Email)
		return u, false, err
	}
	return u, err == nil, err
}

// Session is what a successful sign-in returns.
type Session struct {
	Email  string      `json:"email"`
	Name   string      `json:"name"`
	Role   core.Role   `json:"role"`
	Status core.Status `json:"status"`
	Token  string      `json:"token"`
}

// SignIn checks the credentials and issues a token. Wrong credentials are errs.Unauthorized
// with the same message whether the email exists or not, and cost the same: exactly one
// bcrypt comparison whatever the account and the password's length (see checkPassword).
func (a *Accounts) SignIn(ctx context.Context, email, password string) (*Session, error) {
	norm, err := core.CheckSignIn(email, password)
	if err != nil {
		return nil, err
	}
	u, err := a.store.GetByEmail(ctx, norm)
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		u, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !a.checkPassword(u, password) {
		return nil, errs.E(errs.Unauthorized, core.MsgBadCredentials)
	}
	tok, err := a.IssueToken(u)
	if err != nil {
		return nil, err
	}
	return &Session{Email: u.Email, Name: u.Name, Role: u.Role, Status: u.Status, Token: tok}, nil
}

// checkPassword reports whether password is u's, after exactly one bcrypt comparison: against
// u's hash, or against the dummy hash (of the configured cost) when there is no user or the
// password is longer than bcrypt reads. Such a password was never accepted at sign-up
// (CheckPassword), so it cannot be anyone's; only its first MaxPasswordBytes are hashed, so
// its length does not change the cost either.
func (a *Accounts) checkPassword(u *core.User, password string) bool {
	hash, pw := a.dummyHash, []byte(password)
	if len(pw) > core.MaxPasswordBytes {
		pw = pw[:core.MaxPasswordBytes]
	} else if u != nil {
		hash = []byte(u.PasswordHash)
	}
	ok := a.compare(hash, pw) == nil
	return ok && u != nil && len(password) <= core.MaxPasswordBytes
}

// sessionClaims are a token's claims: the registered ones and the session generation of the
// user when the token was issued (absent in tokens of earlier versions: generation 0).
type sessionClaims struct {
	jwt.RegisteredClaims
	SessionGen int64 `json:"sgen"`
}

// IssueToken signs an HS256 token for u, at u's session generation (u as read: a sign-in that
// read u before a concurrent reset issues a token of the generation the reset ends).
func (a *Accounts) IssueToken(u *core.User) (string, error) {
	now := a.now()
	claims := sessionClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    TokenIssuer,
		Subject:   u.ID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(a.ttl)),
	}, SessionGen: u.SessionGen}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "could not sign the token")
	}
	return s, nil
}

// Authenticate checks a token (HS256 only, issuer, expiry) and its user's latest version,
// read on every request (a kept user is refreshed: see UserCacheTTL), so a change made through
// any replica takes effect at once. Any failure is errs.Unauthorized.
//
// A token is accepted only while its session generation ("sgen"; none: 0) equals the user's
// exactly. A change that ends the user's sessions stores a new generation with the change, in
// the insert that decides it: once it is acknowledged, no earlier token works, whatever the
// timing, on any replica; a sign-in that read the user before it issued a token of the
// generation it ended. A generation is the number of the version that set it, so it is never
// reused, even after a change written by an earlier version (which stores none: generation 0).
// At generation 0 the earlier rule applies too: a token issued (in whole seconds) before the
// last password change is refused, for the resets earlier versions made.
func (a *Accounts) Authenticate(ctx context.Context, token string) (*core.User, error) {
	if token == "" {
		return nil, errs.E(errs.Unauthorized, "missing token: send x-access-token or Authorization: Bearer <token>")
	}
	var claims sessionClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(TokenIssuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.now))
	if err != nil || claims.Subject == "" {
		return nil, errs.Wrap(errs.Unauthorized, err, core.MsgBadToken)
	}
	var u *core.User
	if kept := a.cached(claims.Subject); kept != nil {
		u, err = a.store.Refresh(ctx, kept)
	} else {
		u, err = a.store.Get(ctx, claims.Subject)
	}
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		return nil, errs.E(errs.Unauthorized, core.MsgBadToken)
	}
	if err != nil {
		return nil, err
	}
	a.remember(u)
	if claims.SessionGen != u.SessionGen || u.SessionGen == 0 &&
		(claims.IssuedAt == nil || claims.IssuedAt.Time.Before(u.PasswordChangedAt.Truncate(time.Second))) {
		return nil, errs.E(errs.Unauthorized, core.MsgSessionEnded)
	}
	return u, nil
}

// endSessions makes u, about to be stored as the next version (UserStore.Change), end every
// session begun before: its generation becomes that version's number.
func endSessions(u *core.User) { u.SessionGen = u.Version + 1 }

func (a *Accounts) cached(id string) *core.User {
	if a.cacheTTL <= 0 {
		return nil
	}
	a.cacheMu.Lock()
	defer a.cacheMu.Unlock()
	c, ok := a.cache[id]
	if !ok || a.now().Sub(c.at) >= a.cacheTTL {
		return nil
	}
	u := c.u
	return &u
}

func (a *Accounts) remember(u *core.User) {
	if a.cacheTTL <= 0 {
		return
	}
	a.cacheMu.Lock()
	defer a.cacheMu.Unlock()
	if len(a.cache) >= maxCachedUsers {
		clear(a.cache)
	}
	a.cache[u.ID] = cachedUser{u: *u, at: a.now()}
}

func (a *Accounts) forget(id string) {
	a.cacheMu.Lock()
	delete(a.cache, id)
	a.cacheMu.Unlock()
}

// MaxUserChangeAttempts bounds how often a user change is redone after losing its version
// to a concurrent change of the same user; beyond it the change is errs.Conflict.
const MaxUserChangeAttempts = 8

// MsgUserChangedMeanwhile answers a user change that lost every attempt to concurrent ones.
const MsgUserChangedMeanwhile = "the user was changed by other requests at the same time; retry"

// change applies edit to the latest version of user id and stores the result as the next
// version. When a concurrent change took that version first, nothing was stored: it reads the
// user again and redoes edit on what the winner left (edit may then refuse), at most
// MaxUserChangeAttempts times. So two concurrent changes (a password reset and an approval,
// two admins) both take effect, one after the other, or one answers 409: neither is lost.
func (a *Accounts) change(ctx context.Context, id string, edit func(u *core.User, attempt int) error) (*core.User, error) {
	defer a.forget(id)
	for attempt := 0; ; attempt++ {
		u, err := a.store.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := edit(u, attempt); err != nil {
			return nil, err
		}
		u.UpdatedAt = a.now().UTC().Truncate(time.Millisecond)
		err = a.store.Change(ctx, u)
		if !errs.Is(err, errs.Conflict) {
			if err != nil {
				return nil, err
			}
			return u, nil
		}
		if attempt+1 >= MaxUserChangeAttempts {
			e := errs.Wrap(errs.Conflict, err, MsgUserChangedMeanwhile).Because(core.ReasonChangedMeanwhile)
			e.RetryAfter = time.Second
			return nil, e
		}
	}
}

// ResetPassword replaces the caller's password after checking the old one. Once it is
// acknowledged, every session begun before it has ended, on every replica (see Authenticate).
// A reset that lost its version to a concurrent change is redone on the winner's version if
// the old password still matches it, else it is errs.Conflict (another reset won).
func (a *Accounts) ResetPassword(ctx context.Context, caller *core.User, oldPassword, newPassword string) error {
	if err := core.CheckReset(oldPassword, newPassword); err != nil {
		return err
	}
	var checked, newHash string // the hash the old password matched; the new one
	_, err := a.change(ctx, caller.ID, func(u *core.User, attempt int) error {
		if u.PasswordHash != checked {
			if !a.checkPassword(u, oldPassword) {
				if attempt > 0 {
					return errs.E(errs.Conflict, "the password was changed by another request at the same time; sign in again").Because(core.ReasonChangedMeanwhile)
				}
				return errs.Fields(map[string]string{"oldPassword": core.MsgOldPasswordMismatch})
			}
			checked = u.PasswordHash
		}
		if newHash == "" {
			h, err := a.hash(newPassword)
			if err != nil {
				return err
			}
			newHash = h
		}
		u.PasswordHash = newHash
		u.PasswordChangedAt = a.now().UTC().Truncate(time.Millisecond)
		endSessions(u)
		return nil
	})
	return err
}

// UpdateUser changes a user's role and/or status. Only an APPROVED ADMIN may.
//
// A change of role or status ends the user's sessions (one that changes nothing ends none):
//   - a status that leaves APPROVED is how an account is suspended, usually for abuse or a
//     compromise: whatever happens next, the tokens of before must not work again (a stolen
//     token would, at the next approval, if the suspension only hid it);
//   - a role change, and an approval, change the account's powers, after which a session
//     starts over (OWASP's session management rule at a privilege change): a demotion undone
//     later does not revive earlier tokens, a token issued while the account was pending or
//     rejected never gains powers it was not issued with, and the sign-in that follows tells
//     the client the new role and status;
//   - between PENDING and REJECTED (neither has powers) ending them costs nothing, and the
//     rule stays one a user and an admin can remember.
func (a *Accounts) UpdateUser(ctx context.Context, caller *core.User, id string, role *core.Role, status *core.Status) (*core.User, error) {
	if !caller.Is(core.RoleAdmin) {
		return nil, errs.E(errs.Forbidden, "only an approved admin can change users")
	}
	fields := map[string]string{}
	if role != nil && !role.Valid() {
		fields["userRole"] = "must be CUSTOMER, CLIENT or ADMIN"
	}
	if status != nil && !status.Valid() {
		fields["userStatus"] = "must be APPROVED, PENDING or REJECTED"
	}
	if role == nil && status == nil {
		fields["userRole"] = "give userRole and/or userStatus"
	}
	if len(fields) > 0 {
		return nil, errs.Fields(fields)
	}
	return a.change(ctx, id, func(u *core.User, _ int) error {
		before := *u
		if role != nil {
			u.Role = *role
		}
		if status != nil {
			u.Status = *status
		}
		if u.Role != before.Role || u.Status != before.Status {
			endSessions(u)
		}
		return nil
	})
}

// UserStore keeps users.
type UserStore interface {
	// Create stores u and sets its ID (and CreatedAt and UpdatedAt, when zero, to now). A
	// taken email answers errs.Conflict, decided by the store's unique index.
	Create(ctx context.Context, u *core.User) error
	// Get finds a user by id, at its latest version: errs.NotFound if none, errs.Invalid for a
	// malformed id.
	Get(ctx context.Context, id string) (*core.User, error)
	// GetByEmail finds a user by (lowercased) email, at its latest version: errs.NotFound if
	// none.
	GetByEmail(ctx context.Context, email string) (*core.User, error)
	// Change stores u's role, status, password hash, PasswordChangedAt, SessionGen and
	// UpdatedAt as the version after u.Version, the version u was read at, and sets u.Version
	// to it. The version is decided by an insert into a unique key: when another change took it
	// first, Change is errs.Conflict and stores nothing (read the user again and redo the
	// change).
	Change(ctx context.Context, u *core.User) error
	// Refresh returns u if it is still its user's latest version, else the latest version: a
	// change acknowledged before Refresh began is seen. It costs one read by exact _id when
	// nothing changed.
	Refresh(ctx context.Context, u *core.User) (*core.User, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
}
