package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// probePath answers 404 to a signed-in caller (no such booking) and 401 to a refused token.
var probePath = base + "/bookings/" + bson.NilObjectID.Hex()

// alive reports whether s accepts tok (anything but 401).
func (s *service) alive(tok string) bool {
	s.t.Helper()
	r := s.do(req{method: "GET", path: probePath, token: tok})
	if r.status != 401 && r.status != 404 {
		s.t.Errorf("probe: %d %s", r.status, r.raw)
	}
	return r.status != 401
}

// issuedAt is tok's iat (not verified: the test only sorts its own tokens).
func issuedAt(t *testing.T, tok string) time.Time {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.IssuedAt == nil {
		t.Fatalf("token without iat: %v", err)
	}
	return c.IssuedAt.Time
}

// TestResetEndsEverySession: two replicas on one database, round after round. Signers-in
// hammer sign-in with the current password through both replicas, each using every token it
// gets at once through the other replica (so both replicas know the user, in their user
// caches too), while the user resets the password through one of them. Once the reset has
// answered 200, every token obtained in the round, whenever it was issued (the same second as
// the reset, or by a sign-in that read the user before the reset and answered after it), is
// refused by both replicas: at once, and again after the signers-in have stopped.
func TestResetEndsEverySession(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	svc := []*service{a, b}
	const email = "hammered@example.com"
	a.expect(a.signUp("Hammered", email, "password-0", ""), 201)
	pw := "password-0"
	const rounds, signers = 12, 4
	var survivors, total, sameSecond, usedBefore int
	for round := range rounds {
		via := svc[round%2]
		tok := via.token(email, pw)
		var (
			mu     sync.Mutex
			tokens []string
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range signers {
			s, other := svc[i%2], svc[(i+1)%2]
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					r := s.signIn(email, pw)
					switch r.status {
					case 200:
						tk := sessionOf(t, r).Token
						mu.Lock()
						tokens = append(tokens, tk)
						mu.Unlock()
						if other.alive(tk) {
							mu.Lock()
							usedBefore++
							mu.Unlock()
						}
					case 401, 429: // the password was reset; a parallel failing attempt of the pair
					default:
						t.Errorf("round %d: sign-in answered %d %s", round, r.status, r.raw)
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(150+round*73%400) * time.Millisecond) // the reset falls anywhere in a second
		next := fmt.Sprintf("password-%d", round+1)
		r := via.do(req{method: "PATCH", path: base + "/auth/reset", token: tok,
			body: map[string]string{"oldPassword": pw, "newPassword": next}})
		resetAt := time.Now()
		if r.status != 200 {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: reset answered %d %s", round, r.status, r.raw)
		}
		check := func(toks []string) {
			for _, tk := range toks {
				for k, s := range svc {
					if s.alive(tk) {
						survivors++
						if survivors <= 5 {
							t.Errorf("round %d: a token issued at %s (reset answered at %s) still works on replica %d",
								round, issuedAt(t, tk).Format(time.TimeOnly), resetAt.Format("15:04:05.000"), k)
						}
					}
				}
			}
		}
		mu.Lock()
		early := len(tokens)
		snapshot := append([]string{tok}, tokens...)
		mu.Unlock()
		check(snapshot) // at once, while the signers-in still hammer
		close(stop)
		wg.Wait()
		check(tokens[early:]) // sign-ins that raced the reset and answered after it
		for _, tk := range append([]string{tok}, tokens...) {
			if issuedAt(t, tk).Unix() == resetAt.Unix() {
				sameSecond++
			}
		}
		total += len(tokens) + 1
		pw = next
		for _, s := range svc {
			if fresh := s.token(email, pw); !s.alive(fresh) {
				t.Fatalf("round %d: a token of the new password is refused", round)
			}
		}
	}
	t.Logf("%d rounds: %d tokens (%d issued in the second of their round's reset, %d used before it), %d survivals",
		rounds, total, sameSecond, usedBefore, survivors)
	if survivors > 0 {
		t.Fatalf("%d token checks after a reset answered 200 were accepted", survivors)
	}
	if total < rounds*signers || usedBefore == 0 {
		t.Fatalf("%d tokens, %d used: the race did not run", total, usedBefore)
	}
}
