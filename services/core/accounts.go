package core

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/cineflow/cineflow/pkg/errs"
)

// TokenIssuer is the "iss" claim of every token.
const TokenIssuer = "cineflow"

// DefaultBcryptCost is the bcrypt cost of stored password hashes.
const DefaultBcryptCost = 10

// DefaultTokenTTL is how long a token is valid.
const DefaultTokenTTL = 24 * time.Hour

// Messages that must not tell a caller which part was wrong.
const (
	MsgBadCredentials = "invalid email or password"
	MsgBadToken       = "invalid or expired token"
)

// AccountsOptions configure Accounts.
type AccountsOptions struct {
	Secret     []byte        // HS256 key; required
	TokenTTL   time.Duration // default DefaultTokenTTL
	BcryptCost int           // default DefaultBcryptCost (tests lower it)
	Now        func() time.Time
}

// Accounts are the account rules: sign up, sign in, password reset, approval and tokens.
type Accounts struct {
	store     UserStore
	secret    []byte
	ttl       time.Duration
	cost      int
	now       func() time.Time
	dummyHash []byte // compared against when the email is unknown, so timing does not tell
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
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-real-password"), opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	return &Accounts{store: store, secret: opts.Secret, ttl: opts.TokenTTL, cost: opts.BcryptCost,
		now: opts.Now, dummyHash: dummy}, nil
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
func (a *Accounts) SignUp(ctx context.Context, s SignUp) (*User, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return a.create(ctx, s, InitialStatus(s.Role))
}

func (a *Accounts) create(ctx context.Context, s SignUp, status Status) (*User, error) {
	h, err := a.hash(s.Password)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC().Truncate(time.Millisecond)
	u := &User{Name: s.Name, Email: s.Email, PasswordHash: h, Role: s.Role, Status: status,
		CreatedAt: now, UpdatedAt: now}
	if err := a.store.Create(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// EnsureAdmin creates an APPROVED ADMIN with email and password unless the email is taken
// (then it is already there: created is false). Safe to call at every start.
func (a *Accounts) EnsureAdmin(ctx context.Context, email, password string) (u *User, created bool, err error) {
	s := SignUp{Name: "Administrator", Email: email, Password: password, Role: RoleAdmin}
	if err := s.Validate(); err != nil {
		return nil, false, err
	}
	u, err = a.create(ctx, s, StatusApproved)
	if errs.Is(err, errs.Conflict) {
		u, err = a.store.GetByEmail(ctx, s.Email)
		return u, false, err
	}
	return u, err == nil, err
}

// Session is what a successful sign-in returns.
type Session struct {
	Email  string `json:"email"`
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	Status Status `json:"status"`
	Token  string `json:"token"`
}

// SignIn checks the credentials and issues a token. Wrong credentials are errs.Unauthorized
// with the same message whether the email exists or not.
func (a *Accounts) SignIn(ctx context.Context, email, password string) (*Session, error) {
	fields := map[string]string{}
	norm := strings.ToLower(strings.TrimSpace(email))
	if norm == "" {
		fields["email"] = "is required"
	}
	if password == "" {
		fields["password"] = "is required"
	}
	if len(fields) > 0 {
		return nil, errs.Fields(fields)
	}
	u, err := a.store.GetByEmail(ctx, norm)
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		_ = bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
		return nil, errs.E(errs.Unauthorized, MsgBadCredentials)
	}
	if err != nil {
		return nil, err
	}
	if len(password) > MaxPasswordBytes || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return nil, errs.E(errs.Unauthorized, MsgBadCredentials)
	}
	tok, err := a.IssueToken(u.ID)
	if err != nil {
		return nil, err
	}
	return &Session{Email: u.Email, Name: u.Name, Role: u.Role, Status: u.Status, Token: tok}, nil
}

// IssueToken signs an HS256 token for the user id.
func (a *Accounts) IssueToken(userID string) (string, error) {
	now := a.now()
	claims := jwt.RegisteredClaims{
		Issuer:    TokenIssuer,
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(a.ttl)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "could not sign the token")
	}
	return s, nil
}

// Authenticate checks a token (HS256 only, issuer, expiry) and loads its user from the store,
// so a role or status change takes effect at once. Any failure is errs.Unauthorized.
func (a *Accounts) Authenticate(ctx context.Context, token string) (*User, error) {
	if token == "" {
		return nil, errs.E(errs.Unauthorized, "missing token: send x-access-token or Authorization: Bearer <token>")
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(TokenIssuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.now))
	if err != nil || claims.Subject == "" {
		return nil, errs.Wrap(errs.Unauthorized, err, MsgBadToken)
	}
	u, err := a.store.Get(ctx, claims.Subject)
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		return nil, errs.E(errs.Unauthorized, MsgBadToken)
	}
	return u, err
}

// ResetPassword replaces the caller's password after checking the old one.
func (a *Accounts) ResetPassword(ctx context.Context, caller *User, oldPassword, newPassword string) error {
	fields := map[string]string{}
	if oldPassword == "" {
		fields["oldPassword"] = "is required"
	}
	if msg := CheckPassword(newPassword); msg != "" {
		fields["newPassword"] = msg
	}
	if len(fields) > 0 {
		return errs.Fields(fields)
	}
	u, err := a.store.Get(ctx, caller.ID)
	if err != nil {
		return err
	}
	if len(oldPassword) > MaxPasswordBytes || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(oldPassword)) != nil {
		return errs.Fields(map[string]string{"oldPassword": "does not match the current password"})
	}
	h, err := a.hash(newPassword)
	if err != nil {
		return err
	}
	_, err = a.store.Update(ctx, u.ID, UserUpdate{PasswordHash: &h})
	return err
}

// UpdateUser changes a user's role and/or status. Only an APPROVED ADMIN may.
func (a *Accounts) UpdateUser(ctx context.Context, caller *User, id string, role *Role, status *Status) (*User, error) {
	if !caller.Is(RoleAdmin) {
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
	return a.store.Update(ctx, id, UserUpdate{Role: role, Status: status})
}
