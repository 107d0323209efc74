package core

// The machine-readable codes of the core's failures a client may want to tell apart,
// answered as the envelope's code (set with errs.Error.Because). Any other failure answers
// its errs code (invalid, unauthorized, forbidden, not_found, conflict, rate_limited …). The
// OpenAPI document lists, per route, the codes it may answer (x-error-codes).
const (
	ReasonSeatTaken        = "seat_taken"        // 409: a seat asked for by name is held or sold
	ReasonNotEnoughSeats   = "not_enough_seats"  // 409: fewer seats are free than asked for
	ReasonAlreadyPaid      = "already_paid"      // 409: the booking is paid (pay again, cancel)
	ReasonCancelled        = "booking_cancelled" // 409: the booking was cancelled
	ReasonSeatsLost        = "seats_lost"        // 409: the booking no longer holds every seat
	ReasonHoldExpired      = "hold_expired"      // 410: the booking's hold ended
	ReasonBeingDeleted     = "being_deleted"     // 409: the show, theatre or movie is being deleted
	ReasonInUse            = "in_use"            // 409: it has shows, or seats held or sold
	ReasonShowExists       = "show_exists"       // 409: a show of that movie and timing exists in the theatre
	ReasonEmailTaken       = "email_taken"       // 409: an account has this email
	ReasonChangedMeanwhile = "changed_meanwhile" // 409: other requests changed it at the same time; retry
	ReasonTooManySeats     = "too_many_seats"    // 429: more seats than one booking may hold
	ReasonFairUseExceeded  = "fair_use_exceeded" // 429: the customer holds the most unpaid seats allowed
	ReasonTooManyAttempts  = "too_many_attempts" // 429: sign-in, sign-up or password change limits
)
