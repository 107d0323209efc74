package mongostore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
)

// BenchmarkListGrowth seeds tickets in windows up to BENCH_LIST_TOTAL (100,000) and, after
// each window, times pages of GET /'s list (Store.List, limit 20) unfiltered and with each
// status filter: pages from the newest on, following Next, and pages from random places in
// the list. It prints p50 and p99 per window and list, the old scan's page (the unfiltered
// first page as earlier versions read it) and a point read by _id (the machine's noise).
//
// The data is what a running system holds: tickets created through the index of all tickets;
// all but the newest ~2% decided through Decide (the sweeper's path: list entries, then
// outcomes), 1 in 25 FAILED, 1 in 200 of those re-queued (Requeue) and half of these delivered
// again. Ticket documents are written already projected (the sweeper copies outcomes onto
// them), but for the newest ones, whose outcomes came after their creation. The work is
// fixed: it runs once whatever b.N is.
func BenchmarkListGrowth(b *testing.B) {
	total := benchEnv("BENCH_LIST_TOTAL", 100000)
	windows := []int{total / 10, total / 4, total / 2, total}
	if s := os.Getenv("BENCH_LIST_WINDOWS"); s != "" {
		windows = windows[:0]
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			windows = append(windows, n)
		}
	}
	for b.Loop() {
		listGrowth(b, windows)
	}
}

func benchEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// listSeeder grows a store's tickets as described at BenchmarkListGrowth.
type listSeeder struct {
	s       *Store
	ids     []notification.ID // in creation order
	decided int               // ids[:decided] are decided
	rnd     *rand.Rand
}

// fate is what becomes of ticket i once it is decided.
func fate(i int) notification.Status {
	if i%25 == 7 {
		return notification.StatusFailed
	}
	return notification.StatusSuccess
}

// create adds n tickets: their entries in the index of all tickets, then the documents, in
// chunks, as concurrent creates would (one ordered insert of entries per chunk). A document
// is written projected when its ticket will be decided before the next measurement.
func (sd *listSeeder) create(b *testing.B, n, decideBelow int) {
	ctx := context.Background()
	const chunk = 1000
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		now := time.Now().UTC().Truncate(time.Millisecond)
		entries := make([]listEntry, k)
		docs := make([]any, k)
		for j := range k {
			id := notification.NewID()
			entries[j] = listEntry{Key: id.Hex(), Ticket: id, At: now}
			sd.ids = append(sd.ids, id)
		}
		nums, err := sd.s.lists[listAll].insertRun(ctx, false, entries)
		if err != nil {
			b.Fatal(err)
		}
		for j := range k {
			i := len(sd.ids) - k + j
			t := notification.Ticket{ID: entries[j].Ticket, Subject: "Your booking is confirmed",
				Content: "<p>Booking 42: 2 seats for Dune, 18:30, Screen 3.</p>", RecipientEmails: []string{"customer@example.com"},
				Requester: "core-api", Status: notification.StatusPending, Errors: []notification.AttemptError{},
				CreatedAt: now, UpdatedAt: now, NextAttemptAt: now}
			if i < decideBelow {
				sent := now
				t.Status, t.Attempts, t.NextAttemptAt, t.Batch = fate(i), 1, time.Time{}, "seed"
				if t.Status == notification.StatusSuccess {
					t.SentAt, t.ProviderMessageID = &sent, "msg-"+t.ID.Hex()
				} else {
					t.LastError = "550 mailbox unavailable"
					t.Errors = []notification.AttemptError{{At: now, Attempt: 1, Error: t.LastError}}
				}
			}
			docs[j] = listedTicket{Ticket: t, ListSeq: &nums[j]}
		}
		if _, err := sd.s.tickets.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			b.Fatal(err)
		}
	}
}

// decide decides every ticket below upto through Decide (as sweeps do, 100 a batch, four
// batches at once), then re-queues 1 in 200 of the FAILED ones and delivers half of those.
func (sd *listSeeder) decide(b *testing.B, upto int) {
	ctx := context.Background()
	var requeue []notification.ID
	var batches [][]notification.Outcome
	for i := sd.decided; i < upto; i += 100 {
		var out []notification.Outcome
		for j := i; j < min(i+100, upto); j++ {
			id, st, at := sd.ids[j], fate(j), time.Now().UTC().Truncate(time.Millisecond)
			o := notification.Outcome{Key: notification.AssignmentKey(id, 0), Ticket: id, Status: st, Attempts: 1, At: at}
			if st == notification.StatusFailed {
				o.Error = "550 mailbox unavailable"
				if j%(25*200) == 7 {
					requeue = append(requeue, id)
				}
			} else {
				o.SentAt, o.ProviderMessageID = &at, "msg-"+id.Hex()
			}
			out = append(out, o)
		}
		batches = append(batches, out)
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(batches))
	sem := make(chan struct{}, 4)
	for _, out := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := sd.s.Decide(ctx, out); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	sd.decided = upto
	for k, id := range requeue {
		if _, err := sd.s.Requeue(ctx, id); err != nil {
			b.Fatal(err)
		}
		if k%2 == 0 {
			at := time.Now().UTC().Truncate(time.Millisecond)
			if _, err := sd.s.Decide(ctx, []notification.Outcome{{Key: notification.AssignmentKey(id, 1), Ticket: id,
				Generation: 1, Status: notification.StatusSuccess, Attempts: 1, SentAt: &at, At: at}}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// listTimes are one list's page latencies in one window.
type listTimes struct {
	name      string
	lat       []time.Duration
	tickets   int
	examined  int
	shortWith int // pages short of the limit that still had a Next
}

func (lt *listTimes) p(q float64) time.Duration {
	if len(lt.lat) == 0 {
		return 0
	}
	s := slices.Clone(lt.lat)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// sampler times pages of one list of a seeded store: first a walk of headPages from the
// newest (following Next), then pages starting at random places of the list's indexes.
type sampler struct {
	sd        *listSeeder
	st        notification.Status
	headPages int
	lt        *listTimes
	f         notification.ListFilter
	n         int
}

func (sd *listSeeder) sampler(st notification.Status, headPages int) *sampler {
	name := string(st)
	if name == "" {
		name = "all"
	}
	return &sampler{sd: sd, st: st, headPages: headPages, lt: &listTimes{name: name},
		f: notification.ListFilter{Status: st, Limit: 20}}
}

// next times one page.
func (sp *sampler) next(b *testing.B) {
	ctx := context.Background()
	f := sp.f
	if sp.n >= sp.headPages {
		q := sp.sd.s.newQuery(sp.st)
		var cur strings.Builder
		cur.WriteByte(q.kind)
		for i, src := range q.srcs {
			head, err := src.x.head(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if i > 0 {
				cur.WriteByte('.')
			}
			cur.WriteString(strconv.FormatInt(sp.sd.rnd.Int64N(head+1), 10))
		}
		f.Cursor = cur.String()
	}
	sp.n++
	t0 := time.Now()
	p, err := sp.sd.s.List(ctx, f)
	sp.lt.lat = append(sp.lt.lat, time.Since(t0))
	if err != nil {
		b.Fatalf("%s: %v", sp.lt.name, err)
	}
	sp.lt.tickets += len(p.Tickets)
	if p.Next != "" && len(p.Tickets) < f.Limit {
		sp.lt.shortWith++
	}
	if sp.n <= sp.headPages {
		sp.f.Cursor = p.Next // "" at the end: from the newest again
	}
}

// pointRead is the median time of a read by _id on the seeded store (the machine's speed).
func (sd *listSeeder) pointRead(b *testing.B) time.Duration {
	var pts []time.Duration
	for i := range 200 {
		t0 := time.Now()
		if _, err := sd.s.stored(context.Background(), sd.ids[(i*7919)%len(sd.ids)]); err != nil {
			b.Fatal(err)
		}
		pts = append(pts, time.Since(t0))
	}
	slices.Sort(pts)
	return pts[len(pts)/2]
}

// grow seeds the store up to w tickets, the newest 2% (at least 200) still pending.
func (sd *listSeeder) grow(b *testing.B, w int) {
	pendingTail := max(w/50, 200)
	sd.create(b, w-len(sd.ids), w-pendingTail)
	sd.decide(b, w-pendingTail)
}

func newSeeder(b *testing.B, seed uint64) *listSeeder {
	s := New(devdb.TestDB(b))
	if err := s.EnsureIndexes(context.Background()); err != nil {
		b.Fatal(err)
	}
	return &listSeeder{s: s, rnd: rand.New(rand.NewPCG(seed, 2))}
}

var listStatuses = []notification.Status{"", notification.StatusPending, notification.StatusSuccess, notification.StatusFailed}

const (
	benchHeadPages   = 40
	benchRandomPages = 60
)

func listGrowth(b *testing.B, windows []int) {
	ctx := context.Background()
	sd := newSeeder(b, 1)
	type row struct {
		tickets int
		lists   []*listTimes
		scan    time.Duration
		point   time.Duration
		seed    time.Duration
	}
	var rows []row
	for _, w := range windows {
		began := time.Now()
		sd.grow(b, w)
		r := row{tickets: w, seed: time.Since(began), point: sd.pointRead(b)}
		for _, st := range listStatuses {
			sp := sd.sampler(st, benchHeadPages)
			for range benchHeadPages + benchRandomPages {
				sp.next(b)
			}
			r.lists = append(r.lists, sp.lt)
		}
		t0 := time.Now()
		if _, err := sd.s.listScan(ctx, notification.ListFilter{Limit: 20}); err != nil {
			b.Fatal(err)
		}
		r.scan = time.Since(t0)
		rows = append(rows, r)
		line := fmt.Sprintf("%7d tickets (seeded in %s): point read %s ms;", w, r.seed.Round(time.Second), ms(r.point))
		for _, lt := range r.lists {
			line += fmt.Sprintf(" %s p50 %s p99 %s;", lt.name, ms(lt.p(0.5)), ms(lt.p(0.99)))
		}
		b.Log(line + " old scan (all, first page) " + ms(r.scan) + " ms")
	}
	b.Log("")
	b.Log("| tickets | list | p50 ms | p99 ms | tickets/page | short pages with a next | old scan, first page ms | point read ms |")
	b.Log("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		for _, lt := range r.lists {
			scan := ""
			if lt.name == "all" {
				scan = ms(r.scan)
			}
			b.Logf("| %d | %s | %s | %s | %.1f | %d of %d | %s | %s |", r.tickets, lt.name, ms(lt.p(0.5)), ms(lt.p(0.99)),
				float64(lt.tickets)/float64(len(lt.lat)), lt.shortWith, len(lt.lat), scan, ms(r.point))
		}
	}
	first, last := rows[0], rows[len(rows)-1]
	worst := 0.0
	for i := range last.lists {
		worst = max(worst, float64(last.lists[i].p(0.99))/float64(first.lists[i].p(0.99)))
		b.ReportMetric(float64(last.lists[i].p(0.99).Microseconds())/1000, last.lists[i].name+"_p99_ms")
	}
	b.ReportMetric(worst, "worst_p99_growth")
	b.Logf("last window's p99 over the first's, worst list: %.2f (target: at most 1.5)", worst)

	// The windows are timed one after the other on a machine whose load changes meanwhile. So
	// the first window is seeded again in a database of its own, and its pages are timed
	// alternately with the last window's: both see the same load.
	small := newSeeder(b, 3)
	small.grow(b, windows[0])
	b.Log("")
	b.Logf("| list | p50 ms at %d | p99 ms at %d | p50 ms at %d | p99 ms at %d | p99 ratio |", windows[0], windows[0],
		windows[len(windows)-1], windows[len(windows)-1])
	b.Log("|---|---|---|---|---|---|")
	worstSide := 0.0
	for _, st := range listStatuses {
		a, z := small.sampler(st, 2*benchHeadPages), sd.sampler(st, 2*benchHeadPages)
		for range 2 * (benchHeadPages + benchRandomPages) {
			a.next(b)
			z.next(b)
		}
		ratio := float64(z.lt.p(0.99)) / float64(a.lt.p(0.99))
		worstSide = max(worstSide, ratio)
		b.Logf("| %s | %s | %s | %s | %s | %.2f |", a.lt.name, ms(a.lt.p(0.5)), ms(a.lt.p(0.99)), ms(z.lt.p(0.5)), ms(z.lt.p(0.99)), ratio)
	}
	// The floor under every page: a read by _id of a random ticket, in either database.
	pa, pz := &listTimes{name: "a ticket by _id"}, &listTimes{name: "a ticket by _id"}
	for range 2000 {
		for _, c := range []struct {
			sd *listSeeder
			lt *listTimes
		}{{small, pa}, {sd, pz}} {
			id := c.sd.ids[c.sd.rnd.IntN(len(c.sd.ids))]
			t0 := time.Now()
			if _, err := c.sd.s.stored(ctx, id); err != nil {
				b.Fatal(err)
			}
			c.lt.lat = append(c.lt.lat, time.Since(t0))
		}
	}
	b.Logf("| (%s) | %s | %s | %s | %s | %.2f |", pa.name, ms(pa.p(0.5)), ms(pa.p(0.99)), ms(pz.p(0.5)), ms(pz.p(0.99)),
		float64(pz.p(0.99))/float64(pa.p(0.99)))
	b.ReportMetric(worstSide, "worst_p99_growth_side_by_side")
	b.Logf("side by side, the last window's p99 over the first's, worst list: %.2f (target: at most 1.5)", worstSide)
}
