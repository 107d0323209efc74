package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// The delivery records are written as the sweeper writes them: with the driver, by _id.

func msNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func insert(t *testing.T, db *mongo.Database, coll string, doc any) {
	t.Helper()
	if _, err := db.Collection(coll).InsertOne(context.Background(), doc); err != nil {
		t.Fatalf("insert into %s: %v", coll, err)
	}
}

// deliverBatch inserts a batch and assigns the ticket generation to it, taking its queue
// entry, as a sweep does.
func deliverBatch(t *testing.T, db *mongo.Database, id notification.ID, gen int, b notification.Batch) {
	t.Helper()
	if b.Errors == nil {
		b.Errors = []notification.AttemptError{}
	}
	b.CreatedAt, b.UpdatedAt, b.Size = msNow(), msNow(), 1
	b.Members, b.Verified = []notification.Member{{Ticket: id, Generation: gen}}, true
	insert(t, db, mongostore.BatchesCollection, b)
	insert(t, db, mongostore.AssignmentsCollection, notification.Assignment{
		Key: notification.AssignmentKey(id, gen), Ticket: id, Generation: gen, Batch: b.ID, CreatedAt: msNow()})
	if err := mongostore.New(db).Dequeue(context.Background(), []string{notification.AssignmentKey(id, gen)}); err != nil {
		t.Fatal(err)
	}
}

// decide records the outcome of a ticket generation (Decide: listed, then inserted) and counts
// it, taking its queue entry, as a sweep does.
func decide(t *testing.T, db *mongo.Database, id notification.ID, gen int, st notification.Status, reason string) notification.Outcome {
	t.Helper()
	key := notification.AssignmentKey(id, gen)
	o := notification.Outcome{Key: key, Ticket: id, Generation: gen, Status: st,
		Error: reason, Attempts: 1, At: msNow()}
	tally := notification.Tally{Failed: 1}
	if st == notification.StatusSuccess {
		sent := msNow()
		o.SentAt, o.ProviderMessageID = &sent, "msg-"+id.Hex()
		tally = notification.Tally{Success: 1}
	}
	s := mongostore.New(db)
	if err := s.Dequeue(context.Background(), []string{key}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decide(context.Background(), []notification.Outcome{o}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendTally(context.Background(), "test:"+key, tally); err != nil {
		t.Fatal(err)
	}
	return o
}

// project copies a generation's outcome onto the ticket document, as the sweeper does later.
func project(t *testing.T, s *mongostore.Store, db *mongo.Database, id notification.ID) {
	t.Helper()
	v, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	set := bson.M{"status": v.Status, "attempts": v.Attempts, "errors": v.Errors, "lastError": v.LastError,
		"nextAttemptAt": v.NextAttemptAt, "batch": v.Batch}
	if v.SentAt != nil {
		set["sentAt"], set["providerMessageId"] = v.SentAt, v.ProviderMessageID
	}
	res, err := db.Collection(mongostore.TicketsCollection).UpdateOne(context.Background(),
		bson.M{"_id": id, "generation": v.Generation}, bson.M{"$set": set})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("project %s: %v %+v", id.Hex(), err, res)
	}
}

func storedStatus(t *testing.T, db *mongo.Database, id notification.ID) notification.Ticket {
	t.Helper()
	var tk notification.Ticket
	if err := db.Collection(mongostore.TicketsCollection).FindOne(context.Background(), bson.M{"_id": id}).Decode(&tk); err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestGetAndListOverlayDeliveryRecords(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	idle, retrying, sent, failed := newTicket(t, s), newTicket(t, s), newTicket(t, s), newTicket(t, s)
	later := msNow().Add(5 * time.Minute)
	e := func(n int, msg string) notification.AttemptError {
		return notification.AttemptError{At: msNow(), Attempt: n, Error: msg}
	}
	deliverBatch(t, db, retrying.ID, 0, notification.Batch{ID: "b-retry", Attempts: 2, NextAttemptAt: later,
		LastError: "429 rate limited", Errors: []notification.AttemptError{e(1, "timeout"), e(2, "429 rate limited")}})
	deliverBatch(t, db, sent.ID, 0, notification.Batch{ID: "b-sent", Attempts: 1, Done: true, NextAttemptAt: msNow()})
	so := decide(t, db, sent.ID, 0, notification.StatusSuccess, "")
	deliverBatch(t, db, failed.ID, 0, notification.Batch{ID: "b-fail", Attempts: 3, Done: true, LastError: "503",
		Errors: []notification.AttemptError{e(1, "503"), e(2, "503"), e(3, "503")}})
	decide(t, db, failed.ID, 0, notification.StatusFailed, "550 recipient rejected")

	check := func(how string, got map[notification.ID]notification.Ticket) {
		t.Helper()
		if g := got[idle.ID]; g.Status != notification.StatusPending || g.Attempts != 0 || g.Errors == nil || len(g.Errors) != 0 {
			t.Errorf("%s: idle ticket %+v", how, g)
		}
		if g := got[retrying.ID]; g.Status != notification.StatusPending || g.Attempts != 2 || len(g.Errors) != 2 ||
			g.LastError != "429 rate limited" || !g.NextAttemptAt.Equal(later) || g.SentAt != nil {
			t.Errorf("%s: retrying ticket %+v", how, g)
		}
		if g := got[sent.ID]; g.Status != notification.StatusSuccess || g.Attempts != 1 || g.SentAt == nil ||
			!g.SentAt.Equal(*so.SentAt) || g.ProviderMessageID != so.ProviderMessageID || len(g.Errors) != 0 {
			t.Errorf("%s: sent ticket %+v", how, g)
		}
		if g := got[failed.ID]; g.Status != notification.StatusFailed || g.Attempts != 3 || len(g.Errors) != 4 ||
			g.LastError != "550 recipient rejected" || g.Errors[3].Error != "550 recipient rejected" {
			t.Errorf("%s: failed ticket %+v", how, g)
		}
	}
	byGet := map[notification.ID]notification.Ticket{}
	for _, id := range []notification.ID{idle.ID, retrying.ID, sent.ID, failed.ID} {
		g, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		byGet[id] = *g
	}
	check("Get", byGet)
	list, err := s.List(ctx, notification.ListFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	page := list.Tickets
	byList := map[notification.ID]notification.Ticket{}
	for _, g := range page {
		byList[g.ID] = g
	}
	if len(page) != 4 || page[0].ID != failed.ID || page[3].ID != idle.ID {
		t.Errorf("List order: %v", page)
	}
	check("List", byList)
	// Reading wrote nothing: the documents are still PENDING (projection is the sweeper's).
	if st := storedStatus(t, db, sent.ID).Status; st != notification.StatusPending {
		t.Errorf("stored status %s", st)
	}
	// Once projected, the document is the truth and reads the same.
	project(t, s, db, failed.ID)
	if g, err := s.Get(ctx, failed.ID); err != nil || g.Status != notification.StatusFailed || len(g.Errors) != 4 || g.Attempts != 3 {
		t.Errorf("projected failed ticket %+v %v", g, err)
	}
}

func TestListStatusFilterDropsResolvedTicketsAndPagesEveryTicket(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	const total = 23
	var all []notification.ID // oldest first
	for range total {
		all = append(all, newTicket(t, s).ID)
	}
	decided := map[int]notification.Status{3: notification.StatusSuccess, 4: notification.StatusFailed,
		5: notification.StatusSuccess, 6: notification.StatusSuccess, 7: notification.StatusFailed,
		12: notification.StatusSuccess, 18: notification.StatusFailed, 22: notification.StatusSuccess}
	order := []int{3, 4, 5, 6, 7, 12, 18, 22} // decided in this order
	for _, i := range order {
		st := decided[i]
		decide(t, db, all[i], 0, st, map[bool]string{true: "550"}[st == notification.StatusFailed])
	}
	project(t, s, db, all[12])
	want := map[notification.Status][]notification.ID{} // newest first
	for i := total - 1; i >= 0; i-- {
		if _, ok := decided[i]; !ok {
			want[notification.StatusPending] = append(want[notification.StatusPending], all[i])
		}
	}
	for k := len(order) - 1; k >= 0; k-- { // most recently decided first
		want[decided[order[k]]] = append(want[decided[order[k]]], all[order[k]])
	}
	for st, w := range want {
		for _, limit := range []int{1, 3, 4, 100} {
			got, _ := walk(t, s, notification.ListFilter{Status: st, Limit: limit})
			if !slices.Equal(ids(got), w) {
				t.Errorf("%s, limit %d: visited %v, want %v", st, limit, ids(got), w)
			}
			for _, tk := range got {
				if tk.Status != st {
					t.Errorf("%s list holds %+v", st, tk)
				}
			}
		}
	}
	// Without a filter every ticket is visited once, showing its resolved status.
	got, _ := walk(t, s, notification.ListFilter{Limit: 5})
	if len(got) != total {
		t.Fatalf("all: %d tickets", len(got))
	}
	for i, tk := range got {
		want := notification.StatusPending
		if st, ok := decided[total-1-i]; ok {
			want = st
		}
		if tk.ID != all[total-1-i] || tk.Status != want {
			t.Errorf("all[%d]: %s %s, want %s %s", i, tk.ID.Hex(), tk.Status, all[total-1-i].Hex(), want)
		}
	}
}

func TestStatsExactWhileProjectionLags(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	var tk []*notification.Ticket
	for range 10 {
		tk = append(tk, newTicket(t, s))
	}
	requeue := func(i int) {
		t.Helper()
		if _, err := s.Requeue(ctx, tk[i].ID); err != nil {
			t.Fatalf("Requeue %d: %v", i, err)
		}
	}
	decide(t, db, tk[0].ID, 0, notification.StatusSuccess, "")   // unprojected
	decide(t, db, tk[1].ID, 0, notification.StatusFailed, "550") // unprojected
	decide(t, db, tk[2].ID, 0, notification.StatusFailed, "550")
	project(t, s, db, tk[2].ID)
	decide(t, db, tk[3].ID, 0, notification.StatusSuccess, "")
	project(t, s, db, tk[3].ID)
	decide(t, db, tk[4].ID, 0, notification.StatusFailed, "550")
	requeue(4) // pending again, in generation 1
	decide(t, db, tk[5].ID, 0, notification.StatusFailed, "550")
	requeue(5)
	decide(t, db, tk[5].ID, 1, notification.StatusSuccess, "") // delivered in generation 1, unprojected
	// tk[6..9]: no records.

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[notification.Status]int64{notification.StatusSuccess: 3, notification.StatusFailed: 2, notification.StatusPending: 5}
	for status, n := range want {
		if st.ByStatus[status] != n {
			t.Errorf("%s = %d, want %d (%v)", status, st.ByStatus[status], n, st.ByStatus)
		}
	}
	// tk[0] and tk[1] are stored PENDING but decided; tk[4] is pending again only since
	// its re-queue: tk[6] has waited longest.
	if st.OldestPending == nil || !st.OldestPending.Equal(tk[6].CreatedAt) {
		t.Errorf("OldestPending %v, want %v", st.OldestPending, tk[6].CreatedAt)
	}
	// The counts agree with what the reads show, ticket by ticket.
	page, err := s.List(ctx, notification.ListFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[notification.Status]int64{}
	for _, g := range page.Tickets {
		seen[g.Status]++
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("List shows %v, Stats %v", seen, st.ByStatus)
	}
}

// The oldest pending ticket is the first queue entry or the oldest ticket of an open batch,
// whichever waited longer; nothing pending, no age.
func TestStatsOldestPending(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	oldest := func() *time.Time {
		t.Helper()
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.OldestPending
	}
	if got := oldest(); got != nil {
		t.Fatalf("empty: OldestPending %v", got)
	}
	a, b := newTicket(t, s), newTicket(t, s)
	if got := oldest(); got == nil || !got.Equal(a.CreatedAt) {
		t.Fatalf("two queued: OldestPending %v, want the first one's %v", got, a.CreatedAt)
	}
	// a goes into a batch that opened an hour ago (its oldest ticket waited since then).
	hourAgo := msNow().Add(-time.Hour)
	batch := &notification.Batch{ID: "open-1", Size: 1, Oldest: hourAgo, NextAttemptAt: msNow().Add(time.Minute),
		Errors: []notification.AttemptError{}, CreatedAt: msNow(), UpdatedAt: msNow()}
	if err := s.InsertBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Dequeue(ctx, []string{notification.AssignmentKey(a.ID, 0)}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.ByStatus[notification.StatusPending] != 2 || st.OldestPending == nil || !st.OldestPending.Equal(hourAgo) {
		t.Fatalf("queued + open batch: %v %v %v, want 2 pending since %v", st.ByStatus, st.OldestPending, err, hourAgo)
	}
	if err := s.CloseBatch(ctx, batch.ID); err != nil {
		t.Fatal(err)
	}
	if got := oldest(); got == nil || !got.Equal(b.CreatedAt) {
		t.Fatalf("batch closed: OldestPending %v, want %v", got, b.CreatedAt)
	}
}

func TestRequeueUnprojectedFailedOutcomeKeepsHistory(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	tk := newTicket(t, s)
	e := func(n int, msg string) notification.AttemptError {
		return notification.AttemptError{At: msNow(), Attempt: n, Error: msg}
	}
	deliverBatch(t, db, tk.ID, 0, notification.Batch{ID: "b0", Attempts: 2, Done: true, LastError: "503",
		Errors: []notification.AttemptError{e(1, "timeout"), e(2, "503")}})
	decide(t, db, tk.ID, 0, notification.StatusFailed, "exhausted: 503")

	got, err := s.Requeue(ctx, tk.ID)
	if err != nil {
		t.Fatalf("Requeue of an unprojected FAILED outcome: %v", err)
	}
	if got.Status != notification.StatusPending || got.Generation != 1 || got.Attempts != 2 || len(got.Errors) != 3 ||
		got.LastError != "exhausted: 503" || got.Batch != "" || got.SentAt != nil || got.NextAttemptAt.Before(tk.NextAttemptAt) {
		t.Fatalf("re-queued ticket %+v", got)
	}
	stored := storedStatus(t, db, tk.ID)
	if stored.Status != notification.StatusPending || stored.Generation != 1 || len(stored.Errors) != 3 || stored.Attempts != 2 {
		t.Errorf("stored after re-queue %+v", stored)
	}
	// A late projection of generation 0 matches nothing.
	res, err := db.Collection(mongostore.TicketsCollection).UpdateOne(ctx, bson.M{"_id": tk.ID, "generation": 0},
		bson.M{"$set": bson.M{"status": notification.StatusFailed}})
	if err != nil || res.MatchedCount != 0 {
		t.Errorf("late projection: %v %+v", err, res)
	}
	// Retrying again is refused: generation 1 is pending.
	if _, err := s.Requeue(ctx, tk.ID); !errs.Is(err, errs.Conflict) {
		t.Errorf("second Requeue: %v, want conflict", err)
	}
	// Generation 1 fails too: the history accumulates over both.
	deliverBatch(t, db, tk.ID, 1, notification.Batch{ID: "b1", Attempts: 1, Done: true, LastError: "550",
		Errors: []notification.AttemptError{e(1, "550")}})
	decide(t, db, tk.ID, 1, notification.StatusFailed, "550 rejected")
	if g, err := s.Get(ctx, tk.ID); err != nil || g.Status != notification.StatusFailed || g.Attempts != 3 || len(g.Errors) != 5 {
		t.Fatalf("generation 1 failed: %+v %v", g, err)
	}
	got, err = s.Requeue(ctx, tk.ID)
	if err != nil || got.Generation != 2 || got.Status != notification.StatusPending || got.Attempts != 3 ||
		len(got.Errors) != 5 || got.LastError != "550 rejected" {
		t.Fatalf("second cycle: %+v %v", got, err)
	}
}

func TestRequeueOfADecidedSuccessConflicts(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	tk := newTicket(t, s)
	if _, err := s.Requeue(ctx, tk.ID); !errs.Is(err, errs.Conflict) {
		t.Errorf("Requeue of a pending ticket: %v, want conflict", err)
	}
	decide(t, db, tk.ID, 0, notification.StatusSuccess, "") // unprojected
	if _, err := s.Requeue(ctx, tk.ID); !errs.Is(err, errs.Conflict) {
		t.Errorf("Requeue of a delivered ticket: %v, want conflict", err)
	}
	if g := storedStatus(t, db, tk.ID); g.Generation != 0 || g.Status != notification.StatusPending {
		t.Errorf("stored %+v", g)
	}
	if n, err := db.Collection(mongostore.RequeuesCollection).CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Errorf("%d re-queue records (%v)", n, err)
	}
}

func TestRequeueConcurrentOnUnprojectedOutcomeOneWins(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t)
	ctx := context.Background()
	tk := newTicket(t, s)
	deliverBatch(t, db, tk.ID, 0, notification.Batch{ID: "b0", Attempts: 1, Done: true, LastError: "503",
		Errors: []notification.AttemptError{{At: msNow(), Attempt: 1, Error: "503"}}})
	decide(t, db, tk.ID, 0, notification.StatusFailed, "550")
	const n = 8
	results := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, results[i] = s.Requeue(ctx, tk.ID)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range results {
		switch {
		case err == nil:
			wins++
		case !errs.Is(err, errs.Conflict):
			t.Errorf("Requeue: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d re-queues succeeded, want 1", wins)
	}
	g, err := s.Get(ctx, tk.ID)
	if err != nil || g.Generation != 1 || g.Status != notification.StatusPending || len(g.Errors) != 2 || g.Attempts != 1 {
		t.Errorf("ticket %+v %v", g, err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.ByStatus[notification.StatusFailed] != 0 || st.ByStatus[notification.StatusPending] != 1 {
		t.Errorf("Stats %v %v", st.ByStatus, err)
	}
}

func TestEnsureIndexesOnDeliveryRecords(t *testing.T) {
	t.Parallel()
	s, _, db := newStore(t) // has run EnsureIndexes once
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatalf("EnsureIndexes again: %v", err)
	}
	for coll, name := range map[string]string{
		mongostore.TicketsCollection: "status_id",
		mongostore.TallyCollection:   "key",
	} {
		specs, err := db.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(specs, func(sp mongo.IndexSpecification) bool { return sp.Name == name }) {
			t.Errorf("%s lacks index %s: %v", coll, name, specs)
		}
	}
	// The embedded database refuses TTL indexes: the store knows, and cleans up itself.
	if s.IdempotencyTTL() && os.Getenv("TEST_MONGODB_URI") == "" {
		t.Error("the embedded database accepted a TTL index?")
	}
}
