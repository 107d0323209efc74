package errs

import (
	"fmt"
	"testing"
)

func TestOneStatusPerCode(t *testing.T) {
	want := map[Code]int{Invalid: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409, Gone: 410,
		Unprocessable: 422, TooLarge: 413, Unsupported: 415, RateLimited: 429, Unavailable: 503, Internal: 500}
	for c, s := range want {
		if Status(c) != s || CodeForStatus(s) != c {
			t.Errorf("%s: %d / %s", c, Status(c), CodeForStatus(s))
		}
	}
	// A refused payment is a 400, as the original answered (402 is not used); 400 still maps
	// back to Invalid, the general code.
	if Status(PaymentFailed) != 400 || CodeForStatus(400) != Invalid || CodeForStatus(402) != Invalid {
		t.Errorf("PaymentFailed: %d; 400 -> %s; 402 -> %s", Status(PaymentFailed), CodeForStatus(400), CodeForStatus(402))
	}
	for c, s := range statuses {
		if s == 402 {
			t.Errorf("%s answers 402", c)
		}
	}
	if Status("nonsense") != 500 {
		t.Error("unknown codes must be 500")
	}
	wrapped := fmt.Errorf("outer: %w", E(Conflict, "seat taken"))
	if CodeOf(wrapped) != Conflict || !Is(wrapped, Conflict) || CodeOf(fmt.Errorf("plain")) != Internal {
		t.Error("CodeOf does not see through wrapping")
	}
}
