package httpapi

import "github.com/gofiber/fiber/v2"

// registerBookings mounts the booking, seat map and payment routes. (Being built.)
func (a *API) registerBookings(g fiber.Router) {}

// IdempotencyStore keeps the first response of each Idempotency-Key. (Being built.)
type IdempotencyStore interface{}
