package booking

import (
	"maps"
	"slices"
	"testing"
)

// TestLapsedSlots: a slot noted for several released bookings (rounds that tried it) names
// them all until each is dropped; slots won are not asked about; dropping what was never
// noted is harmless.
func TestLapsedSlots(t *testing.T) {
	l := lapsedSlots{users: map[string]map[int][]string{}}
	l.drop("nobody", "b0", []int{1})
	l.note("u", "b1", []int{1, 2})
	l.note("u", "b2", []int{2, 3})
	l.note("u", "b2", []int{2})
	got := l.of("u", []int{1, 2, 3, 4}, []int{3})
	if len(got) != 2 || !slices.Equal(got["b1"], []int{1, 2}) || !slices.Equal(got["b2"], []int{2}) {
		t.Fatalf("of: %v", got)
	}
	if other := l.of("v", []int{1, 2}, nil); len(other) != 0 {
		t.Fatalf("another customer's: %v", other)
	}
	l.drop("u", "b1", []int{1, 2})
	got = l.of("u", []int{1, 2, 3}, nil)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"b2"}) || !slices.Equal(got["b2"], []int{2, 3}) {
		t.Fatalf("after dropping b1: %v", got)
	}
	l.drop("u", "b2", []int{2, 3})
	if len(l.users) != 0 {
		t.Fatalf("left behind: %v", l.users)
	}
}
