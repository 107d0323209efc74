package bookingtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/booking"
)

// The suite of bookings, payments and outcomes (see the package comment).

// badCursors are page cursors no store writes.
var badCursors = []string{"garbage", "-1", "1.5", "s-3", "o", " 3"}

func runRecords(run runFunc) {
	run("Bookings/CreateGet_KeepsTheID_UnknownNotFound_MalformedInvalid", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		b := newBooking(s, s.NewID(), msNow())
		if err := s.CreateBooking(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetBooking(ctx, b.ID)
		if err != nil || !sameBooking(*got, *b) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, b)
		}
		if _, err := s.GetBooking(ctx, s.NewID()); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		if _, err := s.GetBooking(ctx, "nope"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("malformed id: %v, want invalid", err)
		}
		bad := newBooking(s, b.UserID, msNow())
		bad.ID = "nope"
		if err := s.CreateBooking(ctx, bad); !errs.Is(err, errs.Invalid) {
			t.Fatalf("create with a malformed id: %v, want invalid", err)
		}
	})

	run("Bookings/SecondCreateOfAnIDFails_KeepsTheFirst_ListedOnce", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		b := newBooking(s, s.NewID(), msNow())
		if err := s.CreateBooking(ctx, b); err != nil {
			t.Fatal(err)
		}
		again := *b
		again.Seats, again.NoOfSeats, again.TotalCost = []string{"Z9"}, 1, 1
		if err := s.CreateBooking(ctx, &again); err == nil {
			t.Fatal("a second create of the id succeeded")
		}
		if got, err := s.GetBooking(ctx, b.ID); err != nil || !sameBooking(*got, *b) {
			t.Fatalf("after the second create: %+v, %v; want the first", got, err)
		}
		if got := pageBookings(t, ctx, s, b.UserID, 10, 0); !slices.Equal(got, []string{b.ID}) {
			t.Fatalf("pages list %v, want the booking once", got)
		}
	})

	run("Bookings/ListPage_NewestFirst_ByUser_LimitSkip_BadCursorInvalid", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		u1, u2 := s.NewID(), s.NewID()
		base := msNow().Add(-time.Hour)
		var all, mine []string // newest first
		for i := range 8 {
			user := u1
			if i%3 == 2 {
				user = u2
			}
			b := newBooking(s, user, base.Add(time.Duration(i)*time.Second))
			if err := s.CreateBooking(ctx, b); err != nil {
				t.Fatal(err)
			}
			all = append([]string{b.ID}, all...)
			if user == u1 {
				mine = append([]string{b.ID}, mine...)
			}
		}
		list := func(f core.BookingFilter) []string {
			t.Helper()
			bs, err := s.ListBookings(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return bookingIDs(bs)
		}
		for _, c := range []struct {
			f    core.BookingFilter
			want []string
		}{
			{core.BookingFilter{}, all},
			{core.BookingFilter{UserID: u1}, mine},
			{core.BookingFilter{Limit: 3, Skip: 2}, all[2:5]},
			{core.BookingFilter{UserID: u1, Limit: 2, Skip: 4}, mine[4:]},
			{core.BookingFilter{UserID: s.NewID()}, nil},
		} {
			if got := list(c.f); !slices.Equal(got, c.want) {
				t.Fatalf("list %+v: %v, want %v", c.f, got, c.want)
			}
		}
		for _, limit := range []int{1, 3, 100} {
			if got := pageBookings(t, ctx, s, "", limit, 0); !slices.Equal(got, all) {
				t.Fatalf("pages of %d: %v, want %v", limit, got, all)
			}
			if got := pageBookings(t, ctx, s, u1, limit, 0); !slices.Equal(got, mine) {
				t.Fatalf("u1's pages of %d: %v, want %v", limit, got, mine)
			}
		}
		if got := pageBookings(t, ctx, s, "", 3, 2); !slices.Equal(got, all[2:]) {
			t.Fatalf("pages of 3 after skipping 2: %v, want %v", got, all[2:])
		}
		if got := pageBookings(t, ctx, s, s.NewID(), 3, 0); len(got) != 0 {
			t.Fatalf("pages of a user without bookings: %v", got)
		}
		for _, c := range badCursors {
			if _, _, err := s.PageBookings(ctx, core.BookingFilter{Limit: 3, Before: c}); !errs.Is(err, errs.Invalid) {
				t.Fatalf("cursor %q: %v, want invalid", c, err)
			}
		}
	})

	run("Bookings/ProjectStatus_Copied_UnknownNoError_MalformedInvalid", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		a, b := newBooking(s, s.NewID(), msNow()), newBooking(s, s.NewID(), msNow())
		for _, bk := range []*core.Booking{a, b} {
			if err := s.CreateBooking(ctx, bk); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.ProjectStatus(ctx, core.BookingExpired, []string{a.ID, s.NewID()}); err != nil {
			t.Fatalf("project onto a booking and an unknown id: %v", err)
		}
		if got, _ := s.GetBooking(ctx, a.ID); got.Status != core.BookingExpired {
			t.Fatalf("a's status %s, want EXPIRED", got.Status)
		}
		if got, _ := s.GetBooking(ctx, b.ID); got.Status != core.BookingInProcess {
			t.Fatalf("b's status %s, want IN_PROCESS (not projected)", got.Status)
		}
		if err := s.ProjectStatus(ctx, core.BookingCancelled, []string{b.ID, "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("project onto a malformed id: %v, want invalid", err)
		}
	})

	run("OpenBookings/HoldEndingAfterOnly", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		base := msNow()
		var want []string
		for i, d := range []time.Duration{-time.Hour, 0, time.Minute, time.Hour} {
			b := newBooking(s, s.NewID(), base.Add(time.Duration(i)*time.Second))
			b.ExpiresAt = base.Add(d)
			if err := s.CreateBooking(ctx, b); err != nil {
				t.Fatal(err)
			}
			if d > 0 {
				want = append(want, b.ID)
			}
		}
		got, err := s.OpenBookings(ctx, base)
		if err != nil || !sameSet(bookingIDs(got), want) {
			t.Fatalf("open after %v: %v, %v; want %v", base, bookingIDs(got), err, want)
		}
	})

	run("Decide/FirstInsertIsTheFate_LaterOnesToldIt", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		b, undecided := s.NewID(), s.NewID()
		if o, err := s.Outcome(ctx, b); err != nil || o != nil {
			t.Fatalf("outcome of an undecided booking: %+v, %v; want nil", o, err)
		}
		paid := core.Outcome{BookingID: b, Status: core.BookingPaid, PaymentID: s.NewID(), DecidedAt: msNow()}
		got, won, err := s.Decide(ctx, paid)
		if err != nil || !won || !sameOutcome(got, paid) {
			t.Fatalf("first decide: %+v %v, %v; want it won", got, won, err)
		}
		expired := core.Outcome{BookingID: b, Status: core.BookingExpired, DecidedAt: msNow().Add(time.Second)}
		got, won, err = s.Decide(ctx, expired)
		if err != nil || won || !sameOutcome(got, paid) {
			t.Fatalf("second decide: %+v %v, %v; want the first in force, not won", got, won, err)
		}
		if o, err := s.Outcome(ctx, b); err != nil || o == nil || !sameOutcome(*o, paid) {
			t.Fatalf("outcome: %+v, %v; want %+v", o, err, paid)
		}
		os, err := s.Outcomes(ctx, []string{b, undecided})
		if err != nil || len(os) != 1 || !sameOutcome(os[b], paid) {
			t.Fatalf("outcomes: %+v, %v; want %s's alone", os, err, b)
		}
		if os, err := s.Outcomes(ctx, nil); err != nil || len(os) != 0 {
			t.Fatalf("outcomes of none: %+v, %v", os, err)
		}
	})

	const bookings = 4
	run(fmt.Sprintf("Decide/Race%dPerBookingOn%dBookings_OneInForce_EveryCallerToldTheSame", racetest.Racers, bookings), func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		ids := make([]string, bookings)
		for i := range ids {
			ids[i] = s.NewID()
		}
		statuses := []core.BookingStatus{core.BookingPaid, core.BookingExpired, core.BookingCancelled}
		tried := make([]core.Outcome, bookings*racetest.Racers)
		for i := range tried {
			tried[i] = core.Outcome{BookingID: ids[i%bookings], Status: statuses[i%len(statuses)], DecidedAt: msNow().Add(time.Duration(i) * time.Millisecond)}
			if tried[i].Status == core.BookingPaid {
				tried[i].PaymentID = s.NewID()
			}
		}
		got := make([]core.Outcome, len(tried))
		won := make([]bool, len(tried))
		errsOf := make([]error, len(tried))
		racetest.Race(len(tried), func(i int) { got[i], won[i], errsOf[i] = s.Decide(ctx, tried[i]) })
		winner := map[string]int{}
		for i := range tried {
			if errsOf[i] != nil {
				t.Fatalf("decide %d: %v", i, errsOf[i])
			}
			if !won[i] {
				continue
			}
			if j, dup := winner[tried[i].BookingID]; dup {
				t.Fatalf("decides %d and %d both won booking %s", j, i, tried[i].BookingID)
			}
			winner[tried[i].BookingID] = i
		}
		inForce, err := s.Outcomes(ctx, ids)
		if err != nil || len(inForce) != bookings {
			t.Fatalf("outcomes: %+v, %v", inForce, err)
		}
		for _, id := range ids {
			w, ok := winner[id]
			if !ok {
				t.Fatalf("no decide of %s won", id)
			}
			if !sameOutcome(inForce[id], tried[w]) {
				t.Fatalf("%s: in force %+v, but decide %d won with %+v", id, inForce[id], w, tried[w])
			}
		}
		for i := range tried {
			if !sameOutcome(got[i], inForce[tried[i].BookingID]) {
				t.Fatalf("decide %d was told %+v; in force is %+v", i, got[i], inForce[tried[i].BookingID])
			}
		}
	})

	run("Payments/CreateGetListPageProject", func(t *testing.T, ctx context.Context, s booking.BookingStore) {
		u1, u2 := s.NewID(), s.NewID()
		base := msNow().Add(-time.Hour)
		var all, mine []string // newest first
		var first *core.Payment
		for i := range 5 {
			user := u1
			if i%2 == 1 {
				user = u2
			}
			at := base.Add(time.Duration(i) * time.Second)
			p := &core.Payment{ID: s.NewID(), BookingID: s.NewID(), UserID: user, Amount: 100.5 + float64(i),
				Status: core.PaymentPending, CreatedAt: at, UpdatedAt: at}
			if err := s.CreatePayment(ctx, p); err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = p
			}
			all = append([]string{p.ID}, all...)
			if user == u1 {
				mine = append([]string{p.ID}, mine...)
			}
		}
		got, err := s.GetPayment(ctx, first.ID)
		if err != nil || fmt.Sprint(*got) != fmt.Sprint(*first) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, first)
		}
		if _, err := s.GetPayment(ctx, s.NewID()); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v, want not_found", err)
		}
		if _, err := s.GetPayment(ctx, "nope"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("malformed id: %v, want invalid", err)
		}
		again := *first
		again.Amount = 1
		if err := s.CreatePayment(ctx, &again); err == nil {
			t.Fatal("a second create of the id succeeded")
		}
		if got, _ := s.GetPayment(ctx, first.ID); got.Amount != first.Amount {
			t.Fatalf("after the second create: %+v, want the first", got)
		}
		if ps, err := s.ListPayments(ctx, core.PaymentFilter{}); err != nil || !slices.Equal(paymentIDs(ps), all) {
			t.Fatalf("list: %v, %v; want %v", paymentIDs(ps), err, all)
		}
		if ps, err := s.ListPayments(ctx, core.PaymentFilter{UserID: u1, Limit: 2, Skip: 1}); err != nil || !slices.Equal(paymentIDs(ps), mine[1:3]) {
			t.Fatalf("u1's, limit 2 skip 1: %v, %v; want %v", paymentIDs(ps), err, mine[1:3])
		}
		for _, limit := range []int{2, 100} {
			if got := pagePayments(t, ctx, s, "", limit); !slices.Equal(got, all) {
				t.Fatalf("pages of %d: %v, want %v", limit, got, all)
			}
			if got := pagePayments(t, ctx, s, u1, limit); !slices.Equal(got, mine) {
				t.Fatalf("u1's pages of %d: %v, want %v", limit, got, mine)
			}
		}
		for _, c := range badCursors {
			if _, _, err := s.PagePayments(ctx, core.PaymentFilter{Limit: 3, Before: c}); !errs.Is(err, errs.Invalid) {
				t.Fatalf("cursor %q: %v, want invalid", c, err)
			}
		}
		if err := s.ProjectPayments(ctx, core.PaymentFailed, "card declined", []string{all[0], all[1], s.NewID()}); err != nil {
			t.Fatal(err)
		}
		for i, id := range all {
			p, err := s.GetPayment(ctx, id)
			if want := i < 2; err != nil || (p.Status == core.PaymentFailed && p.Reason == "card declined") != want {
				t.Fatalf("payment %s after the projection: %+v, %v; want projected %v", id, p, err, want)
			}
		}
		if err := s.ProjectPayments(ctx, core.PaymentSuccess, "", []string{"nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("project onto a malformed id: %v, want invalid", err)
		}
	})
}

func newBooking(s booking.BookingStore, user string, at time.Time) *core.Booking {
	return &core.Booking{ID: s.NewID(), UserID: user, TheatreID: s.NewID(), MovieID: s.NewID(), ShowID: s.NewID(),
		Timing: "2030-06-01T18:30:00Z", NoOfSeats: 2, Seats: []string{"A1", "A2"}, TotalCost: 250.5,
		Status: core.BookingInProcess, ExpiresAt: at.Add(10 * time.Minute), CreatedAt: at, UpdatedAt: at,
		Slots: []int{0, 1}, Rounds: 1}
}

func sameBooking(a, b core.Booking) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.TheatreID == b.TheatreID && a.MovieID == b.MovieID &&
		a.ShowID == b.ShowID && a.Timing == b.Timing && a.NoOfSeats == b.NoOfSeats && slices.Equal(a.Seats, b.Seats) &&
		a.TotalCost == b.TotalCost && a.Status == b.Status && a.ExpiresAt.Equal(b.ExpiresAt) && a.PaymentID == b.PaymentID &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && slices.Equal(a.Slots, b.Slots) && a.Rounds == b.Rounds
}

func sameOutcome(a, b core.Outcome) bool {
	return a.BookingID == b.BookingID && a.Status == b.Status && a.PaymentID == b.PaymentID && a.DecidedAt.Equal(b.DecidedAt)
}

func bookingIDs(bs []core.Booking) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}

func paymentIDs(ps []core.Payment) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// pageBookings follows the cursors from the first page (skip items skipped) and returns the
// ids in order; every page must hold at most limit, the same user's.
func pageBookings(t *testing.T, ctx context.Context, s booking.BookingStore, user string, limit, skip int) []string {
	t.Helper()
	var ids []string
	f := core.BookingFilter{UserID: user, Limit: limit, Skip: skip}
	for range 1000 {
		page, next, err := s.PageBookings(ctx, f)
		if err != nil {
			t.Fatalf("page %+v: %v", f, err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		for _, b := range page {
			if user != "" && b.UserID != user {
				t.Fatalf("booking %s of %s in %s's pages", b.ID, b.UserID, user)
			}
			ids = append(ids, b.ID)
		}
		if next == "" {
			return ids
		}
		f.Before, f.Skip = next, 0
	}
	t.Fatal("more than 1000 pages")
	return nil
}

// pagePayments is pageBookings for payments.
func pagePayments(t *testing.T, ctx context.Context, s booking.BookingStore, user string, limit int) []string {
	t.Helper()
	var ids []string
	f := core.PaymentFilter{UserID: user, Limit: limit}
	for range 1000 {
		page, next, err := s.PagePayments(ctx, f)
		if err != nil {
			t.Fatalf("page %+v: %v", f, err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		for _, p := range page {
			if user != "" && p.UserID != user {
				t.Fatalf("payment %s of %s in %s's pages", p.ID, p.UserID, user)
			}
			ids = append(ids, p.ID)
		}
		if next == "" {
			return ids
		}
		f.Before = next
	}
	t.Fatal("more than 1000 pages")
	return nil
}
