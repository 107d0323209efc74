package mongostore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
)

func newListsStore(t *testing.T) (*Bookings, *Bookings) {
	t.Helper()
	db := devdb.TestDB(t)
	a := NewBookings(db)
	if err := a.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, NewBookings(devdb.TestDBNamed(t, db.Name()))
}

func testBooking(s *Bookings, user string, at time.Time) *core.Booking {
	return &core.Booking{ID: s.NewID(), UserID: user, TheatreID: s.NewID(), MovieID: s.NewID(), ShowID: s.NewID(),
		Timing: "2030-06-01T18:30:00Z", NoOfSeats: 1, Seats: []string{"A1"}, TotalCost: 100, Status: core.BookingInProcess,
		ExpiresAt: at.Add(time.Hour), CreatedAt: at, UpdatedAt: at}
}

// pageAll follows the next cursors from the first page and returns the ids in order, failing
// on a page beyond max.
func pageAll(t *testing.T, s *Bookings, user string, limit int) []string {
	t.Helper()
	var ids []string
	before := ""
	for range 1000 {
		page, next, err := s.PageBookings(context.Background(), core.BookingFilter{UserID: user, Limit: limit, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		for _, b := range page {
			if user != "" && b.UserID != user {
				t.Fatalf("booking %s of %s in %s's list", b.ID, b.UserID, user)
			}
			ids = append(ids, b.ID)
		}
		if next == "" {
			return ids
		}
		before = next
	}
	t.Fatal("more than 1000 pages")
	return nil
}

func pagePayments(t *testing.T, s *Bookings, user string, limit int) []string {
	t.Helper()
	var ids []string
	before := ""
	for range 1000 {
		page, next, err := s.PagePayments(context.Background(), core.PaymentFilter{UserID: user, Limit: limit, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			if user != "" && p.UserID != user {
				t.Fatalf("payment %s of %s in %s's list", p.ID, p.UserID, user)
			}
			ids = append(ids, p.ID)
		}
		if next == "" {
			return ids
		}
		before = next
	}
	t.Fatal("more than 1000 pages")
	return nil
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s listed %d times", what, id, n)
		}
	}
	for _, id := range want {
		if seen[id] == 0 {
			t.Errorf("%s: %s not listed", what, id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%s: %d listed, want %d", what, len(seen), len(want))
	}
}

// TestListStreamsTwoWriters: two stores (replicas) create bookings and payments of a few
// customers at once. Each customer's list, and the list of all, pages through every one of
// them exactly once, from either store; the shared stream is gap-free; a sequence written one
// after another lists newest first.
func TestListStreamsTwoWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := newListsStore(t)
	if _, err := a.BackfillLists(ctx); err != nil { // an empty store: the marker at once
		t.Fatal(err)
	}
	users := []string{bson.NewObjectID().Hex(), bson.NewObjectID().Hex(), bson.NewObjectID().Hex()}
	const n = 240
	var mu sync.Mutex
	byUser, payByUser := map[string][]string{}, map[string][]string{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s := []*Bookings{a, b}[i%2]
			u := users[i%len(users)]
			bk := testBooking(s, u, now)
			if err := s.CreateBooking(ctx, bk); err != nil {
				t.Error(err)
				return
			}
			p := &core.Payment{ID: s.NewID(), BookingID: bk.ID, UserID: u, Amount: 100, Status: core.PaymentPending, CreatedAt: now, UpdatedAt: now}
			if err := s.CreatePayment(ctx, p); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			byUser[u] = append(byUser[u], bk.ID)
			payByUser[u] = append(payByUser[u], p.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	var all, allPay []string
	for _, u := range users {
		all, allPay = append(all, byUser[u]...), append(allPay, payByUser[u]...)
		sameSet(t, "user list via a", pageAll(t, a, u, 7), byUser[u])
		sameSet(t, "user list via b", pageAll(t, b, u, 50), byUser[u])
		sameSet(t, "user payments", pagePayments(t, b, u, 9), payByUser[u])
	}
	sameSet(t, "all via a", pageAll(t, a, "", 33), all)
	sameSet(t, "all via b", pageAll(t, NewBookings(a.db), "", 500), all)
	sameSet(t, "all payments", pagePayments(t, a, "", 40), allPay)
	for _, stream := range []string{allBookingsStream, allPaymentsStream} {
		for pos := range int64(n) {
			if ok, err := a.lists.exists(ctx, stream, pos); err != nil || !ok {
				t.Fatalf("stream %s: no entry at %d of %d (%v)", stream, pos, n, err)
			}
		}
	}

	// One after another: newest first, and skip counts from the newest.
	u := bson.NewObjectID().Hex()
	var seq []string
	for i := range 12 {
		bk := testBooking(a, u, now.Add(time.Duration(i)*time.Second))
		if err := []*Bookings{a, b}[i%2].CreateBooking(ctx, bk); err != nil {
			t.Fatal(err)
		}
		seq = append(seq, bk.ID)
	}
	slices.Reverse(seq)
	if got := pageAll(t, b, u, 5); !slices.Equal(got, seq) {
		t.Fatalf("newest first:\n got %v\nwant %v", got, seq)
	}
	page, next, err := a.PageBookings(ctx, core.BookingFilter{UserID: u, Limit: 4, Skip: 3})
	if err != nil || len(page) != 4 || page[0].ID != seq[3] || next == "" {
		t.Fatalf("skip 3: %d, %q, %v", len(page), next, err)
	}
	page, _, err = a.PageBookings(ctx, core.BookingFilter{UserID: u, Limit: 4, Before: next})
	if err != nil || len(page) != 4 || page[0].ID != seq[7] {
		t.Fatalf("after skip 3: %v", err)
	}
	if page, next, err := a.PageBookings(ctx, core.BookingFilter{UserID: u, Skip: 12}); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("skip past the end: %d, %q, %v", len(page), next, err)
	}
	for _, bad := range []string{"x", "-1", "o", "s", "01", "1e3", "o-2", "99999999999999999999"} {
		if _, _, err := a.PageBookings(ctx, core.BookingFilter{UserID: u, Before: bad}); !errs.Is(err, errs.Invalid) {
			t.Errorf("cursor %q: %v, want invalid", bad, err)
		}
	}
	// A cursor past the head starts at the head.
	if got, _, err := a.PageBookings(ctx, core.BookingFilter{UserID: u, Limit: 2, Before: "1000000"}); err != nil || len(got) != 2 || got[0].ID != seq[0] {
		t.Fatalf("cursor past the head: %v", err)
	}
}

// TestListPagesBoundedAndGaps: entries whose document was never written are skipped, and a
// page reads a bounded number of them before it stops with a next cursor; a missing entry (a
// gap, which writers never leave) neither stops a reader nor hides the entries above it.
func TestListPagesBoundedAndGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newListsStore(t)
	if _, err := s.BackfillLists(ctx); err != nil {
		t.Fatal(err)
	}
	u := bson.NewObjectID().Hex()
	now := time.Now().UTC()
	first := testBooking(s, u, now)
	if err := s.CreateBooking(ctx, first); err != nil {
		t.Fatal(err)
	}
	// 300 entries whose bookings never landed
	for range 300 {
		if err := s.lists.fg.append(ctx, listItem{stream: userBookingsStream(u), ref: s.NewID(), at: now}); err != nil {
			t.Fatal(err)
		}
	}
	last := testBooking(s, u, now)
	if err := s.CreateBooking(ctx, last); err != nil {
		t.Fatal(err)
	}
	page, next, err := s.PageBookings(ctx, core.BookingFilter{UserID: u, Limit: 10})
	if err != nil || len(page) != 1 || page[0].ID != last.ID || next == "" {
		t.Fatalf("first page: %d bookings, next %q, %v; want the last booking and a next cursor", len(page), next, err)
	}
	sameSet(t, "through the dead entries", pageAll(t, s, u, 10), []string{first.ID, last.ID})

	// Gaps: entries 1 and (the head's predecessor) deleted.
	u2 := bson.NewObjectID().Hex()
	var ids []string
	for range 6 {
		bk := testBooking(s, u2, now)
		if err := s.CreateBooking(ctx, bk); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bk.ID)
	}
	for _, pos := range []int64{1, 4} {
		if _, err := s.lists.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: entryID(userBookingsStream(u2), pos)}}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := NewBookings(s.db) // a process that knows no head: its search meets the gaps
	got := pageAll(t, fresh, u2, 2)
	sameSet(t, "around the gaps", got, []string{ids[0], ids[2], ids[3], ids[5]})
	// A writer fills the first gap it meets, and the rest stays listed.
	bk := testBooking(s, u2, now)
	if err := NewBookings(s.db).CreateBooking(ctx, bk); err != nil {
		t.Fatal(err)
	}
	sameSet(t, "a gap filled", pageAll(t, NewBookings(s.db), u2, 3), []string{ids[0], ids[2], ids[3], ids[5], bk.ID})
}

// oldBooking inserts a booking as an earlier version did: no entries, no "lx".
func oldBooking(t *testing.T, s *Bookings, user string, at time.Time) (string, string) {
	t.Helper()
	ctx := context.Background()
	bid, pid := bson.NewObjectIDFromTimestamp(at), bson.NewObjectIDFromTimestamp(at)
	if _, err := s.bookings.InsertOne(ctx, bson.D{{Key: "_id", Value: bid}, {Key: "userId", Value: user},
		{Key: "theatreId", Value: "t"}, {Key: "movieId", Value: "m"}, {Key: "showId", Value: "s"}, {Key: "timing", Value: "x"},
		{Key: "noOfSeats", Value: 1}, {Key: "seats", Value: bson.A{"A1"}}, {Key: "totalCost", Value: 100.0},
		{Key: "status", Value: "SUCCESSFULL"}, {Key: "paymentId", Value: pid.Hex()}, {Key: "expiresAt", Value: at},
		{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.payments.InsertOne(ctx, bson.D{{Key: "_id", Value: pid}, {Key: "bookingId", Value: bid.Hex()},
		{Key: "userId", Value: user}, {Key: "amount", Value: 100.0}, {Key: "status", Value: "SUCCESS"},
		{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}); err != nil {
		t.Fatal(err)
	}
	return bid.Hex(), pid.Hex()
}

// TestListsBackfill: a store an earlier version wrote (bookings and payments without entries).
// Until the backfill, the lists answer from the old query, with next cursors that page by
// skip; two replicas backfill at once; then the lists answer from the streams, each document
// once, the new bookings before the old ones, newest first. A booking an earlier-version
// replica writes after the backfill is listed after a catch-up pass.
func TestListsBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := newListsStore(t)
	u1, u2 := bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var old1, old2, oldPay1 []string
	for i := range 130 {
		u := []string{u1, u2}[i%2]
		bid, pid := oldBooking(t, a, u, base.Add(time.Duration(i)*time.Second))
		if u == u1 {
			old1, oldPay1 = append(old1, bid), append(oldPay1, pid)
		} else {
			old2 = append(old2, bid)
		}
	}
	// A booking of the new version, written before the backfill.
	early := testBooking(a, u1, time.Now().UTC())
	if err := a.CreateBooking(ctx, early); err != nil {
		t.Fatal(err)
	}
	// Before the backfill: the old query, every booking, paged by skip.
	page, next, err := a.PageBookings(ctx, core.BookingFilter{UserID: u1, Limit: 10})
	if err != nil || len(page) != 10 || page[0].ID != early.ID || next != "s10" {
		t.Fatalf("before the backfill: %d, %q, %v", len(page), next, err)
	}
	sameSet(t, "u1 before the backfill", pageAll(t, a, u1, 20), append(slices.Clone(old1), early.ID))

	var wg sync.WaitGroup
	for _, s := range []*Bookings{a, b} {
		wg.Go(func() {
			if r, err := s.BackfillLists(ctx); err != nil || r.CatchUpUntil.IsZero() {
				t.Errorf("backfill: %+v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if done, err := a.lists.isBackfilled(ctx); !done || err != nil {
		t.Fatalf("no marker: %v", err)
	}
	late := testBooking(b, u1, time.Now().UTC())
	if err := b.CreateBooking(ctx, late); err != nil {
		t.Fatal(err)
	}
	// From the streams: the new bookings first, then the old ones, newest first.
	want := []string{late.ID, early.ID}
	for i := len(old1) - 1; i >= 0; i-- {
		want = append(want, old1[i])
	}
	for _, s := range []*Bookings{a, b, NewBookings(a.db)} {
		if got := pageAll(t, s, u1, 9); !slices.Equal(got, want) {
			t.Fatalf("u1 after the backfill:\n got %v\nwant %v", got, want)
		}
	}
	sameSet(t, "u2", pageAll(t, b, u2, 500), old2)
	sameSet(t, "all", pageAll(t, a, "", 17), append(append(slices.Clone(old1), old2...), early.ID, late.ID))
	sameSet(t, "u1 payments", pagePayments(t, b, u1, 11), oldPay1)
	// The streams answer: a skip across into the old part, and a next cursor in it.
	page, next, err = a.PageBookings(ctx, core.BookingFilter{UserID: u1, Limit: 3, Skip: 4})
	if err != nil || len(page) != 3 || page[0].ID != want[4] || next == "" || next[0] != 'o' {
		t.Fatalf("skip 4: %d, %q, %v", len(page), next, err)
	}
	// An earlier version's replica writes another booking: listed after a catch-up pass.
	straggler, _ := oldBooking(t, a, u1, time.Now().UTC())
	if got := pageAll(t, a, u1, 50); slices.Contains(got, straggler) {
		t.Fatal("a booking without entries is listed before the catch-up: the lists do not read the streams")
	}
	r, err := b.BackfillLists(ctx)
	if err != nil || r.Indexed != 2 || r.CatchUpUntil.IsZero() { // the booking and its payment
		t.Fatalf("catch-up: %+v, %v", r, err)
	}
	if got := pageAll(t, a, u1, 50); len(got) != len(want)+1 || got[2] != straggler {
		t.Fatalf("after the catch-up the straggler comes after the new bookings: %v", got)
	}
	// Once the catch-up window is over, nothing more to do.
	b.now = func() time.Time { return time.Now().Add(2 * ListsCatchUpFor) }
	if r, err := b.BackfillLists(ctx); err != nil || r.Indexed != 0 || !r.CatchUpUntil.IsZero() {
		t.Fatalf("after the window: %+v, %v", r, err)
	}
}

// BenchmarkListPage reads the first page of a customer with one booking and of the list of
// all, after n bookings (go test -bench ListPage -benchtime 200x ./mongostore/).
func BenchmarkListPage(b *testing.B) {
	for _, n := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("bookings=%d", n), func(b *testing.B) {
			ctx := context.Background()
			db := devdb.TestDB(b)
			s := NewBookings(db)
			if err := s.EnsureIndexes(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := s.BackfillLists(ctx); err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			sem := make(chan struct{}, 64)
			now := time.Now().UTC()
			for i := range n {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if err := s.CreateBooking(ctx, testBooking(s, fmt.Sprintf("u%d", i%100), now)); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			one := bson.NewObjectID().Hex()
			if err := s.CreateBooking(ctx, testBooking(s, one, now)); err != nil {
				b.Fatal(err)
			}
			r := NewBookings(db)
			b.ResetTimer()
			for b.Loop() {
				if p, _, err := r.PageBookings(ctx, core.BookingFilter{UserID: one}); err != nil || len(p) != 1 {
					b.Fatal(err)
				}
				if p, _, err := r.PageBookings(ctx, core.BookingFilter{}); err != nil || len(p) != 50 {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestListEntryOnce: appending a document's entry again (a writer that could not tell whether
// its first insert landed, another process) finds it in the stream by its unique key, at
// whatever position it went: the stream holds it once, and the next entry follows it.
func TestListEntryOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newListsStore(t)
	u := bson.NewObjectID().Hex()
	now := time.Now().UTC()
	stream := userBookingsStream(u)
	ref := s.NewID()
	if err := s.lists.fg.append(ctx, listItem{stream: stream, ref: ref, at: now}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // fresh processes: each starts at the head, where the key refuses it
		if err := NewBookings(s.db).lists.fg.append(ctx, listItem{stream: stream, ref: ref, at: now}); err != nil {
			t.Fatal(err)
		}
	}
	next := s.NewID()
	if err := NewBookings(s.db).lists.fg.append(ctx, listItem{stream: stream, ref: next, at: now}); err != nil {
		t.Fatal(err)
	}
	got, err := s.lists.entries(ctx, stream, []int64{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || got[0].Ref != ref || got[1] == nil || got[1].Ref != next || got[2] != nil {
		t.Fatalf("stream: %+v %+v %+v; want %s then %s, nothing after", got[0], got[1], got[2], ref, next)
	}
}
