package sweeper_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/mongostore"
	"github.com/cineflow/cineflow/jobs/sweeper/resendmail"
	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/pkg/telemetry"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

const apiKey = "re_test_0123456789"

// env is one test's world: its own database on the embedded server, the real stores, and a
// fake Resend reached over HTTP by the real resend-go client.
type env struct {
	t     *testing.T
	db    *mongo.Database
	store *mongostore.Store
	notes *nstore.Store
	fake  *resendfake.Server
	url   string
	ids   []notification.ID
}

func newEnv(t *testing.T, opts resendfake.Options) *env {
	t.Helper()
	t.Parallel()
	db := devdb.TestDB(t)
	e := &env{t: t, db: db, store: mongostore.New(db), notes: nstore.New(db)}
	if err := e.store.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if opts.APIKey == "" {
		opts.APIKey = apiKey
	}
	opts.Seed = 42
	e.fake = resendfake.New(opts)
	srv := httptest.NewServer(e.fake)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// seed creates n PENDING tickets through the notification store (the real write path).
func (e *env) seed(n int, to func(i int) string) {
	e.t.Helper()
	if to == nil {
		to = func(i int) string { return fmt.Sprintf("customer%d@example.com", i) }
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t := &notification.Ticket{Subject: fmt.Sprintf("Your tickets #%d", i), Content: "Enjoy the show",
				RecipientEmails: []string{to(i)}}
			saved, _, err := e.notes.Create(context.Background(), t)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			e.ids = append(e.ids, saved.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		e.t.Fatal(err)
	}
}

func (e *env) mailer(timeout time.Duration) sweeper.Mailer {
	return resendmail.New(apiKey, e.url, timeout, nil)
}

func (e *env) sweeper(cfg sweeper.Config) *sweeper.Sweeper {
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 1000
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = 30 * time.Second
	}
	if cfg.From == "" {
		cfg.From = "CineFlow <tickets@cineflow.test>"
	}
	if cfg.DBShare == 0 {
		cfg.DBShare = 1
	}
	return sweeper.New(e.store, e.mailer(5*time.Second), cfg)
}

// ticket reads a ticket as the notification API shows it.
func (e *env) ticket(id notification.ID) *notification.Ticket {
	e.t.Helper()
	t, err := e.notes.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// assertExactlyOnce checks that every seeded ticket reached its recipient exactly once and is
// SUCCESS with the provider's message id.
func (e *env) assertExactlyOnce() {
	e.t.Helper()
	if d := e.fake.Duplicates(); len(d) > 0 {
		e.t.Fatalf("%d tickets were delivered more than once: %v", len(d), d)
	}
	missing := 0
	for _, id := range e.ids {
		if n := e.fake.DeliveredCount(id.Hex()); n != 1 {
			missing++
			if missing < 5 {
				e.t.Errorf("ticket %s delivered %d times", id.Hex(), n)
			}
		}
	}
	if missing > 0 {
		e.t.Fatalf("%d of %d tickets not delivered exactly once", missing, len(e.ids))
	}
	for _, id := range e.ids {
		tk := e.ticket(id)
		if tk.Status != notification.StatusSuccess || tk.ProviderMessageID == "" || tk.SentAt == nil {
			e.t.Fatalf("ticket %s: status %s, message id %q, sentAt %v", id.Hex(), tk.Status, tk.ProviderMessageID, tk.SentAt)
		}
	}
}

func TestSweepDeliversEveryTicketInBatches(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(250, nil)
	rep, err := e.sweeper(sweeper.Config{Deadline: time.Minute, ProjectFor: time.Minute}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backlog != 250 || rep.Sent != 250 || rep.Failed != 0 || rep.Batches != 3 || rep.Requests != 3 {
		t.Fatalf("report %+v: want backlog 250, 250 sent in 3 batches of at most 100", rep)
	}
	if rep.Projected != 250 {
		t.Fatalf("projected %d of 250 ticket documents", rep.Projected)
	}
	e.assertExactlyOnce()
	// The documents themselves now say SUCCESS (projection), so status filters see it.
	n, err := e.db.Collection(nstore.TicketsCollection).CountDocuments(context.Background(), bson.M{"status": "SUCCESS"})
	if err != nil || n != 250 {
		t.Fatalf("projected SUCCESS documents: %d, %v", n, err)
	}
	// A second sweep finds nothing to do and sends nothing.
	rep, err = e.sweeper(sweeper.Config{}).Run(context.Background())
	if err != nil || rep.Requests != 0 || rep.Backlog != 0 {
		t.Fatalf("second sweep: %+v, %v", rep, err)
	}
}

func TestConcurrentSweepsDeliverEachTicketOnce(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(500, nil)
	const sweeps = 4
	var wg sync.WaitGroup
	reps := make([]sweeper.Report, sweeps)
	for i := range sweeps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := e.sweeper(sweeper.Config{BatchSize: 50, PageSize: 100}).Run(context.Background())
			if err != nil {
				t.Error(err)
			}
			reps[i] = rep
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range reps {
		total += r.Sent
	}
	if total != 500 {
		t.Fatalf("sweeps reported %d sent, want 500: %+v", total, reps)
	}
	e.assertExactlyOnce()
}

func TestCancelledSweepThenNextDeliversAllOnce(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(300, nil)
	// Slow provider: the first sweep is cancelled (as by SIGTERM) while sends are in flight.
	e.fake.UpdateFaults(func(f *resendfake.Faults) { f.Delay = 300 * time.Millisecond; f.DelayRate = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	rep1, err := e.sweeper(sweeper.Config{BatchSize: 20, PageSize: 100, Concurrency: 2}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep1.Stopped != "signal" || rep1.Sent >= 300 {
		t.Fatalf("first sweep should have been stopped early: %+v", rep1)
	}
	e.fake.SetFaults(resendfake.Faults{})
	rep2, err := e.sweeper(sweeper.Config{BatchSize: 20, PageSize: 100}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep1.Sent+rep2.Sent != 300 {
		t.Fatalf("sent %d + %d, want 300 (first %+v)", rep1.Sent, rep2.Sent, rep1)
	}
	e.assertExactlyOnce()
}

func TestFlakyProviderEndsWithEverythingDeliveredOnce(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(300, nil)
	// Half the requests fail: some before processing, some after (the response is lost,
	// the emails went out). Retries must neither lose nor repeat an email.
	e.fake.SetFaults(resendfake.Faults{FailRate: 0.25, LoseRate: 0.25})
	cfg := sweeper.Config{BatchSize: 10, PageSize: 100, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 50}
	for i := 0; i < 60; i++ {
		rep, err := e.sweeper(cfg).Run(context.Background())
		if err != nil && !errors.Is(err, sweeper.ErrProviderFailing) { // a sweep whose every request failed
			t.Fatal(err)
		}
		if rep.Backlog == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.fake.Stats().Requests < 40 {
		t.Fatalf("expected many failing requests, got %+v", e.fake.Stats())
	}
	e.assertExactlyOnce()
	// The history of failed attempts stays on the tickets that needed them.
	retried := 0
	for _, id := range e.ids {
		tk := e.ticket(id)
		if len(tk.Errors) > 0 {
			retried++
			if tk.Attempts != len(tk.Errors)+1 {
				t.Fatalf("ticket %s: %d attempts but %d errors", id.Hex(), tk.Attempts, len(tk.Errors))
			}
		}
	}
	if retried == 0 {
		t.Fatal("no ticket recorded a failed attempt")
	}
}

func TestRejectedRecipientFailsAloneAndDoesNotHoldUpOthers(t *testing.T) {
	e := newEnv(t, resendfake.Options{Reject: []string{"bounce@example.com"}})
	e.seed(40, func(i int) string {
		if i == 7 {
			return "bounce@example.com"
		}
		return fmt.Sprintf("c%d@example.com", i)
	})
	rep, err := e.sweeper(sweeper.Config{}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 39 || rep.Failed != 1 {
		t.Fatalf("report %+v: want 39 sent, 1 failed", rep)
	}
	for _, id := range e.ids {
		tk := e.ticket(id)
		if tk.RecipientEmails[0] == "bounce@example.com" {
			if tk.Status != notification.StatusFailed || !strings.Contains(tk.LastError, "rejected") {
				t.Fatalf("rejected ticket: %s %q", tk.Status, tk.LastError)
			}
		} else if tk.Status != notification.StatusSuccess || e.fake.DeliveredCount(id.Hex()) != 1 {
			t.Fatalf("ticket %s: %s, delivered %d", id.Hex(), tk.Status, e.fake.DeliveredCount(id.Hex()))
		}
	}
}

func TestRateLimitedProviderIsObeyed(t *testing.T) {
	e := newEnv(t, resendfake.Options{RateLimit: 2})
	e.seed(60, nil)
	// The client believes it may send 20/s; the provider allows 2/s and answers 429 with
	// retry-after. Nothing is lost, nothing repeated, nothing charged as an attempt.
	rep, err := e.sweeper(sweeper.Config{BatchSize: 10, RateLimit: 20}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.RateLimited == 0 || rep.Sent != 60 {
		t.Fatalf("report %+v: want 429s and 60 sent", rep)
	}
	e.assertExactlyOnce()
	for _, id := range e.ids {
		if tk := e.ticket(id); tk.Attempts != 1 {
			t.Fatalf("ticket %s charged %d attempts for 429s", id.Hex(), tk.Attempts)
		}
	}
}

func TestExhaustedTicketFailsThenOperatorRequeues(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(3, nil)
	e.fake.SetFaults(resendfake.Faults{FailRate: 1})
	cfg := sweeper.Config{MaxAttempts: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	for range 3 {
		if _, err := e.sweeper(cfg).Run(context.Background()); !errors.Is(err, sweeper.ErrProviderFailing) {
			t.Fatalf("a sweep whose every request failed: %v, want ErrProviderFailing", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range e.ids {
		tk := e.ticket(id)
		if tk.Status != notification.StatusFailed || tk.Attempts != 3 || len(tk.Errors) < 3 ||
			!strings.Contains(tk.LastError, "gave up after 3 attempts") {
			t.Fatalf("ticket %s: %s after %d attempts, %d errors, %q", id.Hex(), tk.Status, tk.Attempts, len(tk.Errors), tk.LastError)
		}
	}
	// The provider recovers; an operator re-queues one ticket; the next sweep delivers it
	// (and only it), keeping its history.
	e.fake.SetFaults(resendfake.Faults{})
	if _, err := e.notes.Requeue(context.Background(), e.ids[0]); err != nil {
		t.Fatal(err)
	}
	rep, err := e.sweeper(cfg).Run(context.Background())
	if err != nil || rep.Sent != 1 {
		t.Fatalf("after requeue: %+v, %v", rep, err)
	}
	tk := e.ticket(e.ids[0])
	if tk.Status != notification.StatusSuccess || tk.Generation != 1 || tk.Attempts != 4 || len(tk.Errors) < 3 {
		t.Fatalf("requeued ticket: %s gen %d attempts %d errors %d", tk.Status, tk.Generation, tk.Attempts, len(tk.Errors))
	}
	if n := e.fake.DeliveredCount(e.ids[0].Hex()); n != 1 {
		t.Fatalf("requeued ticket delivered %d times", n)
	}
	if e.ticket(e.ids[1]).Status != notification.StatusFailed {
		t.Fatal("a ticket nobody re-queued changed state")
	}
}

func TestLostResponseIsNotASecondEmail(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(30, nil)
	// The provider accepts the batch but the client times out waiting for the answer.
	e.fake.DelayNext(1, 3*time.Second)
	s := sweeper.New(e.store, resendmail.New(apiKey, e.url, 500*time.Millisecond, nil),
		sweeper.Config{From: "CineFlow <tickets@cineflow.test>", RateLimit: 100, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, Deadline: 20 * time.Second})
	rep, err := s.Run(context.Background())
	if !errors.Is(err, sweeper.ErrProviderFailing) || rep.Retried != 30 || rep.Sent != 0 || rep.ProviderErrorsByClass[sweeper.ClassTimeout] != 1 {
		t.Fatalf("first sweep: %+v, %v", rep, err)
	}
	time.Sleep(5 * time.Millisecond)
	rep, err = s.Run(context.Background())
	if err != nil || rep.Sent != 30 {
		t.Fatalf("retry sweep: %+v, %v; first ticket: %q", rep, err, e.ticket(e.ids[0]).LastError)
	}
	e.assertExactlyOnce()
}

func TestAuthFailureStopsWithoutChargingAttempts(t *testing.T) {
	e := newEnv(t, resendfake.Options{APIKey: "re_the_real_key"})
	e.seed(5, nil)
	_, err := e.sweeper(sweeper.Config{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "API key") {
		t.Fatalf("want ErrAuth, got %v", err)
	}
	if strings.Contains(err.Error(), apiKey) {
		t.Fatal("the error leaks the API key")
	}
	for _, id := range e.ids {
		if tk := e.ticket(id); tk.Status != notification.StatusPending || tk.Attempts != 0 {
			t.Fatalf("ticket %s: %s, %d attempts", id.Hex(), tk.Status, tk.Attempts)
		}
	}
}

func TestSendSpanLinksToTheTraceThatCreatedTheTicket(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	shutdown, err := telemetry.Setup(context.Background(), "sweeper-test", "test", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	e := newEnv(t, resendfake.Options{})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tk := &notification.Ticket{Subject: "Payment received", Content: "Booking 42 is paid",
		RecipientEmails: []string{"payer@example.com"}, TraceParent: "00-" + traceID + "-00f067aa0ba902b7-01"}
	saved, _, err := e.notes.Create(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	e.ids = append(e.ids, saved.ID)
	if _, err := e.sweeper(sweeper.Config{}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.assertExactlyOnce()
	for _, s := range rec.Ended() {
		if s.Name() != "resend.send" {
			continue
		}
		for _, l := range s.Links() {
			if l.SpanContext.TraceID().String() == traceID {
				return
			}
		}
	}
	t.Fatal("no resend.send span links to the ticket's trace")
}

// TestDatabaseBlipLosesNothing stops the database in the middle of a sweep (sends in flight,
// outcomes not yet recorded), brings it back, and checks that later sweeps deliver every
// ticket exactly once.
func TestDatabaseBlipLosesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(addr string) *devdb.Server {
		srv, err := devdb.Start(context.Background(), devdb.Options{Addr: addr, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start("127.0.0.1:0")
	addr := srv.Addr()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetServerSelectionTimeout(2 * time.Second).SetTimeout(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database("blip")
	e := &env{t: t, db: db, store: mongostore.New(db), notes: nstore.New(db),
		fake: resendfake.New(resendfake.Options{APIKey: apiKey, Seed: 7})}
	fakeSrv := httptest.NewServer(e.fake)
	defer fakeSrv.Close()
	e.url = fakeSrv.URL
	if err := e.store.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.seed(400, nil)
	e.fake.SetFaults(resendfake.Faults{Delay: 300 * time.Millisecond, DelayRate: 1})

	cfg := sweeper.Config{BatchSize: 10, PageSize: 50, Concurrency: 2, Deadline: 4 * time.Second, LeaseMargin: 500 * time.Millisecond,
		SendTimeout: time.Second, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	// The first sweep has 6 s of sends to make (40 requests, 2 at a time, 300 ms each); the
	// database takes about 3 s to close (FerretDB lets its connections finish first).
	cfg1 := cfg
	cfg1.Deadline = 8 * time.Second
	first := time.Now()
	done := make(chan sweeper.Report, 1)
	go func() {
		rep, _ := e.sweeper(cfg1).Run(context.Background())
		done <- rep
	}()
	for e.fake.Stats().Deliveries < 20 && time.Since(first) < 20*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close() // the database goes away with batches in flight
	rep1 := <-done
	if rep1.StoreErrors == 0 {
		t.Fatalf("the first sweep did not notice the database going away: %+v", rep1)
	}
	srv = start(addr)
	defer srv.Close()
	e.fake.SetFaults(resendfake.Faults{})
	time.Sleep(time.Until(first.Add(cfg1.Deadline + cfg1.LeaseMargin + 200*time.Millisecond)))
	for i := 0; i < 10; i++ {
		rep, err := e.sweeper(cfg).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Backlog == 0 && rep.Requests == 0 {
			break
		}
	}
	e.assertExactlyOnce()
}

// A sweep that runs out of time before projecting leaves ticket documents PENDING (readers
// still see SUCCESS); the next sweep notices, sends nothing, and projects them.
func TestLaterSweepProjectsWhatAnEarlierOneCouldNot(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(120, nil)
	rep, err := e.sweeper(sweeper.Config{ProjectFor: time.Nanosecond}).Run(context.Background())
	if err != nil || rep.Sent != 120 || rep.Projected != 0 {
		t.Fatalf("first sweep: %+v, %v", rep, err)
	}
	tickets := e.db.Collection(nstore.TicketsCollection)
	if n, _ := tickets.CountDocuments(context.Background(), bson.M{"status": "PENDING"}); n != 120 {
		t.Fatalf("%d documents still PENDING, want 120 (unprojected)", n)
	}
	e.assertExactlyOnce() // readers resolve the truth from the outcomes
	rep, err = e.sweeper(sweeper.Config{Deadline: time.Minute, ProjectFor: time.Minute}).Run(context.Background())
	if err != nil || rep.Requests != 0 || rep.Projected != 120 || rep.Backlog != 0 {
		t.Fatalf("second sweep: %+v, %v", rep, err)
	}
	if n, _ := tickets.CountDocuments(context.Background(), bson.M{"status": "SUCCESS"}); n != 120 {
		t.Fatalf("%d documents SUCCESS after projection, want 120", n)
	}
	if n, _ := e.db.Collection(nstore.BatchesCollection).CountDocuments(context.Background(), bson.M{}); n != 2 {
		t.Fatalf("%d batch records, want the 2 that were sent (empty ones are discarded)", n)
	}
	e.assertExactlyOnce()
}

// Right after a sweep, before any projection onto the ticket documents, the notification
// service's status lists hold the tickets as delivered: SUCCESS the sent ones, FAILED the
// rejected one, PENDING none; every ticket once in the list of all.
func TestStatusListsRightAfterASweep(t *testing.T) {
	e := newEnv(t, resendfake.Options{Reject: []string{"bounce@example.com"}})
	e.seed(45, func(i int) string {
		if i == 11 {
			return "bounce@example.com"
		}
		return fmt.Sprintf("c%d@example.com", i)
	})
	rep, err := e.sweeper(sweeper.Config{ProjectFor: time.Nanosecond}).Run(context.Background())
	if err != nil || rep.Sent != 44 || rep.Failed != 1 || rep.Projected != 0 {
		t.Fatalf("sweep: %+v, %v", rep, err)
	}
	list := func(st notification.Status) map[notification.ID]notification.Status {
		t.Helper()
		out := map[notification.ID]notification.Status{}
		f := notification.ListFilter{Status: st, Limit: 10}
		for range 100 {
			page, err := e.notes.List(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range page.Tickets {
				if _, twice := out[tk.ID]; twice {
					t.Fatalf("%s list shows %s twice", st, tk.ID.Hex())
				}
				out[tk.ID] = tk.Status
			}
			if page.Next == "" {
				return out
			}
			f.Cursor = page.Next
		}
		t.Fatalf("%s list does not end", st)
		return nil
	}
	all, success, failed := list(""), list(notification.StatusSuccess), list(notification.StatusFailed)
	if len(all) != 45 || len(success) != 44 || len(failed) != 1 || len(list(notification.StatusPending)) != 0 {
		t.Fatalf("lists: %d tickets, %d SUCCESS, %d FAILED", len(all), len(success), len(failed))
	}
	for id, st := range failed {
		if st != notification.StatusFailed || e.ticket(id).RecipientEmails[0] != "bounce@example.com" {
			t.Errorf("FAILED list shows %s (%s)", id.Hex(), st)
		}
	}
	for id, st := range success {
		if st != notification.StatusSuccess || e.fake.DeliveredCount(id.Hex()) != 1 {
			t.Errorf("SUCCESS list shows %s (%s)", id.Hex(), st)
		}
	}
}
