package core

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultSeatsPerRow is the row length of a show that does not give one.
const DefaultSeatsPerRow = 10

// SeatLayout labels a show's seats row by row: rows A, B, ... Z, AA, AB, ..., seats 1..n in a
// row, e.g. A1..A10, B1..B10. The last row may be shorter.
type SeatLayout struct {
	Seats   int
	PerRow  int
	labels  []string
	index   map[string]int
	ranking []float64 // lower is better
}

// Layout returns the seat layout of s (layouts are kept: a booking of a 2,000-seat show would
// otherwise lay out 2,000 labels each time).
func (s *Show) Layout() *SeatLayout {
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
		perRow = DefaultSeatsPerRow
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

// Best picks n seats among free (labels), preferring a contiguous run in one row with the
// best rank, then the best single seats. jitter > 0 perturbs the ranks (0..jitter each) so
// that concurrent requests that lost a race spread over different seats. It returns nil when
// fewer than n seats are free.
func (l *SeatLayout) Best(free map[string]bool, n int, jitter float64, rng *rand.Rand) []string {
	if n <= 0 || len(free) < n {
		return nil
	}
	rank := func(i int) float64 {
		r := l.ranking[i]
		if jitter > 0 && rng != nil {
			r += rng.Float64() * jitter
		}
		return r
	}
	ranks := make([]float64, l.Seats)
	for i := range l.Seats {
		if free[l.labels[i]] {
			ranks[i] = rank(i)
		} else {
			ranks[i] = math.Inf(1)
		}
	}
	// A run of n free seats in one row.
	bestStart, bestScore := -1, math.Inf(1)
	if n <= l.PerRow {
		for start := 0; start+n <= l.Seats; start++ {
			if start/l.PerRow != (start+n-1)/l.PerRow {
				continue
			}
			score := 0.0
			for i := start; i < start+n && !math.IsInf(score, 1); i++ {
				score += ranks[i]
			}
			if score < bestScore {
				bestStart, bestScore = start, score
			}
		}
	}
	if bestStart >= 0 {
		return slices.Clone(l.labels[bestStart : bestStart+n])
	}
	idx := make([]int, 0, len(free))
	for i := range l.Seats {
		if !math.IsInf(ranks[i], 1) {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		if ranks[a] < ranks[b] {
			return -1
		}
		if ranks[a] > ranks[b] {
			return 1
		}
		return a - b
	})
	out := make([]string, 0, n)
	for _, i := range idx[:n] {
		out = append(out, l.labels[i])
	}
	return out
}
