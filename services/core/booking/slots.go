package booking

import (
	"context"
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

// slotHints remembers, per user, the slots this process saw taken: lost to another booking,
// or won by one of its own bookings (until that booking is settled or released, which forgets
// them), so that a booking tries free ones first and a customer's bookings in a row each find
// a free slot in their first round. A hint is only a guess: the insert decides.
type slotHints struct {
	mu        sync.Mutex
	users     map[string]*slotHint
	releasing map[string][]chan struct{} // user -> releases of slots under way in the background
	released  map[string]int64           // user -> background releases completed (bounded map)
}

// releases returns how many background releases of the user's slots have completed.
func (h *slotHints) releases(userID string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released[userID]
}

// releaseStarted records a background release of the user's slots; call done when it is over.
func (h *slotHints) releaseStarted(userID string) (done func()) {
	c := make(chan struct{})
	h.mu.Lock()
	if h.releasing == nil {
		h.releasing = map[string][]chan struct{}{}
	}
	h.releasing[userID] = append(h.releasing[userID], c)
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		list := h.releasing[userID]
		for i, x := range list {
			if x == c {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(h.releasing, userID)
		} else {
			h.releasing[userID] = list
		}
		if h.released == nil || len(h.released) >= 100000 {
			h.released = map[string]int64{}
		}
		h.released[userID]++
		h.mu.Unlock()
		close(c)
	}
}

// waitReleases waits for the user's background releases under way, and reports whether any
// completed since the count since (see releases) was taken.
func (h *slotHints) waitReleases(ctx context.Context, userID string, since int64) bool {
	h.mu.Lock()
	list := slices.Clone(h.releasing[userID])
	h.mu.Unlock()
	for _, c := range list {
		select {
		case <-c:
		case <-ctx.Done():
			return false
		}
	}
	return h.releases(userID) != since
}

type slotHint struct {
	taken map[int]time.Time
}

// candidates returns slots of [0, max) to try, none of them in tried: n slots not seen taken
// (while the hint is younger than ttl) in random order, so that concurrent bookings of one
// customer spread over the free slots instead of queueing for one; or, when there are not n
// of those, every slot left (the ones seen taken last): one round settles what a customer near
// the bound may still hold, and the caller gives back what it won beyond n. Its cost does not
// grow with max: where free slots are plenty it samples them.
func (h *slotHints) candidates(userID string, max, n int, tried []int, now time.Time, ttl time.Duration, rng *rand.Rand) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var taken map[int]time.Time
	if u := h.users[userID]; u != nil {
		taken = u.taken
	}
	known := func(k int) bool {
		at, ok := taken[k]
		return ok && now.Sub(at) < ttl
	}
	if max > 4*(len(tried)+len(taken)+n) { // sparse: sample
		out := make([]int, 0, n)
		for attempts := 0; len(out) < n && attempts < 20*n; attempts++ {
			k := rng.IntN(max)
			if !slices.Contains(tried, k) && !known(k) && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
		if len(out) == n {
			return out
		}
	}
	var first, last []int
	for k := range max {
		if slices.Contains(tried, k) {
			continue
		}
		if known(k) {
			last = append(last, k)
		} else {
			first = append(first, k)
		}
	}
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	if len(first) >= n {
		return first[:n]
	}
	return append(first, last...)
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

// lapsedSlots remembers the fair-use slots of bookings the expirer has released but whose
// slot documents it has not deleted yet (it deletes them when it clears their bucket): a
// booking of the same customer that finds one taken deletes it and takes it (see claimSlots).
// Only bookings decided already are noted, so deleting their slots is always right. An intent
// names the slots its round tried, won or not, so a slot may be noted for several bookings:
// the one that holds it is among them.
//
// The notes in users are this process's. With a store, the expirer also shares the notes of
// every bucket it has released (see shareLapses), so that a customer's booking on another
// replica finds them too (withShared).
type lapsedSlots struct {
	mu    sync.Mutex
	users map[string]map[int][]string // user -> slot -> bookings that may hold it

	store  LapseStore
	shared map[string]bool // buckets released whose notes are shared (true: some were written), until cleared (under expiryMu)
}

// note records that booking, decided, may still have the user's slots.
func (l *lapsedSlots) note(userID, booking string, slots []int) {
	if len(slots) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.users[userID]
	if m == nil {
		m = map[int][]string{}
		l.users[userID] = m
	}
	for _, k := range slots {
		if !slices.Contains(m[k], booking) {
			m[k] = append(m[k], booking)
		}
	}
}

// of returns, by booking, the slots of the user among slots (and not in won) that a released
// booking may hold.
func (l *lapsedSlots) of(userID string, slots, won []int) map[string][]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out map[string][]int
	for _, k := range slots {
		if slices.Contains(won, k) {
			continue
		}
		for _, holder := range l.users[userID][k] {
			if out == nil {
				out = map[string][]int{}
			}
			out[holder] = append(out[holder], k)
		}
	}
	return out
}

// drop forgets the booking's slots (deleted).
func (l *lapsedSlots) drop(userID, booking string, slots []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.users[userID]
	if m == nil {
		return
	}
	for _, k := range slots {
		m[k] = slices.DeleteFunc(m[k], func(b string) bool { return b == booking })
		if len(m[k]) == 0 {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		delete(l.users, userID)
	}
}
