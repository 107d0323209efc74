// Package core holds the core (mba) service's contracts: the documents every part shares
// (User, Theatre, Movie, Show, Booking, Payment, Email and the engine's records), their
// validation, IDs, pages, guards and idempotency types. It imports no Fiber, no driver and
// no bson. The work is done by one package per subdomain: accounts, catalogue, booking and
// outbox; the adapters are httpapi (REST), mongostore (MongoDB) and notifyclient (the
// notification service); cmd/core wires them.
package core

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Messages that must not tell a caller which part was wrong.
const (
	MsgBadCredentials = "invalid email or password"
	MsgBadToken       = "invalid or expired token"
	// MsgSessionEnded answers a token of a session that a password reset or an admin's change
	// of role or status ended.
	MsgSessionEnded = "this session has ended (the password, or the account's role or status, was changed): sign in again"
	// MsgOldPasswordMismatch is the oldPassword field error of a password change whose old
	// password is wrong.
	MsgOldPasswordMismatch = "does not match the current password"
)

// Role is what a user is.
type Role string

// The roles.
const (
	RoleCustomer Role = "CUSTOMER"
	RoleClient   Role = "CLIENT" // a theatre owner
	RoleAdmin    Role = "ADMIN"
)

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r == RoleCustomer || r == RoleClient || r == RoleAdmin }

// Status says whether a user's role is in force.
type Status string

// The statuses. Only an APPROVED user has the powers of its role.
const (
	StatusApproved Status = "APPROVED"
	StatusPending  Status = "PENDING"
	StatusRejected Status = "REJECTED"
)

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool { return s == StatusApproved || s == StatusPending || s == StatusRejected }

// Password length bounds in bytes (bcrypt reads at most 72).
const (
	MinPasswordBytes = 8
	MaxPasswordBytes = 72
	maxNameRunes     = 100
	maxEmailBytes    = 254
)

// User is an account. PasswordHash is never serialised.
type User struct {
	ID           string `json:"_id"` // the contract: documents carry their id as _id
	Name         string `json:"name"`
	Email        string `json:"email"`
	PasswordHash string `json:"-"`
	// PasswordChangedAt is when the password was last reset. At session generation 0, tokens
	// issued before it are refused (the resets of earlier versions set no generation).
	PasswordChangedAt time.Time `json:"-"`
	Role              Role      `json:"role"`
	Status            Status    `json:"status"`
	CreatedAt         time.Time `json:"createdAt"`
	UpdatedAt         time.Time `json:"updatedAt"`
	// Version counts the changes made to the user (0: as created). A change is stored as the
	// next version, and only the first change of a version is kept (see UserStore.Change).
	Version int64 `json:"-"`
	// SessionGen is the user's session generation. Every token carries the generation it was
	// issued at (claim "sgen"; none: 0) and is accepted only while it equals the user's: a
	// password reset, and an admin's change of role or status, store a new generation with
	// the change (see Accounts.Authenticate).
	SessionGen int64 `json:"-"`
}

// Is reports whether u is an APPROVED user of role r.
func (u *User) Is(r Role) bool { return u != nil && u.Role == r && u.Status == StatusApproved }

// SignUp is a sign-up request. It has no status: a CUSTOMER starts APPROVED, a CLIENT or
// ADMIN starts PENDING until an admin approves it.
type SignUp struct {
	Name     string
	Email    string
	Password string
	Role     Role // empty means CUSTOMER
}

// Validate normalises s (trimmed name, lowercased email, default role) and checks every
// field, answering errs.Fields naming each bad one.
func (s *SignUp) Validate() error {
	fields := map[string]string{}
	s.Name = strings.TrimSpace(s.Name)
	if msg := checkName(s.Name); msg != "" {
		fields["name"] = msg
	}
	email, msg := NormalizeEmail(s.Email)
	if msg != "" {
		fields["email"] = msg
	}
	s.Email = email
	if msg := CheckPassword(s.Password); msg != "" {
		fields["password"] = msg
	}
	if s.Role == "" {
		s.Role = RoleCustomer
	}
	if !s.Role.Valid() {
		fields["userRole"] = "must be CUSTOMER, CLIENT or ADMIN"
	}
	if len(fields) > 0 {
		return errs.Fields(fields)
	}
	return nil
}

// InitialStatus is the status a new account of role r starts with.
func InitialStatus(r Role) Status {
	if r == RoleCustomer {
		return StatusApproved
	}
	return StatusPending
}

func checkName(name string) string {
	switch {
	case name == "":
		return "is required"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(name) > maxNameRunes:
		return fmt.Sprintf("must be at most %d characters", maxNameRunes)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}

// NormalizeEmail trims and lowercases an email address; msg says what is wrong with it.
func NormalizeEmail(raw string) (email, msg string) {
	email = strings.ToLower(strings.TrimSpace(raw))
	switch {
	case email == "":
		return email, "is required"
	case len(email) > maxEmailBytes:
		return email, fmt.Sprintf("must be at most %d bytes", maxEmailBytes)
	case !utf8.ValidString(email):
		return email, "must be a valid email address"
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != email || strings.ContainsAny(email, " \t\r\n<>\"") {
		return email, "must be a valid email address"
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || !strings.Contains(email[at+1:], ".") {
		return email, "must be a valid email address"
	}
	return email, ""
}

// MaxEmailBytes bounds an email address (RFC 5321's path limit): a longer one is refused
// before anything else looks at it.
const MaxEmailBytes = maxEmailBytes

// CheckSignIn checks a sign-in's fields before anything is looked up, limited or hashed: both
// are required and the email is at most MaxEmailBytes bytes (a field error otherwise). It
// returns the normalised (trimmed, lowercased) email. A password of any length passes: one
// longer than bcrypt reads cannot be right, and is answered like any wrong password.
func CheckSignIn(email, password string) (string, error) {
	fields := map[string]string{}
	norm := strings.TrimSpace(email)
	switch {
	case norm == "":
		fields["email"] = "is required"
	case len(norm) > maxEmailBytes:
		fields["email"] = fmt.Sprintf("must be at most %d bytes", maxEmailBytes)
	}
	if password == "" {
		fields["password"] = "is required"
	}
	if len(fields) > 0 {
		return "", errs.Fields(fields)
	}
	return strings.ToLower(norm), nil
}

// CheckReset checks a password change's fields before the old password is compared.
func CheckReset(oldPassword, newPassword string) error {
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
	return nil
}

// CheckPassword says what is wrong with a new password ("" when fine).
func CheckPassword(p string) string {
	switch {
	case p == "":
		return "is required"
	case len(p) < MinPasswordBytes || len(p) > MaxPasswordBytes:
		return fmt.Sprintf("must be %d to %d bytes long", MinPasswordBytes, MaxPasswordBytes)
	}
	return ""
}
