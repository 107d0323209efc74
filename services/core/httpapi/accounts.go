package httpapi

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/services/core"
)

// decodeAuth decodes the small body of an accounts route into dst. The length checked is the
// body as sent (Request().Body(): Fiber's Ctx.Body would inflate a compressed one first).
func decodeAuth(c *fiber.Ctx, dst any) error {
	if len(c.Request().Body()) > MaxAuthBodyBytes {
		return errs.E(errs.TooLarge, "request body too large: at most %d KiB here", MaxAuthBodyBytes>>10)
	}
	return httpx.DecodeJSON(c, dst)
}

type signUpRequest struct {
	Name     string    `json:"name"`
	Email    string    `json:"email"`
	Password string    `json:"password"`
	UserRole core.Role `json:"userRole"`
}

// signUp checks the fields, then takes a sign-up token of the client's address (a sign-up
// costs a bcrypt hash), then creates the account.
func (a *API) signUp(c *fiber.Ctx) error {
	var req signUpRequest
	if err := decodeAuth(c, &req); err != nil {
		return err
	}
	s := core.SignUp{Name: req.Name, Email: req.Email, Password: req.Password, Role: req.UserRole}
	if err := s.Validate(); err != nil {
		return err
	}
	if err := a.limits.signUp(a.clientIP(c)); err != nil {
		return err
	}
	u, err := a.acc.SignUp(c.UserContext(), s)
	if err != nil {
		return err
	}
	msg := "account created"
	if u.Status == core.StatusPending {
		msg = "account created; it waits for an admin's approval"
	}
	return httpx.OK(c, fiber.StatusCreated, u, msg)
}

type signInRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// signIn checks the fields (an email over core.MaxEmailBytes is a 400 before anything else),
// passes the limits (see AuthLimits), then checks the password and tells the limits how it
// went.
func (a *API) signIn(c *fiber.Ctx) error {
	var req signInRequest
	if err := decodeAuth(c, &req); err != nil {
		return err
	}
	email, err := core.CheckSignIn(req.Email, req.Password)
	if err != nil {
		return err
	}
	at, err := a.limits.beginSignIn(a.clientIP(c), email)
	if err != nil {
		return err
	}
	s, err := a.acc.SignIn(c.UserContext(), email, req.Password)
	switch {
	case err == nil:
		at.succeeded()
	case errs.Is(err, errs.Unauthorized):
		at.failed()
	default:
		at.abandoned()
	}
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, s, "signed in")
}

type resetRequest struct {
	OldPassword string `json:"oldPassword"`
	NewPassword string `json:"newPassword"`
}

func (a *API) reset(c *fiber.Ctx) error {
	var req resetRequest
	if err := decodeAuth(c, &req); err != nil {
		return err
	}
	if err := core.CheckReset(req.OldPassword, req.NewPassword); err != nil {
		return err
	}
	// Guessing the old password through a stolen token backs off like a sign-in pair.
	pc, err := a.limits.beginPasswordChange(Caller(c).ID)
	if err != nil {
		return err
	}
	err = a.acc.ResetPassword(c.UserContext(), Caller(c), req.OldPassword, req.NewPassword)
	var e *errs.Error
	switch {
	case err == nil:
		pc.succeeded()
	case errors.As(err, &e) && e.Fields["oldPassword"] == core.MsgOldPasswordMismatch:
		// a wrong old password stays counted
	default:
		pc.abandoned()
	}
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, nil, "password changed; sign in again (earlier tokens no longer work)")
}

type updateUserRequest struct {
	UserRole   *core.Role   `json:"userRole"`
	UserStatus *core.Status `json:"userStatus"`
}

func (a *API) updateUser(c *fiber.Ctx) error {
	caller := Caller(c)
	if !caller.Is(core.RoleAdmin) {
		return errs.E(errs.Forbidden, "only an approved admin can change users")
	}
	var req updateUserRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	u, err := a.acc.UpdateUser(c.UserContext(), caller, c.Params("id"), req.UserRole, req.UserStatus)
	if err != nil {
		return err
	}
	return httpx.OK(c, fiber.StatusOK, u, "user updated")
}
