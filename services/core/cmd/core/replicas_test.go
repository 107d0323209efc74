package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// TestJobsLedByOneReplica: of two replicas on one database, only the one that leads the
// expiry runs the expirer (the other's never takes a step), and only one relays the outbox; when
// the leader stops, the other takes both jobs over within a few seconds and releases the next
// expired hold itself.
func TestJobsLedByOneReplica(t *testing.T) {
	t.Parallel()
	edit := func(c *Config) {
		c.HoldTTL, c.ExpiryInterval, c.TakeoverMargin = time.Second, 100*time.Millisecond, 100*time.Millisecond
	}
	a := startService(t, edit)
	b := startService(t, func(c *Config) { edit(c); c.DBURL = a.cfg.DBURL; c.AdminEmail, c.AdminPassword = "", "" })
	for _, job := range []string{JobExpiry, JobOutboxRelay} {
		if !a.m.Electors[job].Leader() || b.m.Electors[job].Leader() {
			t.Fatalf("%s: the first replica should lead it alone (a %v, b %v)", job, a.m.Electors[job].Leader(), b.m.Electors[job].Leader())
		}
	}
	released := func(s *service, showID string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			holds, err := mongostore.NewBookings(s.m.DB).ShowHolds(context.Background(), showID)
			if err != nil {
				t.Fatal(err)
			}
			if len(holds) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d holds remain 15 s after a 1 s TTL", len(holds))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	f := a.newShow(3, 100)
	tok, _ := b.customer()
	b.expect(b.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201)
	released(a, f.showID)
	if sa, sb := a.m.Bookings.ExpiryProgress().Steps, b.m.Bookings.ExpiryProgress().Steps; sa == 0 || sb != 0 {
		t.Fatalf("expirer steps: leader %d, other %d (want some, and none)", sa, sb)
	}
	a.m.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !b.m.Electors[JobExpiry].Leader() || !b.m.Electors[JobOutboxRelay].Leader() {
		if time.Now().After(deadline) {
			t.Fatal("the other replica did not take the jobs over within 10 s of the leader's stop")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.expect(b.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201)
	released(b, f.showID)
	if sb := b.m.Bookings.ExpiryProgress().Steps; sb == 0 {
		t.Fatal("the new leader took no expirer step")
	}
}

// TestLapsedSlotsSeenByAnotherReplica: a customer at the open-seat bound whose holds expire
// books again on the replica that did not release them, right after the release (before the
// clear deletes the slots): 201, because the releaser shared its notes of the lapsed slots (a
// replica that knew only its own notes answered 429 until the clear).
func TestLapsedSlotsSeenByAnotherReplica(t *testing.T) {
	t.Parallel()
	// The expirer's loop never ticks: the test takes its release step itself.
	edit := func(c *Config) {
		c.HoldTTL, c.ExpiryInterval, c.MaxOpenSeatsPerUser, c.TakeoverMargin = time.Second, time.Hour, 2, 100*time.Millisecond
	}
	a := startService(t, edit)
	b := startService(t, func(c *Config) { edit(c); c.DBURL = a.cfg.DBURL; c.AdminEmail, c.AdminPassword = "", "" })
	f := a.newShow(10, 100)
	tok, u := a.customer()
	bk := bookingOf(t, a.expect(a.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)}), 201))
	b.expect(b.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 429)
	// Once the hold's bucket of the expiry queue is due (its end, a bucket's width, the
	// margin), one step of the leader's expirer releases it: the booking is decided EXPIRED,
	// its slots are noted lapsed, not deleted yet.
	time.Sleep(time.Until(bk.ExpiresAt.Add(time.Second + 200*time.Millisecond)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := a.m.Bookings.ExpireDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expirer released nothing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := a.m.Bookings.ExpiryProgress(); p.Clear == 0 {
		t.Fatalf("the release step cleared already: %+v", p)
	}
	lapses := mongostore.NewLapses(a.m.DB)
	if notes, err := lapses.Lapsed(context.Background(), u.ID); err != nil || len(notes) < 2 {
		t.Fatalf("shared notes after the release: %v %v (want the booking's 2 slots)", notes, err)
	}
	r := b.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(2)})
	if r.status != 201 {
		t.Fatalf("booking on the other replica right after the release: %d %s (want 201)", r.status, r.raw)
	}
	// The clear deletes what is left and takes the notes back.
	for a.m.Bookings.ExpiryProgress().Clear > 0 {
		if _, err := a.m.Bookings.ExpireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if notes, err := lapses.Lapsed(context.Background(), u.ID); err != nil || len(notes) != 0 {
		t.Fatalf("shared notes after the clear: %v %v (want none)", notes, err)
	}
}

// TestFastReplicaKeepsToTheDatabaseClock: two replicas on one database, one whose clock runs 30 s
// ahead (and leads the expiry). A booking made on the other is not taken over by the fast one
// before its hold ends by the database's clock (neither by another customer's booking there nor
// by its expirer), and its customer pays it a second before that end: 200. The fast replica
// measures its offset, exports it and warns about it once.
func TestFastReplicaKeepsToTheDatabaseClock(t *testing.T) {
	t.Parallel()
	const ttl = 5 * time.Second
	edit := func(c *Config) { c.HoldTTL, c.ExpiryInterval = ttl, 100*time.Millisecond }
	cfg := testConfig(t)
	edit(&cfg)
	fast := startMain(t, &Main{Config: cfg, Now: func() time.Time { return time.Now().Add(30 * time.Second) }})
	normal := startService(t, func(c *Config) { edit(c); c.DBURL = fast.cfg.DBURL; c.AdminEmail, c.AdminPassword = "", "" })
	if off := fast.m.Clock.Offset(); off > -29*time.Second || off < -31*time.Second {
		t.Fatalf("the fast replica measured an offset of %v, want about -30s", off)
	}
	if n := strings.Count(fast.logs.String(), "differs from the database's"); n != 1 {
		t.Fatalf("%d warnings about the clock, want 1", n)
	}
	if !fast.m.Electors[JobExpiry].Leader() {
		t.Fatal("the fast replica, started first, should lead the expiry")
	}
	_, raw := fast.rawGet("/metrics", nil)
	var gauge float64
	if _, err := fmt.Sscanf(grepLines(string(raw), "cineflow_core_clock_offset_seconds -"), "cineflow_core_clock_offset_seconds %g", &gauge); err != nil || gauge > -29 || gauge < -31 {
		t.Fatalf("no offset gauge near -30 in /metrics (%v, %v):\n%s", gauge, err, grepLines(string(raw), "cineflow_core_clock"))
	}
	f := normal.newShow(1, 100)
	tok, _ := normal.customer()
	other, _ := fast.customer()
	bk := bookingOf(t, normal.expect(normal.do(req{method: "POST", path: base + "/bookings", token: tok, body: f.booking(1)}), 201))
	if d := time.Until(bk.ExpiresAt); d < ttl-time.Second || d > ttl+time.Second {
		t.Fatalf("the hold ends in %v, want about %v", d, ttl)
	}
	// Another customer keeps asking the fast replica for the seat until a second before the end.
	for time.Until(bk.ExpiresAt) > time.Second+200*time.Millisecond {
		if r := fast.do(req{method: "POST", path: base + "/bookings", token: other, body: f.booking(1)}); r.status != 409 {
			t.Fatalf("%v before the hold's end, the fast replica answered %d (want 409): %s", time.Until(bk.ExpiresAt), r.status, r.raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(time.Until(bk.ExpiresAt.Add(-time.Second)))
	r := normal.do(req{method: "POST", path: base + "/payments", token: tok, body: map[string]any{"bookingId": bk.ID, "amount": 100}})
	if r.status != 200 {
		t.Fatalf("paying %v before the hold's end: %d %s (want 200)", time.Until(bk.ExpiresAt), r.status, r.raw)
	}
	if got := bookingOf(t, fast.expect(fast.do(req{method: "GET", path: base + "/bookings/" + bk.ID, token: tok}), 200)); got.Status != core.BookingPaid {
		t.Fatalf("the booking is %s on the fast replica", got.Status)
	}
}
