package mongostore_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// walk follows a list's Next from its first page and returns every ticket seen, in order,
// and the pages read.
func walk(t *testing.T, s *mongostore.Store, f notification.ListFilter) ([]notification.Ticket, int) {
	t.Helper()
	var seen []notification.Ticket
	for pages := 1; pages <= 1000; pages++ {
		page, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatalf("List %+v: %v", f, err)
		}
		if len(page.Tickets) > f.Limit {
			t.Fatalf("page of %d tickets, limit %d", len(page.Tickets), f.Limit)
		}
		seen = append(seen, page.Tickets...)
		if page.Next == "" {
			return seen, pages
		}
		f.Cursor, f.Before, f.Skip = page.Next, notification.ID{}, 0
	}
	t.Fatal("paging does not end")
	return nil, 0
}

func ids(ts []notification.Ticket) []notification.ID {
	out := make([]notification.ID, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

func reversed(in []notification.ID) []notification.ID {
	out := slices.Clone(in)
	slices.Reverse(out)
	return out
}

// decideAll records outcomes of the tickets' current generations the way a sweep does (the
// store's Decide), without projecting them onto the ticket documents.
func decideAll(t *testing.T, s *mongostore.Store, st notification.Status, tickets ...notification.ID) {
	t.Helper()
	ctx := context.Background()
	var out []notification.Outcome
	for _, id := range tickets {
		g, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		o := notification.Outcome{Key: notification.AssignmentKey(id, g.Generation), Ticket: id, Generation: g.Generation,
			Status: st, Attempts: 1, At: msNow()}
		if st == notification.StatusFailed {
			o.Error = "550 mailbox unavailable"
		} else {
			sent := msNow()
			o.SentAt, o.ProviderMessageID = &sent, "msg-"+id.Hex()
		}
		out = append(out, o)
	}
	if _, err := s.Decide(ctx, out); err != nil {
		t.Fatal(err)
	}
}

func TestListPagesEveryTicketOnceNewestFirst(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	var created []notification.ID
	for range 23 {
		created = append(created, newTicket(t, s).ID)
	}
	want := reversed(created)
	for _, limit := range []int{1, 5, 23, 100} {
		got, pages := walk(t, s, notification.ListFilter{Limit: limit})
		if !slices.Equal(ids(got), want) {
			t.Fatalf("limit %d: walked %v, want %v", limit, ids(got), want)
		}
		if wantPages := (23 + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d (a Next only while tickets remain)", limit, pages, wantPages)
		}
	}
	// skip, alone and from a cursor.
	page, err := s.List(ctx, notification.ListFilter{Limit: 4, Skip: 5})
	if err != nil || !slices.Equal(ids(page.Tickets), want[5:9]) || page.Next == "" {
		t.Fatalf("skip 5 limit 4: %v %q %v, want %v", ids(page.Tickets), page.Next, err, want[5:9])
	}
	page, err = s.List(ctx, notification.ListFilter{Limit: 4, Skip: 2, Cursor: page.Next})
	if err != nil || !slices.Equal(ids(page.Tickets), want[11:15]) {
		t.Fatalf("skip 2 after the cursor: %v %v, want %v", ids(page.Tickets), err, want[11:15])
	}
	if page, err := s.List(ctx, notification.ListFilter{Limit: 4, Skip: 100000}); err != nil || len(page.Tickets) != 0 || page.Next != "" {
		t.Fatalf("skip past the end: %v %q %v", ids(page.Tickets), page.Next, err)
	}
	// The cursor of earlier versions: a ticket id, the tickets older than it.
	page, err = s.List(ctx, notification.ListFilter{Limit: 3, Before: want[6]})
	if err != nil || !slices.Equal(ids(page.Tickets), want[7:10]) {
		t.Fatalf("before %s: %v %v, want %v", want[6].Hex(), ids(page.Tickets), err, want[7:10])
	}
	// A cursor of another list, or not a cursor at all.
	page, _ = s.List(ctx, notification.ListFilter{Limit: 3})
	for _, f := range []notification.ListFilter{
		{Limit: 3, Status: notification.StatusSuccess, Cursor: page.Next}, {Limit: 3, Cursor: "t"}, {Limit: 3, Cursor: "t12x"},
		{Limit: 3, Cursor: "t1.2"}, {Limit: 3, Cursor: "t01"}, {Limit: 3, Cursor: "t5~0"}, {Limit: 3, Cursor: "q5"},
	} {
		if _, err := s.List(ctx, f); !errs.Is(err, errs.Invalid) {
			t.Errorf("List %+v: %v, want invalid", f, err)
		}
	}
	// A cursor above the head (not made here) starts at the newest ticket.
	if page, err := s.List(ctx, notification.ListFilter{Limit: 2, Cursor: "t999999"}); err != nil || !slices.Equal(ids(page.Tickets), want[:2]) {
		t.Fatalf("cursor above the head: %v %v", ids(page.Tickets), err)
	}
}

// Two replicas create at once, and two sweeps record the same outcomes at once: every ticket
// is listed once in each list, with no gap in the indexes (a walk would stop at one).
func TestListConcurrentWritersListEachTicketOnce(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	replicas := []*mongostore.Store{s, mongostore.New(db)}
	const n = 120
	var mu sync.Mutex
	var created []notification.ID
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tk, _, err := replicas[i%2].Create(context.Background(), &notification.Ticket{Subject: "s", Content: "c",
				RecipientEmails: []string{"a@example.com"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			created = append(created, tk.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	once := func(what string, got []notification.Ticket, want []notification.ID) {
		t.Helper()
		seen := map[notification.ID]int{}
		for _, id := range ids(got) {
			seen[id]++
		}
		if len(got) != len(want) {
			t.Errorf("%s: walked %d tickets, want %d", what, len(got), len(want))
		}
		for _, id := range want {
			if seen[id] != 1 {
				t.Errorf("%s: ticket %s listed %d times", what, id.Hex(), seen[id])
			}
		}
	}
	got, _ := walk(t, s, notification.ListFilter{Limit: 7})
	once("all", got, created)
	delivered := created[:80]
	for range 3 { // sweeps racing on the same batches, in chunks of 10
		for i := 0; i < len(delivered); i += 10 {
			wg.Go(func() { decideAll(t, replicas[i/10%2], notification.StatusSuccess, delivered[i:i+10]...) })
		}
	}
	wg.Wait()
	got, _ = walk(t, s, notification.ListFilter{Status: notification.StatusSuccess, Limit: 9})
	once("SUCCESS", got, delivered)
	got, _ = walk(t, replicas[1], notification.ListFilter{Status: notification.StatusPending, Limit: 9})
	once("PENDING", got, created[80:])
}

// Right after a sweep records outcomes (before any projection onto the ticket documents),
// each status list holds exactly the tickets of that status, most recently decided first.
func TestStatusListsRightAfterDelivery(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	var created []notification.ID
	for range 12 {
		created = append(created, newTicket(t, s).ID)
	}
	decideAll(t, s, notification.StatusSuccess, created[0], created[2], created[3])
	decideAll(t, s, notification.StatusFailed, created[5])
	decideAll(t, s, notification.StatusSuccess, created[8])
	if st := storedStatus(t, db, created[8]).Status; st != notification.StatusPending {
		t.Fatalf("stored status %s: the test wants unprojected outcomes", st)
	}
	for _, c := range []struct {
		status notification.Status
		want   []notification.ID
	}{
		{notification.StatusSuccess, []notification.ID{created[8], created[3], created[2], created[0]}},
		{notification.StatusFailed, []notification.ID{created[5]}},
		{notification.StatusPending, []notification.ID{created[11], created[10], created[9], created[7], created[6], created[4], created[1]}},
		{"", reversed(created)},
	} {
		for _, limit := range []int{2, 20} {
			got, _ := walk(t, s, notification.ListFilter{Status: c.status, Limit: limit})
			if !slices.Equal(ids(got), c.want) {
				t.Errorf("%q limit %d: %v, want %v", c.status, limit, ids(got), c.want)
			}
			for _, tk := range got {
				if c.status != "" && tk.Status != c.status {
					t.Errorf("%q list shows a %s ticket", c.status, tk.Status)
				}
			}
		}
	}
	// A decision repeated by a sweep that took a batch over lists nothing twice.
	decideAll(t, s, notification.StatusSuccess, created[8])
	if got, _ := walk(t, s, notification.ListFilter{Status: notification.StatusSuccess, Limit: 20}); len(got) != 4 {
		t.Errorf("SUCCESS after a repeated decision: %v", ids(got))
	}
}

// A FAILED ticket re-queued leaves the FAILED list for the head of the PENDING list, and
// delivered in its new generation, moves on to SUCCESS.
func TestRequeuedTicketMovesBetweenLists(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	a, b, c := newTicket(t, s).ID, newTicket(t, s).ID, newTicket(t, s).ID
	decideAll(t, s, notification.StatusFailed, a, b)
	list := func(st notification.Status) []notification.ID {
		t.Helper()
		got, _ := walk(t, s, notification.ListFilter{Status: st, Limit: 2})
		for _, tk := range got {
			if tk.Status != st {
				t.Errorf("%s list shows %s as %s", st, tk.ID.Hex(), tk.Status)
			}
		}
		return ids(got)
	}
	check := func(when string, pending, success, failed []notification.ID) {
		t.Helper()
		for st, want := range map[notification.Status][]notification.ID{notification.StatusPending: pending,
			notification.StatusSuccess: success, notification.StatusFailed: failed} {
			if got := list(st); !slices.Equal(got, want) {
				t.Errorf("%s: %s list %v, want %v", when, st, got, want)
			}
		}
		if got, _ := walk(t, s, notification.ListFilter{Limit: 2}); !slices.Equal(ids(got), []notification.ID{c, b, a}) {
			t.Errorf("%s: all tickets %v", when, ids(got))
		}
	}
	check("failed", []notification.ID{c}, nil, []notification.ID{b, a})
	time.Sleep(2 * time.Millisecond) // the re-queue happens after c was created
	if _, err := s.Requeue(ctx, a); err != nil {
		t.Fatal(err)
	}
	check("re-queued", []notification.ID{a, c}, nil, []notification.ID{b})
	decideAll(t, s, notification.StatusSuccess, a)
	check("delivered in generation 1", []notification.ID{c}, []notification.ID{a}, []notification.ID{b})
	if g, err := s.Get(ctx, a); err != nil || g.Generation != 1 || g.Status != notification.StatusSuccess {
		t.Fatalf("ticket %+v %v", g, err)
	}
}

// A page examines a bounded number of entries: a PENDING list over many delivered tickets
// answers short pages, each with a Next, until it reaches the pending ones.
func TestListPageStopsEarlyWithANext(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	var created []notification.ID
	for range 320 {
		created = append(created, newTicket(t, s).ID)
	}
	for i := 2; i < len(created); i += 100 {
		decideAll(t, s, notification.StatusSuccess, created[i:min(i+100, len(created))]...)
	}
	f := notification.ListFilter{Status: notification.StatusPending, Limit: 20}
	first, err := s.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Tickets) != 0 || first.Next == "" {
		t.Fatalf("first page: %d tickets, next %q; want none yet, and a next", len(first.Tickets), first.Next)
	}
	got, pages := walk(t, s, f)
	if !slices.Equal(ids(got), []notification.ID{created[1], created[0]}) || pages < 2 {
		t.Fatalf("PENDING: %v in %d pages", ids(got), pages)
	}
}

// legacyTicket inserts a ticket document as an earlier version stored it (no list entry).
func legacyTicket(t *testing.T, db *mongo.Database, at time.Time, st notification.Status, gen int) notification.ID {
	t.Helper()
	id := bson.NewObjectIDFromTimestamp(at)
	doc := bson.M{"_id": id, "subject": "s", "content": "c", "recepientEmails": bson.A{"old@example.com"},
		"status": st, "attempts": 0, "errors": bson.A{}, "generation": gen, "batch": "", "nextAttemptAt": at,
		"createdAt": at, "updatedAt": at}
	insert(t, db, mongostore.TicketsCollection, doc)
	return notification.ID(id)
}

func TestBackfillListsEarlierTickets(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t)
	ctx := context.Background()
	// An earlier version's data: 30 tickets, some delivered, one failed, one re-queued.
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var legacy []notification.ID // oldest first
	for i := range 30 {
		legacy = append(legacy, legacyTicket(t, db, base.Add(time.Duration(i)*time.Second), notification.StatusPending, 0))
	}
	outcome := func(id notification.ID, gen int, st notification.Status) {
		insert(t, db, mongostore.OutcomesCollection, notification.Outcome{Key: notification.AssignmentKey(id, gen), Ticket: id,
			Generation: gen, Status: st, At: base})
	}
	for _, i := range []int{0, 1, 2, 10, 20} {
		outcome(legacy[i], 0, notification.StatusSuccess)
	}
	outcome(legacy[5], 0, notification.StatusFailed)
	outcome(legacy[7], 0, notification.StatusFailed)
	insert(t, db, mongostore.RequeuesCollection, notification.GenerationRecord{Key: notification.AssignmentKey(legacy[7], 0),
		Ticket: legacy[7], At: base.Add(time.Minute)})

	s := mongostore.New(db)
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	var fresh []notification.ID
	for range 3 {
		fresh = append(fresh, newTicket(t, s).ID)
	}
	everything := append(reversed(fresh), reversed(legacy)...)
	// Until the back-fill is done, lists are read from the tickets (cursors are ticket ids).
	page, err := s.List(ctx, notification.ListFilter{Limit: 5})
	if err != nil || !slices.Equal(ids(page.Tickets), everything[:5]) || page.Next != everything[4].Hex() {
		t.Fatalf("before the back-fill: %v next %q %v", ids(page.Tickets), page.Next, err)
	}
	// Two replicas back-fill at once; a third later finds nothing to do.
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i := range counts {
		wg.Go(func() {
			r := mongostore.New(db)
			n, err := r.BackfillList(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != len(legacy) {
		t.Errorf("back-fills listed %v tickets, want %d in all", counts, len(legacy))
	}
	if n, err := mongostore.New(db).BackfillList(ctx); err != nil || n != 0 {
		t.Errorf("back-fill again: %d %v", n, err)
	}
	// A cursor of the scan carries on in the indexes.
	page, err = s.List(ctx, notification.ListFilter{Limit: 5, Before: everything[4]})
	if err != nil || !slices.Equal(ids(page.Tickets), everything[5:10]) {
		t.Fatalf("scan cursor after the back-fill: %v %v, want %v", ids(page.Tickets), err, everything[5:10])
	}
	got, _ := walk(t, s, notification.ListFilter{Limit: 7})
	if !slices.Equal(ids(got), everything) {
		t.Fatalf("after the back-fill: %v\nwant %v", ids(got), everything)
	}
	wantStatus := map[notification.Status][]notification.ID{
		notification.StatusSuccess: {legacy[20], legacy[10], legacy[2], legacy[1], legacy[0]},
		notification.StatusFailed:  {legacy[5]},
	}
	// legacy[7] is pending (in generation 1) since its re-queue, after every legacy ticket's
	// creation: the PENDING list has it before them.
	pending := append(reversed(fresh), legacy[7])
	for _, id := range reversed(legacy) {
		if !slices.Contains(wantStatus[notification.StatusSuccess], id) && id != legacy[5] && id != legacy[7] {
			pending = append(pending, id)
		}
	}
	wantStatus[notification.StatusPending] = pending
	for st, want := range wantStatus {
		got, _ := walk(t, s, notification.ListFilter{Status: st, Limit: 4})
		if !slices.Equal(ids(got), want) {
			t.Errorf("%s after the back-fill: %v, want %v", st, ids(got), want)
		}
	}
	// Legacy tickets move on like any other.
	decideAll(t, s, notification.StatusSuccess, legacy[29])
	if got, _ := walk(t, s, notification.ListFilter{Status: notification.StatusSuccess, Limit: 3}); len(got) != 6 || got[0].ID != legacy[29] {
		t.Errorf("SUCCESS after delivering a legacy ticket: %v", ids(got))
	}
}
