package booking

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cineflow/cineflow/services/core"
)

// SeatLayout labels a show's seats row by row: rows A, B, ... Z, AA, AB, ..., seats 1..n in a
// row, e.g. A1..A10, B1..B10. The last row may be shorter.
type SeatLayout struct {
	Seats   int
	PerRow  int
	labels  []string
	index   map[string]int
	ranking []float64 // lower is better
	order   []int     // seat indexes, best first
}

// LayoutOf returns the seat layout of s (layouts are kept: a booking of a 2,000-seat show would
// otherwise lay out 2,000 labels each time).
func LayoutOf(s *core.Show) *SeatLayout {
	key := [2]int{s.NoOfSeats, s.SeatsPerRow}
	if l, ok := layouts.Load(key); ok {
		return l.(*SeatLayout)
	}
	l := NewSeatLayout(s.NoOfSeats, s.SeatsPerRow)
	if layoutCount.Add(1) <= maxLayouts {
		got, _ := layouts.LoadOrStore(key, l)
		return got.(*SeatLayout)
	}
	return l
}

// layouts caches layouts by (seats, per row): a few distinct hall sizes in practice, and a
// SeatLayout is read-only once made. Past maxLayouts sizes, layouts are made each time.
var (
	layouts     sync.Map
	layoutCount atomic.Int64
)

const maxLayouts = 1000

// NewSeatLayout lays out n seats, perRow to a row (DefaultSeatsPerRow when <= 0).
func NewSeatLayout(n, perRow int) *SeatLayout {
	if perRow <= 0 {
		perRow = core.DefaultSeatsPerRow
	}
	if n < 0 {
		n = 0
	}
	l := &SeatLayout{Seats: n, PerRow: perRow, labels: make([]string, n), index: make(map[string]int, n),
		ranking: make([]float64, n)}
	rows := (n + perRow - 1) / perRow
	// The best seats are about two thirds of the way back, in the middle of the row.
	idealRow := float64(rows-1) * 2 / 3
	for i := range n {
		row, col := i/perRow, i%perRow
		rowLen := min(perRow, n-row*perRow)
		l.labels[i] = RowName(row) + strconv.Itoa(col+1)
		l.index[l.labels[i]] = i
		center := float64(rowLen-1) / 2
		l.ranking[i] = math.Abs(float64(row)-idealRow)*1.5 + math.Abs(float64(col)-center)
	}
	l.order = make([]int, n)
	for i := range l.order {
		l.order[i] = i
	}
	slices.SortStableFunc(l.order, func(a, b int) int { return cmp.Compare(l.ranking[a], l.ranking[b]) })
	return l
}

// RowName is the letter name of a row: 0 -> A, 25 -> Z, 26 -> AA.
func RowName(row int) string {
	var b []byte
	for row >= 0 {
		b = append(b, byte('A'+row%26))
		row = row/26 - 1
	}
	slices.Reverse(b)
	return string(b)
}

// Labels returns every seat label in order.
func (l *SeatLayout) Labels() []string { return l.labels }

// Has reports whether label is a seat of the layout.
func (l *SeatLayout) Has(label string) bool { _, ok := l.index[label]; return ok }

// Normalize returns the canonical label of a client's seat name ("a1" -> "A1").
func Normalize(label string) string { return strings.ToUpper(strings.TrimSpace(label)) }

// SeatSet is a set of a layout's seats (free ones, usually), one flag per seat.
type SeatSet struct {
	l    *SeatLayout
	in   []bool
	size int
}

// NewSeatSet returns the set of every seat of l when all is set, else an empty one.
func (l *SeatLayout) NewSeatSet(all bool) *SeatSet {
	s := &SeatSet{l: l, in: make([]bool, l.Seats)}
	if all {
		for i := range s.in {
			s.in[i] = true
		}
		s.size = l.Seats
	}
	return s
}

// Has reports whether label is in the set.
func (s *SeatSet) Has(label string) bool { i, ok := s.l.index[label]; return ok && s.in[i] }

// Remove takes label out of the set.
func (s *SeatSet) Remove(label string) {
	if i, ok := s.l.index[label]; ok && s.in[i] {
		s.in[i] = false
		s.size--
	}
}

// Add puts label into the set.
func (s *SeatSet) Add(label string) {
	if i, ok := s.l.index[label]; ok && !s.in[i] {
		s.in[i] = true
		s.size++
	}
}

// Len is the number of seats in the set.
func (s *SeatSet) Len() int { return s.size }

// Clone copies the set.
func (s *SeatSet) Clone() *SeatSet { return &SeatSet{l: s.l, in: slices.Clone(s.in), size: s.size} }

// Labels lists the set's seats in layout order.
func (s *SeatSet) Labels() []string {
	out := make([]string, 0, s.size)
	for i, ok := range s.in {
		if ok {
			out = append(out, s.l.labels[i])
		}
	}
	return out
}

// Best picks n seats of free, preferring a contiguous run in one row with the best rank, then
// the best single seats. jitter > 0 perturbs the ranks (0..jitter each) so that concurrent
// requests that lost a race spread over different seats. It returns nil when fewer than n
// seats are free. It costs O(seats).
func (l *SeatLayout) Best(free *SeatSet, n int, jitter float64, rng *rand.Rand) []string {
	if n <= 0 || free.Len() < n {
		return nil
	}
	ranks := l.ranking
	if jitter > 0 && rng != nil {
		ranks = make([]float64, l.Seats)
		for i := range ranks {
			ranks[i] = l.ranking[i] + rng.Float64()*jitter
		}
	}
	// A run of n free seats in one row: a sliding window over each row.
	bestStart, bestScore := -1, math.Inf(1)
	if n <= l.PerRow {
		for rowStart := 0; rowStart < l.Seats; rowStart += l.PerRow {
			rowEnd := min(rowStart+l.PerRow, l.Seats)
			run, score := 0, 0.0
			for i := rowStart; i < rowEnd; i++ {
				if !free.in[i] {
					run, score = 0, 0
					continue
				}
				run++
				score += ranks[i]
				if run > n {
					score -= ranks[i-n]
					run = n
				}
				if run == n && score < bestScore {
					bestStart, bestScore = i-n+1, score
				}
			}
		}
	}
	if bestStart >= 0 {
		return slices.Clone(l.labels[bestStart : bestStart+n])
	}
	// The n best single seats.
	var order []int
	if jitter > 0 && rng != nil {
		order = make([]int, 0, free.Len())
		for i, ok := range free.in {
			if ok {
				order = append(order, i)
			}
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ranks[a], ranks[b]) })
	} else {
		order = l.order
	}
	out := make([]string, 0, n)
	for _, i := range order {
		if free.in[i] {
			out = append(out, l.labels[i])
			if len(out) == n {
				break
			}
		}
	}
	return out
}
