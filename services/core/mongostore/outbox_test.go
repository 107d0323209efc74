package mongostore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/faultproxy"
	"github.com/cineflow/cineflow/services/core"
)

// commandLog records the commands a client sends, to check that none of them reads a whole
// collection on the dev database.
type commandLog struct {
	mu   sync.Mutex
	on   bool
	cmds []loggedCommand
}

type loggedCommand struct {
	name string
	body bson.Raw
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.on {
			l.cmds = append(l.cmds, loggedCommand{e.CommandName, slices.Clone(e.Command)})
		}
	}}
}

// record starts recording (forgetting what was recorded) or stops.
func (l *commandLog) record(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.on = on
	if on {
		l.cmds = nil
	}
}

func (l *commandLog) taken() []loggedCommand {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cmds)
}

// exactID reports whether filter is exactly {_id: <string or ObjectID>}.
func exactID(filter bson.Raw) bool {
	elems, err := filter.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return false
	}
	t := elems[0].Value().Type
	return t == bson.TypeString || t == bson.TypeObjectID
}

// scanReason says why the dev database may read a whole collection to serve c ("" when it
// cannot): anything but a read or write by exact _id, or an empty filter with a limit and
// neither sort nor skip.
func scanReason(c loggedCommand) string {
	switch c.name {
	case "insert", "listCollections", "drop", "getMore", "killCursors", "endSessions":
		return ""
	case "find":
		if _, err := c.body.LookupErr("sort"); err == nil {
			return "sorted find " + c.body.String()
		}
		if v, err := c.body.LookupErr("skip"); err == nil && v.AsInt64() != 0 {
			return "find with a skip " + c.body.String()
		}
		f, err := c.body.LookupErr("filter")
		if err != nil || len(f.Document()) <= 5 { // {} is 5 bytes
			if l, err := c.body.LookupErr("limit"); err == nil && l.AsInt64() > 0 {
				return ""
			}
			return "find of everything " + c.body.String()
		}
		if exactID(f.Document()) {
			return ""
		}
		return "filtered find " + c.body.String()
	case "delete", "update":
		field := map[string]string{"delete": "deletes", "update": "updates"}[c.name]
		stmts, err := c.body.LookupErr(field)
		if err != nil {
			return c.name + " without statements " + c.body.String()
		}
		vals, _ := stmts.Array().Values()
		for _, v := range vals {
			q, err := v.Document().LookupErr("q")
			if err != nil || !exactID(q.Document()) {
				return c.name + " not by exact _id " + c.body.String()
			}
		}
		return ""
	}
	return "command " + c.name + " " + c.body.String()
}

// ownCommands counts the commands of cmds that are not the count's own: those are appended
// by a timer, whenever a delta is due, and may fall into any call.
func ownCommands(cmds []loggedCommand) int {
	n := 0
	for _, c := range cmds {
		if coll, _ := c.body.Index(0).Value().StringValueOK(); !strings.HasPrefix(coll, OutboxCountCollection) {
			n++
		}
	}
	return n
}

// checkNoScan fails the test for every command that may read a whole collection.
func checkNoScan(t *testing.T, what string, cmds []loggedCommand) {
	t.Helper()
	for _, c := range cmds {
		if r := scanReason(c); r != "" {
			t.Errorf("%s: %s", what, r)
		}
	}
}

// newTestOutbox returns an outbox on a database of the test's own, through a client whose
// commands are logged, with a settable clock.
func newTestOutbox(t *testing.T) (*Outbox, *time.Time, *commandLog) {
	t.Helper()
	log := &commandLog{}
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(t)).SetMaxPoolSize(2).SetMonitor(log.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	s := NewOutbox(client.Database(devdb.TestDatabase(t)))
	if err := s.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	return s, &now, log
}

func outboxEmail(key string) core.Email {
	return core.Email{Key: key, Recipients: []string{"ann@example.com", "bob@example.com"}, Subject: "Booked",
		Content: "Seats A1, A2", Kind: "booking-paid", Ref: "b-" + key,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
}

// keysOf lists the keys of entries.
func keysOf(es []core.OutboxEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

// find returns the single copy of key, failing the test unless there is exactly one.
func find(t *testing.T, s *Outbox, key string) core.OutboxEntry {
	t.Helper()
	got, err := s.Find(t.Context(), key)
	if err != nil || len(got) != 1 {
		t.Fatalf("%s: %d copies (%v), want 1", key, len(got), err)
	}
	return got[0]
}

// seedFront inserts n emails into the front directly, as an earlier version (or an outage)
// leaves them: due at due(i), attempted attempts(i) times.
func seedFront(t *testing.T, s *Outbox, n int, prefix string, created time.Time, due func(i int) time.Time, attempts func(i int) int) {
	t.Helper()
	for i := 0; i < n; {
		docs := make([]any, 0, 1000)
		for ; i < n && len(docs) < cap(docs); i++ {
			d := &outboxDoc{Key: fmt.Sprintf("%s%06d", prefix, i), Recipients: []string{"ann@example.com"}, Subject: "Booked",
				Content: "Seats A1", Kind: "booking-paid", Ref: fmt.Sprint("b", i), CreatedAt: created, Attempts: attempts(i),
				NextAttemptAt: due(i)}
			if d.Attempts > 0 {
				d.LastError = "connection refused"
			}
			docs = append(docs, d)
		}
		if _, err := s.front.InsertMany(t.Context(), docs); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutboxEnqueueSameKeyKeepsOne(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestOutbox(t)
	ctx := t.Context()
	first := outboxEmail("k1")
	second := first
	second.Subject = "something else"
	if err := s.Enqueue(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, second); err != nil {
		t.Fatalf("a repeated key must be success: %v", err)
	}
	// Concurrent repeats too: one document, no error.
	var wg sync.WaitGroup
	errc := make(chan error, 10)
	for range 10 {
		wg.Go(func() { errc <- s.Enqueue(ctx, outboxEmail("k2")) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.front.CountDocuments(ctx, bson.M{}); err != nil || n != 2 {
		t.Fatalf("%d documents (%v), want 2", n, err)
	}
	got := find(t, s, "k1")
	want := core.OutboxEntry{Email: first, CreatedAt: s.now(), NextAttemptAt: s.now()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}
	var raw bson.M
	if err := s.front.FindOne(ctx, bson.M{"_id": "k1"}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"recipients", "subject", "content", "kind", "ref", "traceParent", "createdAt", "attempts", "nextAttemptAt"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("document lacks %s: %v", f, raw)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Backlog(ctx); err != nil || b.Pending != 2 {
		t.Fatalf("backlog %+v %v, want 2 (repeats are not counted)", b, err)
	}
}

func TestOutboxPendingIsDueOnly(t *testing.T) {
	t.Parallel()
	s, now, _ := newTestOutbox(t)
	ctx := t.Context()
	for i := range 5 {
		*now = now.Add(time.Second)
		if err := s.Enqueue(ctx, outboxEmail(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	due, err := s.Pending(ctx, *now, 10)
	if err != nil || fmt.Sprint(keysOf(due)) != "[k0 k1 k2 k3 k4]" {
		t.Fatalf("due now: %v %v", keysOf(due), err)
	}
	entry := map[string]core.OutboxEntry{}
	for _, e := range due {
		entry[e.Key] = e
	}
	// k1 fails: due in a minute; k3 was tried later, due in 2s.
	if err := s.Reschedule(ctx, entry["k1"], 1, now.Add(time.Minute), "connection refused"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reschedule(ctx, entry["k3"], 2, now.Add(2*time.Second), "503"); err != nil {
		t.Fatal(err)
	}
	keys := func(at time.Time, limit int) []string {
		t.Helper()
		due, err := s.Pending(ctx, at, limit)
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(due)
	}
	if got := fmt.Sprint(keys(*now, 10)); got != "[k0 k2 k4]" {
		t.Fatalf("due now: %s", got)
	}
	if got := fmt.Sprint(keys(*now, 2)); got != "[k0 k2]" {
		t.Fatalf("due now, limit 2: %s", got)
	}
	if got := fmt.Sprint(keys(now.Add(3*time.Second), 10)); got != "[k0 k2 k4 k3]" {
		t.Fatalf("due in 3s: %s", got)
	}
	if got := fmt.Sprint(keys(now.Add(time.Hour), 10)); got != "[k0 k2 k4 k3 k1]" {
		t.Fatalf("due in an hour: %s", got)
	}
	e := find(t, s, "k1")
	if e.Attempts != 1 || e.LastError != "connection refused" || !e.NextAttemptAt.Equal(now.Add(time.Minute)) ||
		e.Queue != s.retryBucketName(now.Add(time.Minute)) {
		t.Fatalf("rescheduled entry %+v", e)
	}
	// Rescheduled again from its bucket, to a time in the same bucket: updated in place.
	e.NextAttemptAt = now.Add(time.Minute)
	if err := s.Reschedule(ctx, e, 2, now.Add(time.Minute+time.Second), "503"); err != nil {
		t.Fatal(err)
	}
	if e := find(t, s, "k1"); e.Attempts != 2 || e.LastError != "503" || !e.NextAttemptAt.Equal(now.Add(time.Minute+time.Second)) {
		t.Fatalf("rescheduled in place: %+v", e)
	}
	if n, _ := s.front.CountDocuments(ctx, bson.M{}); n != 3 {
		t.Fatalf("the front holds %d, want 3 (k1 and k3 moved out)", n)
	}
}

func TestOutboxDeleteAndBacklog(t *testing.T) {
	t.Parallel()
	s, now, _ := newTestOutbox(t)
	ctx := t.Context()
	b, err := s.Backlog(ctx)
	if err != nil || b.Pending != 0 || !b.Oldest.IsZero() {
		t.Fatalf("empty backlog %+v %v", b, err)
	}
	start := *now
	for i := range 3 {
		if err := s.Enqueue(ctx, outboxEmail(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Minute)
	}
	if b, err = s.Backlog(ctx); err != nil || b.Pending != 3 || !b.Oldest.Equal(start) {
		t.Fatalf("backlog %+v %v, want 3 since %v", b, err, start)
	}
	due, _ := s.Pending(ctx, *now, 10)
	if err := s.Delete(ctx, due[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, due[0]); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	// k1 waits in a retry bucket: counted, and still the oldest.
	if err := s.Reschedule(ctx, due[1], 1, now.Add(time.Hour), "503"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err = s.Backlog(ctx); err != nil || b.Pending != 2 || !b.Oldest.Equal(start.Add(time.Minute)) {
		t.Fatalf("backlog after a delete and a move %+v %v", b, err)
	}
	due, _ = s.Pending(ctx, now.Add(2*time.Hour), 10)
	if fmt.Sprint(keysOf(due)) != "[k2 k1]" { // the longest due first
		t.Fatalf("due after delete: %v", keysOf(due))
	}
	for _, e := range due {
		if err := s.Delete(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if b, err = s.Backlog(ctx); err != nil || b.Pending != 0 || !b.Oldest.IsZero() {
		t.Fatalf("backlog once empty %+v %v", b, err)
	}
}

// TestOutboxReadsNeverScan: with the front crowded by emails waiting for a retry (as a
// notification-service outage leaves it) and due emails behind, Pending and Backlog send only
// reads by exact _id and reads of a collection's first rows, and as many at 20,000 emails as
// at 100. Before, Pending fell back to a filtered, sorted find once the first limit+32 emails
// waited, and Backlog counted and sorted the outbox: both read every email.
func TestOutboxReadsNeverScan(t *testing.T) {
	t.Parallel()
	const (
		limit   = 20
		waiting = 60 // more than limit+32: the first rows of the front are all waiting
		rounds  = 3
	)
	pending, backlog := map[int][]int{}, map[int]int{}
	for _, queued := range []int{100, 20000} {
		s, now, log := newTestOutbox(t)
		ctx := t.Context()
		seedFront(t, s, queued, "q", now.Add(-time.Hour), func(i int) time.Time {
			if i < waiting {
				return now.Add(time.Duration(i%10+1) * time.Minute)
			}
			return now.Add(-time.Minute)
		}, func(i int) int { return min(i, waiting) % 7 })
		for round := range rounds {
			log.record(true)
			due, err := s.Pending(ctx, *now, limit)
			log.record(false)
			if err != nil {
				t.Fatal(err)
			}
			cmds := log.taken()
			checkNoScan(t, fmt.Sprintf("Pending, round %d, %d queued", round, queued), cmds)
			pending[queued] = append(pending[queued], ownCommands(cmds))
			for _, e := range due {
				if e.NextAttemptAt.After(*now) {
					t.Fatalf("not due: %+v", e)
				}
			}
			// The relay's round: each is rescheduled (a failure) or delivered.
			for i, e := range due {
				if i%2 == 0 {
					err = s.Reschedule(ctx, e, e.Attempts+1, now.Add(time.Duration(i+1)*time.Minute), "503")
				} else {
					err = s.Delete(ctx, e)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			*now = now.Add(time.Second)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		log.record(true)
		b, err := s.Backlog(ctx)
		log.record(false)
		if err != nil {
			t.Fatal(err)
		}
		checkNoScan(t, fmt.Sprintf("Backlog, %d queued", queued), log.taken())
		backlog[queued] = len(log.taken())
		if b.Oldest.IsZero() || b.Pending == 0 {
			t.Fatalf("%d queued: backlog %+v", queued, b)
		}
		t.Logf("%d queued: commands per Pending %v, per Backlog %d", queued, pending[queued], backlog[queued])
	}
	if !slices.Equal(pending[100], pending[20000]) || backlog[20000] > backlog[100]+5 {
		t.Fatalf("commands per Pending %v and per Backlog %d at 100 queued; %v and %d at 20,000",
			pending[100], backlog[100], pending[20000], backlog[20000])
	}
}

// TestOutboxEarlierVersionsDocuments: documents an earlier version wrote (the front, emails
// rescheduled in place with nextAttemptAt in the future, attempts and lastError kept) are all
// listed when due, each once, without a read of the whole outbox.
func TestOutboxEarlierVersionsDocuments(t *testing.T) {
	t.Parallel()
	s, now, log := newTestOutbox(t)
	ctx := t.Context()
	const n = 500
	// 300 wait for a retry, up to 10 minutes away; 200 are due.
	seedFront(t, s, n, "old", now.Add(-time.Hour), func(i int) time.Time {
		if i < 300 {
			return now.Add(time.Duration(i%10+1) * time.Minute)
		}
		return now.Add(-time.Minute)
	}, func(i int) int { return 3 })
	seen := map[string]int{}
	log.record(true)
	for range 12 * 60 / 5 { // an hour's worth of rounds every 5 s... until 12 minutes passed
		due, err := s.Pending(ctx, *now, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range due {
			if e.NextAttemptAt.After(*now) || e.Attempts != 3 || e.LastError != "connection refused" || e.Subject != "Booked" {
				t.Fatalf("listed %+v at %v", e, *now)
			}
			seen[e.Key]++
			if err := s.Delete(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		*now = now.Add(5 * time.Second)
	}
	log.record(false)
	checkNoScan(t, "relaying an earlier version's documents", log.taken())
	if len(seen) != n {
		t.Fatalf("%d of %d emails listed", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s listed %d times", k, c)
		}
	}
	if b, err := s.Backlog(ctx); err != nil || !b.Oldest.IsZero() {
		t.Fatalf("backlog %+v %v, want empty", b, err)
	}
}

// TestOutboxRetryBucketsDropped: a retry bucket is dropped once it has ended (and lingered)
// and is found empty; one that still holds an email is kept.
func TestOutboxRetryBucketsDropped(t *testing.T) {
	t.Parallel()
	s, now, _ := newTestOutbox(t)
	ctx := t.Context()
	for i := range 3 {
		s.Enqueue(ctx, outboxEmail(fmt.Sprint("k", i)))
	}
	due, _ := s.Pending(ctx, *now, 10)
	for i, e := range due {
		if err := s.Reschedule(ctx, e, 1, now.Add(time.Duration(i+1)*time.Minute), "503"); err != nil {
			t.Fatal(err)
		}
	}
	if bs, _ := s.retryBuckets(ctx); len(bs) != 3 {
		t.Fatalf("%d buckets, want 3", len(bs))
	}
	*now = now.Add(90 * time.Second) // k0 is due, k1 in 30 s
	due, _ = s.Pending(ctx, *now, 10)
	if fmt.Sprint(keysOf(due)) != "[k0]" {
		t.Fatalf("due: %v", keysOf(due))
	}
	s.Delete(ctx, due[0])
	*now = now.Add(retryBucketLinger + time.Second) // k1 and k2 are due, k0's bucket ended long ago
	due, _ = s.Pending(ctx, *now, 10)
	if fmt.Sprint(keysOf(due)) != "[k1 k2]" {
		t.Fatalf("due: %v", keysOf(due))
	}
	bs, _ := s.retryBuckets(ctx)
	if len(bs) != 2 || bs[0].name != s.retryBucketName(now.Add(-retryBucketLinger-time.Second+30*time.Second)) {
		t.Fatalf("buckets %+v, want k1's and k2's", bs)
	}
}

// TestOutboxMoveLosesNothing: a move into a retry bucket whose insert or delete is answered
// by a dropped connection (the write landed, the caller sees an error) loses no email: each
// is found again, at worst twice (posted twice under one Idempotency-Key).
func TestOutboxMoveLosesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		command    string
		collection string
		fault      faultproxy.Fault
	}{
		{"insert-reply-lost", "insert", outboxRetryPrefix + "*", faultproxy.DropReply},
		{"delete-reply-lost", "delete", OutboxCollection, faultproxy.DropReply},
		{"insert-cut", "insert", outboxRetryPrefix + "*", faultproxy.CutBefore},
		{"bucket-delete-reply-lost", "delete", outboxRetryPrefix + "*", faultproxy.DropReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			proxy, db := faultproxy.StartTest(t, devdb.TestDatabase(t), 4)
			s := NewOutbox(db)
			now := time.Date(2030, 6, 1, 18, 30, 0, 0, time.UTC)
			s.now = func() time.Time { return now }
			ctx := t.Context()
			const n = 40
			for i := range n {
				if err := s.Enqueue(ctx, outboxEmail(fmt.Sprintf("m%02d", i))); err != nil {
					t.Fatal(err)
				}
			}
			rule := proxy.Add(&faultproxy.Rule{Command: tc.command, Collection: tc.collection, Fault: tc.fault, Times: 3})
			// Three rounds of failures: front -> bucket -> bucket -> bucket, with faults.
			failed := 0
			for round := range 3 {
				due, err := s.Pending(ctx, now, n)
				if err != nil {
					continue // the read met a fault: the next round reads again
				}
				for _, e := range due {
					if err := s.Reschedule(ctx, e, e.Attempts+1, now.Add(time.Duration(round+1)*20*time.Second), "503"); err != nil {
						failed++
					}
				}
				now = now.Add(time.Minute)
			}
			if rule.Fired() == 0 {
				t.Fatal("the fault never fired")
			}
			proxy.Clear()
			// Every email is still there, once or twice; deliver them all.
			delivered := map[string]int{}
			for range 10 {
				now = now.Add(time.Hour)
				due, err := s.Pending(ctx, now, 100)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range due {
					delivered[e.Key]++
					if err := s.Delete(ctx, e); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i := range n {
				k := fmt.Sprintf("m%02d", i)
				if delivered[k] == 0 {
					t.Errorf("%s lost", k)
				}
			}
			twice := 0
			for _, c := range delivered {
				if c > 1 {
					twice++
				}
			}
			t.Logf("%s: fired %d, %d reschedules failed, %d emails listed twice", tc.name, rule.Fired(), failed, twice)
		})
	}
}

// TestOutboxCountKeptAcrossProcesses: two processes (stores on clients of their own) enqueue,
// move and delete concurrently, racing on the same emails; the kept count matches the
// documents, its entries are folded into snapshots and deleted, and a count that drifted (an
// earlier version's emails delivered) settles back to zero once the outbox is seen empty.
func TestOutboxCountKeptAcrossProcesses(t *testing.T) {
	t.Parallel()
	name := devdb.TestDatabase(t)
	a, b := NewOutbox(devdb.TestDBNamed(t, name)), NewOutbox(devdb.TestDBNamed(t, name))
	ctx := t.Context()
	const n = 300
	var wg sync.WaitGroup
	for _, s := range []*Outbox{a, b} {
		wg.Go(func() {
			for i := range n { // both enqueue the same keys: one document each
				if err := s.Enqueue(ctx, outboxEmail(fmt.Sprintf("c%03d", i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	flush := func() {
		t.Helper()
		for _, s := range []*Outbox{a, b} {
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	flush()
	check := func(what string, want int64) {
		t.Helper()
		var docs int64
		queues, _ := a.Queues(ctx)
		for _, q := range queues {
			c, _ := a.db.Collection(q).CountDocuments(ctx, bson.M{})
			docs += c
		}
		bl, err := b.Backlog(ctx)
		if err != nil || bl.Pending != want || docs != want {
			t.Fatalf("%s: backlog %d (%v), %d documents, want %d", what, bl.Pending, err, docs, want)
		}
	}
	check("after the enqueues", n)
	// Both relays take the same emails: half moved, half deleted, each twice at once.
	due, err := a.Pending(ctx, time.Now(), n)
	if err != nil || len(due) != n {
		t.Fatalf("%d due (%v)", len(due), err)
	}
	next := time.Now().Add(time.Hour)
	for _, s := range []*Outbox{a, b} {
		wg.Go(func() {
			for i, e := range due {
				var err error
				if i%2 == 0 {
					err = s.Delete(ctx, e)
				} else {
					err = s.Reschedule(ctx, e, 1, next, "503")
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	flush()
	// Two moves racing may leave an email in its bucket and in the front (both are real
	// copies, and counted); deliver the copies left in the front.
	front, _ := a.Pending(ctx, time.Now(), n)
	for _, e := range front {
		a.Delete(ctx, e)
	}
	flush()
	check("after racing deletes and moves", n/2)
	var entries int64
	if entries, _ = a.count.entries.CountDocuments(ctx, bson.M{}); entries > 2*countFoldAt {
		t.Fatalf("%d count entries kept, want them folded", entries)
	}
	// An earlier version delivers the rest: the documents go, the count does not see it.
	queues, _ := a.Queues(ctx)
	for _, q := range queues {
		a.db.Collection(q).DeleteMany(ctx, bson.M{})
	}
	clock := time.Now()
	a.now = func() time.Time { return clock }
	if bl, err := a.Backlog(ctx); err != nil || bl.Pending != 0 {
		t.Fatalf("empty outbox: backlog %+v %v", bl, err)
	}
	clock = clock.Add(countSettleAfter)
	a.Backlog(ctx) // seen empty again, nothing appended meanwhile: settled
	if sum, _, err := a.count.read(ctx); err != nil || sum != 0 {
		t.Fatalf("count %d (%v) after settling, want 0", sum, err)
	}
	a.Enqueue(ctx, outboxEmail("after"))
	flush()
	if bl, err := b.Backlog(ctx); err != nil || bl.Pending != 1 {
		t.Fatalf("backlog %+v %v after settling and one enqueue, want 1", bl, err)
	}
}

// TestOutboxCountAppendedOnceDespiteLostReplies: an entry of the count whose insert reply is
// lost is not appended twice.
func TestOutboxCountAppendedOnceDespiteLostReplies(t *testing.T) {
	t.Parallel()
	proxy, db := faultproxy.StartTest(t, devdb.TestDatabase(t), 4)
	s := NewOutbox(db)
	ctx := t.Context()
	rule := proxy.Add(&faultproxy.Rule{Command: "insert", Collection: OutboxCountCollection, Fault: faultproxy.DropReply, Times: 2})
	for i := range 5 {
		if err := s.Enqueue(ctx, outboxEmail(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
		for s.Flush(ctx) != nil {
		}
	}
	if rule.Fired() != 2 {
		t.Fatalf("fired %d", rule.Fired())
	}
	if sum, _, err := s.count.read(ctx); err != nil || sum != 5 {
		t.Fatalf("count %d (%v), want 5", sum, err)
	}
}

func TestParseRetryBucket(t *testing.T) {
	t.Parallel()
	s := &Outbox{width: defaultRetryWidth}
	at := time.Date(2030, 6, 1, 18, 30, 7, 0, time.UTC)
	name := s.retryBucketName(at)
	b, ok := parseRetryBucket(name)
	if !ok || !b.start.Equal(at.Truncate(10*time.Second)) || b.end.Sub(b.start) != 10*time.Second {
		t.Fatalf("%s -> %+v %v", name, b, ok)
	}
	for _, bad := range []string{"outbox", "outbox_count", "outbox_retry_", "outbox_retry_5_4", "outbox_retry_x_5", "intents_1_2"} {
		if _, ok := parseRetryBucket(bad); ok {
			t.Errorf("%q parsed as a bucket", bad)
		}
	}
	if !strings.HasPrefix(name, "outbox_retry_") {
		t.Fatal(name)
	}
}
