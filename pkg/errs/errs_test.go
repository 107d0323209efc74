package errs

import (
	"fmt"
	"testing"
)

func TestOneStatusPerCode(t *testing.T) {
	want := map[Code]int{Invalid: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409, Gone: 410,
		PaymentFailed: 402, Unprocessable: 422, TooLarge: 413, RateLimited: 429, Unavailable: 503, Internal: 500}
	for c, s := range want {
		if Status(c) != s || CodeForStatus(s) != c {
			t.Errorf("%s: %d / %s", c, Status(c), CodeForStatus(s))
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
