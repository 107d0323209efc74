package core

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// DefaultMaxOpenSeatsPerUser bounds the seats one customer holds in unpaid bookings, across
// all shows.
const DefaultMaxOpenSeatsPerUser = 10

// Fair use: a customer's unpaid seats are counted by slots. Each seat of an unpaid booking
// occupies one of the customer's MaxOpenSeatsPerUser slots, claimed like a seat: an insert
// into the unique key (user, slot), so that two requests (or two replicas) can never give one
// customer more slots than there are. A booking's slots are released when it is paid,
// cancelled or expires (and, if its process dies first, by the expirer, which finds them in
// the booking's intent).

// slotHints remembers, per user, the slots this process saw taken, so that a booking tries
// free ones first. A hint is only a guess: the insert decides.
type slotHints struct {
	mu    sync.Mutex
	users map[string]*slotHint
}

type slotHint struct {
	taken map[int]time.Time
}

// candidates returns up to n slots of [0, max) to try, skipping those in tried; slots seen
// taken (while the hint is younger than ttl) come last. The order is random otherwise, so that
// concurrent bookings of one customer spread over the free slots instead of queueing for one.
func (h *slotHints) candidates(userID string, max, n int, tried []int, now time.Time, ttl time.Duration, rng *rand.Rand) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var taken map[int]time.Time
	if u := h.users[userID]; u != nil {
		taken = u.taken
	}
	var first, last []int
	for k := range max {
		if slices.Contains(tried, k) {
			continue
		}
		if at, ok := taken[k]; ok && now.Sub(at) < ttl {
			last = append(last, k)
		} else {
			first = append(first, k)
		}
	}
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	out := append(first, last...)
	return out[:min(n, len(out))]
}

// seen records the slots found taken (or, with taken false, freed).
func (h *slotHints) seen(userID string, slots []int, taken bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.users[userID]
	if u == nil {
		if !taken {
			return
		}
		if len(h.users) >= 100000 {
			clear(h.users)
		}
		u = &slotHint{taken: map[int]time.Time{}}
		h.users[userID] = u
	}
	for _, k := range slots {
		if taken {
			u.taken[k] = now
		} else {
			delete(u.taken, k)
		}
	}
	if len(u.taken) == 0 {
		delete(h.users, userID)
	}
}

// prune forgets hints older than ttl.
func (h *slotHints) prune(now time.Time, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, u := range h.users {
		for k, at := range u.taken {
			if now.Sub(at) >= ttl {
				delete(u.taken, k)
			}
		}
		if len(u.taken) == 0 {
			delete(h.users, id)
		}
	}
}
