package mongostore

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
)

// Listing tickets from the list indexes (listindex.go). A page reads the entries of its
// indexes newest first, by exact _id, and shows each entry's ticket as Get does, skipping
// entries whose ticket is not (or no longer) what the list is about:
//
//   - all tickets: ticket_list, every entry whose ticket is stored;
//   - PENDING: ticket_list (generation 0) and ticket_list_requeued, merged by time, each
//     entry shown while its generation is the ticket's current one and undecided;
//   - SUCCESS, FAILED: the index of that outcome, each entry shown while its generation is
//     the ticket's current one with that outcome (a FAILED one until it is re-queued).
//
// Every entry examined costs a read by _id, and its ticket's reads as Get does them (one for
// a ticket projected SUCCESS); an entry of a PENDING list whose generation is decided costs
// one more instead (its outcome). A page examines at most listExamine entries, so its cost
// does not depend on how many tickets are stored: when it stops early, it is short (even
// empty) and its Next carries on where it stopped.
//
// A cursor is where each index's walk stands (and how many matching tickets are still to
// skip): "t<n>" for all tickets, "p<n>.<m>" for PENDING, "s<n>" SUCCESS, "f<n>" FAILED, with
// "~<skip>" appended while a skip is unfinished. Entries below n are still to read.

// listExamine bounds the index entries one page examines.
const listExamine = 250

// maxListLimit bounds a page.
const maxListLimit = 100

// listMigration names the marker that every ticket stored before the list indexes has its
// entries (BackfillList); until it exists, lists are read from the tickets (listScan).
const listMigration = "ticket-list-v1"

// maxCursorLen bounds a cursor's length.
const maxCursorLen = 64

// source is one index a list reads, and where its walk stands.
type source struct {
	x     *listIndex
	pos   int64        // entries below pos are still to read
	buf   []*listEntry // entries read ahead, from pos-1 down
	floor int64        // the first free downward number, once known
	known bool
	done  bool // no entry below those in buf
}

// listQuery is a list being read: its kind ('t', 'p', 's', 'f'), status and sources.
type listQuery struct {
	kind   byte
	status notification.Status
	srcs   []*source
	skip   int // matching tickets still to skip
}

func (s *Store) newQuery(st notification.Status) *listQuery {
	src := func(i int) *source { return &source{x: s.lists[i]} }
	switch st {
	case notification.StatusPending:
		return &listQuery{kind: 'p', status: st, srcs: []*source{src(listAll), src(listRequeued)}}
	case notification.StatusSuccess:
		return &listQuery{kind: 's', status: st, srcs: []*source{src(listSuccess)}}
	case notification.StatusFailed:
		return &listQuery{kind: 'f', status: st, srcs: []*source{src(listFailed)}}
	}
	return &listQuery{kind: 't', srcs: []*source{src(listAll)}}
}

// cursor is the query's position as a cursor.
func (q *listQuery) cursor() string {
	var b strings.Builder
	b.WriteByte(q.kind)
	for i, src := range q.srcs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatInt(src.pos, 10))
	}
	if q.skip > 0 {
		b.WriteByte('~')
		b.WriteString(strconv.Itoa(q.skip))
	}
	return b.String()
}

func badCursor() error {
	return errs.Fields(map[string]string{"cursor": "is not a cursor of this list: pass the X-Next-Cursor (or Link) of the page before, with the same status"})
}

// parseCursor sets the query's position from a cursor; a position above an index's head
// (a cursor not made here) is brought down to it.
func (s *Store) parseCursor(ctx context.Context, q *listQuery, c string) error {
	if len(c) < 2 || len(c) > maxCursorLen || c[0] != q.kind {
		return badCursor()
	}
	posPart, skipPart, hasSkip := strings.Cut(c[1:], "~")
	parts := strings.Split(posPart, ".")
	if len(parts) != len(q.srcs) {
		return badCursor()
	}
	if hasSkip {
		n, err := strconv.Atoi(skipPart)
		if err != nil || n <= 0 || n > 1<<30 || strconv.Itoa(n) != skipPart {
			return badCursor()
		}
		q.skip = n
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || strconv.FormatInt(n, 10) != p {
			return badCursor()
		}
		src := q.srcs[i]
		if n > src.x.top.Load() {
			head, err := src.x.head(ctx)
			if err != nil {
				return unavailable(err, "read the list")
			}
			n = min(n, head)
		}
		src.pos = n
	}
	return nil
}

// positionBefore sets the query's position from a cursor of earlier versions, a ticket id:
// the entries of tickets older than it. In the index of all tickets the ticket's own entry
// is where its document says (listSeq); otherwise the index is bisected on its entries'
// ticket ids, which grow with the entries' numbers (exactly in the index of all tickets,
// roughly in the others: there the position is approximate).
func (s *Store) positionBefore(ctx context.Context, q *listQuery, before notification.ID) error {
	for i, src := range q.srcs {
		if i == 0 && src.x == s.lists[listAll] {
			var d struct {
				ListSeq *int64 `bson:"listSeq"`
			}
			found, err := findByID(ctx, s.tickets, before, &d)
			if err != nil {
				return unavailable(err, "read the list")
			}
			if found && d.ListSeq != nil {
				src.pos = *d.ListSeq
				continue
			}
		}
		lo, err := src.x.bottom(ctx)
		if err != nil {
			return unavailable(err, "read the list")
		}
		lo++ // the lowest entry
		hi, err := src.x.head(ctx)
		if err != nil {
			return unavailable(err, "read the list")
		}
		for lo < hi { // the first entry whose ticket is not older than before
			mid := lo + (hi-lo)/2
			var e listEntry
			found, err := findByID(ctx, src.x.coll, seqID(mid), &e)
			if err != nil {
				return unavailable(err, "read the list")
			}
			if found && bytes.Compare(e.Ticket[:], before[:]) < 0 {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		src.pos = lo
	}
	return nil
}

// List returns a page of tickets, newest first, as Get shows them: from the list indexes,
// or, until every ticket stored before them is in them (BackfillList), from the tickets
// (listScan). f.Limit is brought into 1..100 (0: 20). Next is set whenever entries remain
// to examine; see the comment at the top of this file.
func (s *Store) List(ctx context.Context, f notification.ListFilter) (notification.Page, error) {
	if f.Limit <= 0 {
		f.Limit = 20
	}
	f.Limit = min(f.Limit, maxListLimit)
	f.Skip = max(f.Skip, 0)
	if f.Cursor == "" {
		ready, err := s.listReady(ctx)
		if err != nil {
			return notification.Page{}, unavailable(err, "read the list")
		}
		if !ready {
			return s.listScan(ctx, f)
		}
	}
	q := s.newQuery(f.Status)
	switch {
	case f.Cursor != "":
		if err := s.parseCursor(ctx, q, f.Cursor); err != nil {
			return notification.Page{}, err
		}
	case !f.Before.IsZero():
		if err := s.positionBefore(ctx, q, f.Before); err != nil {
			return notification.Page{}, err
		}
	default:
		for _, src := range q.srcs {
			head, err := src.x.head(ctx)
			if err != nil {
				return notification.Page{}, unavailable(err, "read the list")
			}
			src.pos = head
		}
	}
	q.skip += f.Skip
	if q.kind == 't' {
		// Every entry of the index of all tickets is a ticket (but for the rare one whose
		// create failed): skipping is moving down.
		q.srcs[0].pos -= int64(q.skip)
		q.skip = 0
	}
	return s.readPage(ctx, q, f.Limit)
}

// pick is an entry taken from source src of a query.
type pick struct {
	src int
	e   *listEntry
}

// readPage reads the next page of q: rounds of entries, newest first, each round's tickets
// read in parallel, until the page is full, the entries run out or listExamine are examined.
func (s *Store) readPage(ctx context.Context, q *listQuery, limit int) (notification.Page, error) {
	out := make([]notification.Ticket, 0, limit)
	budget, r := listExamine, 0
	var rest []pick // entries taken but not examined
	for len(rest) == 0 && budget > 0 {
		need := limit - len(out) + q.skip
		if need <= 0 {
			break
		}
		r = min(budget, max(need, 2*r))
		picks, err := s.take(ctx, q, r)
		if err != nil {
			return notification.Page{}, err
		}
		if len(picks) == 0 {
			break
		}
		shown, err := s.examine(ctx, q, picks)
		if err != nil {
			return notification.Page{}, err
		}
		for i, p := range picks {
			if len(out) == limit && q.skip == 0 {
				rest = picks[i:]
				break
			}
			q.srcs[p.src].pos = p.e.Seq
			budget--
			switch {
			case shown[i] == nil:
			case q.skip > 0:
				q.skip--
			default:
				out = append(out, *shown[i])
			}
		}
	}
	more := len(rest) > 0
	for _, src := range q.srcs {
		if more {
			break
		}
		if len(src.buf) > 0 {
			more = true
			break
		}
		if err := s.fill(ctx, src, 1); err != nil {
			return notification.Page{}, err
		}
		more = len(src.buf) > 0
	}
	page := notification.Page{Tickets: out}
	if more {
		page.Next = q.cursor()
	}
	return page, nil
}

// take takes the next n entries of q's sources (fewer when they run out), newest first:
// merged by time when there are two.
func (s *Store) take(ctx context.Context, q *listQuery, n int) ([]pick, error) {
	for _, src := range q.srcs {
		if err := s.fill(ctx, src, n); err != nil {
			return nil, err
		}
	}
	picks := make([]pick, 0, n)
	for len(picks) < n {
		best := -1
		for i, src := range q.srcs {
			if len(src.buf) > 0 && (best < 0 || src.buf[0].At.After(q.srcs[best].buf[0].At)) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		src := q.srcs[best]
		picks = append(picks, pick{src: best, e: src.buf[0]})
		src.buf = src.buf[1:]
	}
	return picks, nil
}

// fill reads ahead until src has n entries in buf, or none are left.
func (s *Store) fill(ctx context.Context, src *source, n int) error {
	want := n - len(src.buf)
	if want <= 0 || src.done {
		return nil
	}
	from := src.pos - 1 - int64(len(src.buf)) // the next number to read
	to := from - int64(want) + 1
	if to < 0 && !src.known {
		floor, err := src.x.bottom(ctx)
		if err != nil {
			return unavailable(err, "read the list")
		}
		src.floor, src.known = floor, true
	}
	if src.known && to <= src.floor {
		to, src.done = src.floor+1, true
	}
	if to > from {
		return nil
	}
	nums := make([]int64, 0, from-to+1)
	for k := from; k >= to; k-- {
		nums = append(nums, k)
	}
	es, err := src.x.read(ctx, nums)
	if err != nil {
		return unavailable(err, "read the list")
	}
	for _, e := range es {
		if e == nil { // cannot happen below the head: the indexes have no gaps
			src.done = true
			break
		}
		src.buf = append(src.buf, e)
	}
	return nil
}

// examine reads the tickets of picks (in parallel) and returns each as the list shows it, or
// nil for an entry to skip.
func (s *Store) examine(ctx context.Context, q *listQuery, picks []pick) ([]*notification.Ticket, error) {
	// In a PENDING list most entries are of tickets decided since: the outcome of the entry's
	// generation says so in one read, before the ticket is read. (A FAILED entry is stale
	// only once re-queued, which is rare; resolving the ticket reads that record anyway.)
	var gone *mongo.Collection
	if q.status == notification.StatusPending {
		gone = s.outcomes
	}
	shown := make([]*notification.Ticket, len(picks))
	err := pointReads(len(picks), func(i int) error {
		e := picks[i].e
		if gone != nil {
			moved, err := exists(ctx, gone, notification.AssignmentKey(e.Ticket, e.Gen))
			if err != nil || moved {
				return err
			}
		}
		t, err := s.stored(ctx, e.Ticket)
		if err != nil || t == nil {
			return err
		}
		if err := s.resolve(ctx, t); err != nil {
			return err
		}
		if q.status == "" || t.Status == q.status && t.Generation == e.Gen {
			shown[i] = t
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err, "read the tickets")
	}
	return shown, nil
}

// listReady reports whether the list indexes hold every ticket (their marker exists).
func (s *Store) listReady(ctx context.Context) (bool, error) {
	if s.listDone.Load() {
		return true, nil
	}
	found, err := exists(ctx, s.db.Collection(MigrationsCollection), listMigration)
	if found {
		s.listDone.Store(true)
	}
	return found, err
}

// listScan is how lists are read until the list indexes are complete: a sorted find of the
// tickets (status filter on the stored status, then f.Before, f.Skip), every ticket shown as
// Get does and dropped when its resolved status does not match, read on until the page is
// full or the tickets run out. Next is the last ticket's id when the page is full (the
// cursor of earlier versions). On MongoDB the status_id index serves the read; the dev
// database reads and sorts every ticket.
func (s *Store) listScan(ctx context.Context, f notification.ListFilter) (notification.Page, error) {
	want := f.Limit
	out := make([]notification.Ticket, 0, want)
	for {
		page, next, err := s.scanPage(ctx, f)
		if err != nil {
			return notification.Page{}, err
		}
		out = append(out, page...)
		if len(out) >= want {
			out = out[:want]
			return notification.Page{Tickets: out, Next: out[len(out)-1].ID.Hex()}, nil
		}
		if next.IsZero() {
			return notification.Page{Tickets: out}, nil
		}
		f.Before, f.Skip = next, 0
		f.Limit = max(want-len(out), min(2*f.Limit, maxListRead))
	}
}

// scanPage reads f.Limit stored tickets for listScan and drops those whose resolved status
// does not match; next is the id of the last one read, or zero when they ran out.
func (s *Store) scanPage(ctx context.Context, f notification.ListFilter) (tickets []notification.Ticket, next notification.ID, err error) {
	filter := bson.M{}
	if f.Status != "" {
		filter["status"] = f.Status
	}
	if !f.Before.IsZero() {
		filter["_id"] = bson.M{"$lt": f.Before}
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(f.Limit))
	if f.Skip > 0 {
		opts.SetSkip(int64(f.Skip))
	}
	cur, err := s.tickets.Find(ctx, filter, opts)
	if err != nil {
		return nil, next, unavailable(err, "list tickets")
	}
	raw := make([]notification.Ticket, 0, f.Limit)
	if err := cur.All(ctx, &raw); err != nil {
		return nil, next, unavailable(err, "list tickets")
	}
	if len(raw) == f.Limit {
		next = raw[len(raw)-1].ID
	}
	if err := s.resolveAll(ctx, raw); err != nil {
		return nil, notification.ID{}, err
	}
	if f.Status == "" {
		return raw, next, nil
	}
	tickets = raw[:0]
	for _, t := range raw {
		if t.Status == f.Status {
			tickets = append(tickets, t)
		}
	}
	return tickets, next, nil
}
