package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// ListEntriesCollection holds the index entries of the booking and payment lists.
const ListEntriesCollection = "list_entries"

// The lists (GET /bookings, /bookings/all, /payments) are read from streams of index entries,
// because the embedded database serves nothing but a read by exact _id without scanning the
// whole collection: a filtered, sorted find costs seconds at tens of thousands of bookings.
//
// A stream is a gap-free sequence of entries with _ids "<stream>:0", "<stream>:1", ...; each
// entry names one document (its ref). Four streams: a user's bookings ("b.<user id>"), every
// booking ("b"), a user's payments ("p.<user id>"), every payment ("p"). An entry is inserted
// before the document it names (CreateBooking, CreatePayment), so a document never exists
// without its entries; an entry whose document was never written (its insert failed) is
// skipped by readers. Each entry also carries a unique key "<stream>|<ref>", so a document is
// in a stream at most once, however often a lost reply makes its writer try again.
//
// Writers take the next position by insert: the first insert of a position wins, the loser
// learns it from the duplicate key and takes the next. Entries of one stream go out in one
// ordered insertMany, so position n is only ever inserted once n-1 exists (the positions below
// a writer's start exist, and an ordered insert stops at its first failure): no writer, even
// one that dies mid-batch, leaves a gap. Concurrent requests' entries are coalesced into one
// command, so the shared streams cost one round trip per batch of bookings, not per booking.
//
// Readers find the first free position (the head) from a per-process hint by galloping and
// bisection over reads by exact _id, look a few positions beyond it in case of a gap all the
// same, and read newest first down from it, a bounded number of positions per page. Then they
// read the stream's older part: the entries the backfill wrote for documents of earlier
// versions ("o" + stream, oldest first), read down from its own head.
//
// A page costs about two reads by _id per item (its entry, its document) and a few for the
// head, whatever the number of bookings; fewer when read again: the process keeps the entries
// and documents it has read (see lists.entryCache).

// Streams.
const (
	allBookingsStream = "b"
	allPaymentsStream = "p"
	legacyPrefix      = "o" // the backfill's part of a stream: legacyPrefix + stream
)

func userBookingsStream(userID string) string { return "b." + userID }
func userPaymentsStream(userID string) string { return "p." + userID }

func entryID(stream string, n int64) string { return stream + ":" + strconv.FormatInt(n, 10) }

// entryKey is the unique key of ref in stream (the backfill's part of a stream shares it).
func entryKey(stream, ref string) string { return strings.TrimPrefix(stream, legacyPrefix) + "|" + ref }

// shared reports whether many writers append to the stream (every booking, every payment).
func shared(stream string) bool {
	s := strings.TrimPrefix(stream, legacyPrefix)
	return s == allBookingsStream || s == allPaymentsStream
}

type listEntryDoc struct {
	ID  string    `bson:"_id"` // entryID(stream, position)
	Key string    `bson:"k"`   // entryKey(stream, ref): unique
	Ref string    `bson:"r"`   // the document's id
	At  time.Time `bson:"at"`
}

// Bounds of the lists.
const (
	// maxHints bounds the stream heads a process remembers; a full map starts over (a head
	// forgotten is found again by galloping from 0).
	maxHints = 50000
	// headProbe is how many positions past the head a reader looks at, so that a gap (which
	// writers never leave, but a lost write might) does not hide the entries above it;
	// headProbeEvery is how often (per stream and process; a writer fills a gap it meets).
	headProbe      = 2
	headProbeEvery = time.Second
	// appendTries bounds the rounds an entry fails to land in (another writer took its
	// position first, or its insert's fate was unknown).
	appendTries = 16
	// pageChunk bounds the positions a reader reads at once.
	pageChunk = 100
	// maxCachedEntries and maxCachedDocs bound the entries and the listed documents a process
	// keeps (a full cache starts over).
	maxCachedEntries = 50000
	maxCachedDocs    = 10000
)

// lists keeps the streams of a store.
type lists struct {
	coll   *mongo.Collection
	fg, bg *listWriter // requests' entries, and the backfill's (see core.AsBackground)

	hintsMu sync.Mutex
	hints   map[string]*streamHint

	// Entries never change once written, and a listed document changes only by the status
	// projected onto it, which the engine resolves from the booking's outcome anyway: both are
	// kept, so that pages read again (a client polling its list) cost the head search alone.
	entryCache *cache[string]
	docCache   *cache[any]

	backfilled atomic.Bool
}

// streamHint is what a process knows of a stream's head.
type streamHint struct {
	pos    atomic.Int64 // every position below it exists
	probed atomic.Int64 // when a reader last looked past the head (Unix nanoseconds)
}

// cache is a bounded map; a full one starts over.
type cache[V any] struct {
	mu  sync.Mutex
	m   map[string]V
	max int
}

func newCache[V any](max int) *cache[V] { return &cache[V]{m: map[string]V{}, max: max} }

func (c *cache[V]) get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *cache[V]) put(k string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
}

func newLists(db *mongo.Database) *lists {
	l := &lists{coll: db.Collection(ListEntriesCollection), hints: map[string]*streamHint{},
		entryCache: newCache[string](maxCachedEntries), docCache: newCache[any](maxCachedDocs)}
	l.fg, l.bg = &listWriter{l: l}, &listWriter{l: l}
	return l
}

func (l *lists) ensureIndexes(ctx context.Context) error {
	return mongox.EnsureIndexes(ctx, l.coll, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("key_unique")})
}

// hint returns the stream's hint, and whether the process knew it already.
func (l *lists) hint(stream string) (*streamHint, bool) {
	l.hintsMu.Lock()
	defer l.hintsMu.Unlock()
	h, ok := l.hints[stream]
	if !ok {
		if len(l.hints) >= maxHints {
			clear(l.hints)
		}
		h = &streamHint{}
		l.hints[stream] = h
	}
	return h, ok
}

// exists reports whether the stream has an entry at position n.
func (l *lists) exists(ctx context.Context, stream string, n int64) (bool, error) {
	err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: entryID(stream, n)}},
		options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, err
}

// entries reads the stream's entries at the given positions (nil where there is none).
func (l *lists) entries(ctx context.Context, stream string, pos []int64) ([]*listEntryDoc, error) {
	out := make([]*listEntryDoc, len(pos))
	err := eachLimited(ctx, len(pos), func(ctx context.Context, i int) error {
		var d listEntryDoc
		err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: entryID(stream, pos[i])}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err == nil {
			out[i] = &d
		}
		return err
	})
	return out, err
}

// firstFree returns the first free position at or above lo, every position below lo being
// taken: gallop up while positions exist, then bisect.
func (l *lists) firstFree(ctx context.Context, stream string, lo int64) (int64, error) {
	found, err := l.exists(ctx, stream, lo)
	if err != nil || !found {
		return lo, err
	}
	lo++
	step := int64(1)
	hi := lo // the first position not yet known to exist
	for {
		found, err := l.exists(ctx, stream, hi)
		if err != nil {
			return 0, err
		}
		if !found {
			break
		}
		lo = hi + 1
		step *= 2
		hi = lo + step - 1
	}
	for lo < hi { // positions below lo exist, hi does not
		mid := lo + (hi-lo)/2
		found, err := l.exists(ctx, stream, mid)
		if err != nil {
			return 0, err
		}
		if found {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// head returns the stream's head: the first free position, past any gap of fewer than probe
// positions (looked for at most every headProbeEvery per stream and process). Writers pass
// probe 0: they fill a gap they meet.
func (l *lists) head(ctx context.Context, stream string, probe int) (int64, error) {
	hint, _ := l.hint(stream)
	h, err := l.firstFree(ctx, stream, hint.pos.Load())
	if err != nil {
		return 0, err
	}
	raise(&hint.pos, h)
	if now := time.Now().UnixNano(); probe > 0 && now-hint.probed.Load() >= int64(headProbeEvery) {
		hint.probed.Store(now)
	} else {
		probe = 0
	}
	for range 8 {
		if probe == 0 {
			break
		}
		pos := make([]int64, probe)
		for i := range pos {
			pos[i] = h + 1 + int64(i)
		}
		found, err := l.entries(ctx, stream, pos)
		if err != nil {
			return 0, err
		}
		last := -1
		for i, e := range found {
			if e != nil {
				last = i
			}
		}
		if last < 0 {
			break
		}
		// a gap at h: the head is above it (the hint stays below the gap, which a writer fills)
		if h, err = l.firstFree(ctx, stream, pos[last]+1); err != nil {
			return 0, err
		}
	}
	return h, nil
}

// raise sets *v to n if n is greater.
func raise(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// listItem is one entry to append: ref at the head of stream.
type listItem struct {
	stream, ref string
	at          time.Time
	// expect, when set, is where the entry may be already: the backfill's ordinal of the
	// document in the stream, which a replica backfilling at the same time (or an earlier run)
	// gave it too. When that is below the stream's head it is read there first, and not
	// appended again if it is there (the unique key would refuse it, but one refusal at a
	// time).
	expect int64
	hasExp bool

	req   *appendReq
	tries int
	pos   int64 // in the batch being written
}

type appendReq struct {
	left   int
	failed bool
	done   chan error
}

// listWriter appends the entries of concurrent callers, coalesced like mongox.Inserter: while one
// batch is in flight the next callers queue, and the next batch takes them all.
type listWriter struct {
	l       *lists
	mu      sync.Mutex
	queue   []*listItem
	running bool
}

// append appends every item, each at the head of its stream, and returns once all are in
// (or one failed: then some may be in, and name a document that will never be written).
// On ctx's end it returns at once; the items may still be appended.
func (w *listWriter) append(ctx context.Context, items ...listItem) error {
	if len(items) == 0 {
		return nil
	}
	req := &appendReq{left: len(items), done: make(chan error, 1)}
	w.mu.Lock()
	for i := range items {
		it := items[i]
		it.req = req
		w.queue = append(w.queue, &it)
	}
	if !w.running {
		w.running = true
		go w.loop()
	}
	w.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *listWriter) loop() {
	for {
		w.mu.Lock()
		var batch []*listItem
		for len(w.queue) > 0 && len(batch) < maxBatchDocs {
			if it := w.queue[0]; !it.req.failed {
				batch = append(batch, it)
			}
			w.queue = w.queue[1:]
		}
		if len(batch) == 0 {
			w.running = false
			w.queue = nil
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		again := w.flush(batch)
		if len(again) > 0 {
			w.mu.Lock()
			w.queue = append(again, w.queue...)
			w.mu.Unlock()
		}
	}
}

func (it *listItem) landed() {
	if it.req.failed {
		return
	}
	if it.req.left--; it.req.left == 0 {
		it.req.done <- nil
	}
}

func (it *listItem) fail(err error) {
	if it.req.failed {
		return
	}
	it.req.failed = true
	it.req.done <- err
}

// segment is one stream's items of a batch, at consecutive positions.
type segment struct {
	stream string
	items  []*listItem
}

// flush writes a batch and returns the items to try again.
func (w *listWriter) flush(batch []*listItem) (again []*listItem) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	// A stream this process has not met yet starts from its head, not from 0 (one that has
	// entries would lose its first round).
	var cold []string
	seen := map[string]bool{}
	for _, it := range batch {
		if !seen[it.stream] {
			seen[it.stream] = true
			if _, ok := w.l.hint(it.stream); !ok {
				cold = append(cold, it.stream)
			}
		}
	}
	if err := eachLimited(ctx, len(cold), func(ctx context.Context, i int) error {
		_, err := w.l.head(ctx, cold[i], 0)
		return err
	}); err != nil {
		for _, it := range batch {
			it.fail(err)
		}
		return nil
	}
	batch, err := w.found(ctx, batch)
	if err != nil {
		for _, it := range batch {
			it.fail(err)
		}
		return nil
	}
	// One ordered command: the users' segments first, then the shared streams' (most often
	// the ones to lose a position to another replica: then only they are tried again).
	byStream := map[string]*segment{}
	var users, shareds []*segment
	for _, it := range batch {
		s := byStream[it.stream]
		if s == nil {
			s = &segment{stream: it.stream}
			byStream[it.stream] = s
			if shared(it.stream) {
				shareds = append(shareds, s)
			} else {
				users = append(users, s)
			}
		}
		s.items = append(s.items, it)
	}
	if segs := append(users, shareds...); len(segs) > 0 {
		again = w.write(ctx, segs)
	}
	kept := again[:0]
	for _, it := range again {
		if it.req.failed {
			continue
		}
		if it.tries >= appendTries {
			it.fail(errors.New("list entry: no free position after many tries"))
			continue
		}
		kept = append(kept, it)
	}
	return kept
}

// found completes the items expected below their stream's head that are there already, and
// returns the others.
func (w *listWriter) found(ctx context.Context, batch []*listItem) ([]*listItem, error) {
	var probe []*listItem
	for _, it := range batch {
		if hint, _ := w.l.hint(it.stream); it.hasExp && it.expect < hint.pos.Load() {
			probe = append(probe, it)
		}
		it.hasExp = false
	}
	if len(probe) == 0 {
		return batch, nil
	}
	in := make([]bool, len(probe))
	err := eachLimited(ctx, len(probe), func(ctx context.Context, i int) error {
		e, err := w.l.entries(ctx, probe[i].stream, []int64{probe[i].expect})
		in[i] = err == nil && e[0] != nil && e[0].Ref == probe[i].ref
		return err
	})
	if err != nil {
		return batch, err
	}
	for i, it := range probe {
		if in[i] {
			it.landed()
		}
	}
	left := batch[:0]
	for _, it := range batch {
		if i := slices.Index(probe, it); i < 0 || !in[i] {
			left = append(left, it)
		}
	}
	return left, nil
}

// write inserts the segments as one ordered command, each at its stream's hint (every
// position below which exists: so no writer leaves a gap), and resolves what it did.
func (w *listWriter) write(ctx context.Context, segs []*segment) (again []*listItem) {
	var docs []any
	for _, s := range segs {
		hint, _ := w.l.hint(s.stream)
		start := hint.pos.Load()
		for i, it := range s.items {
			it.pos = start + int64(i)
			docs = append(docs, listEntryDoc{ID: entryID(s.stream, it.pos), Key: entryKey(s.stream, it.ref), Ref: it.ref, At: it.at})
		}
	}
	_, err := w.l.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	if err == nil {
		for _, s := range segs {
			w.landed(s, len(s.items))
		}
		return nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		// Ordered: everything before the first error landed, nothing after it was tried.
		at := bwe.WriteErrors[0].Index
		for i := range bwe.WriteErrors {
			at = min(at, bwe.WriteErrors[i].Index)
		}
		dup := false
		for _, we := range bwe.WriteErrors {
			if we.Index == at {
				dup = mongo.IsDuplicateKeyError(we)
				err = we
			}
		}
		for _, s := range segs {
			switch {
			case at >= len(s.items):
				w.landed(s, len(s.items))
			case at >= 0 && dup:
				w.landed(s, at)
				again = append(again, w.readBack(ctx, s, at, true)...)
			case at >= 0:
				w.landed(s, at)
				s.items[at].fail(err)
				again = append(again, s.items[at+1:]...)
			default:
				again = append(again, s.items...)
			}
			at -= len(s.items)
		}
		return again
	}
	// The command's fate is unknown (a lost reply, a cut connection): read what landed.
	for _, s := range segs {
		again = append(again, w.readBack(ctx, s, 0, false)...)
	}
	return again
}

// landed completes the first n items of s, which are in at their positions.
func (w *listWriter) landed(s *segment, n int) {
	for _, it := range s.items[:n] {
		it.landed()
	}
	if n > 0 {
		hint, _ := w.l.hint(s.stream)
		raise(&hint.pos, s.items[n-1].pos+1)
	}
}

// readBack learns which of s's items from the from-th on are in, by reading their positions:
// those holding their own ref are in (the front one first; the rest only if it is). At the
// first position that does not, an entry of another ref means another writer took it (the
// head is searched again, and the rest tried again at the head); none means the item is not
// in, unless the insert was refused there (dup): then its key was, so the ref is in the
// stream already, at another position.
func (w *listWriter) readBack(ctx context.Context, s *segment, from int, dup bool) (again []*listItem) {
	pos := make([]int64, len(s.items)-from)
	for i := range pos {
		pos[i] = s.items[from+i].pos
	}
	got, err := w.l.entries(ctx, s.stream, pos[:1])
	if err == nil && len(pos) > 1 && got[0] != nil && got[0].Ref == s.items[from].ref {
		var rest []*listEntryDoc
		rest, err = w.l.entries(ctx, s.stream, pos[1:])
		got = append(got, rest...)
	}
	if err != nil {
		for _, it := range s.items[from:] {
			it.fail(err)
		}
		return nil
	}
	i := 0
	for i < len(got) && got[i] != nil && got[i].Ref == s.items[from+i].ref {
		i++
	}
	w.landed(&segment{stream: s.stream, items: s.items[from:]}, i)
	rest := s.items[from+i:]
	if len(rest) == 0 {
		return nil
	}
	rest[0].tries++ // the one that did not land where it was sent (those after it were not tried)
	switch {
	case i < len(got) && got[i] != nil: // another writer's
		hint, _ := w.l.hint(s.stream)
		raise(&hint.pos, rest[0].pos+1)
		if _, err := w.l.head(ctx, s.stream, 0); err != nil {
			for _, it := range rest {
				it.fail(err)
			}
			return nil
		}
		return rest
	case dup && i == 0: // refused by its key: in the stream already
		rest[0].landed()
		return rest[1:]
	default:
		return rest
	}
}

// appendEntries writes a new document's entries (its user's stream and the shared one) before
// the document itself.
func (s *Bookings) appendEntries(ctx context.Context, user, all, ref string, at time.Time, what string) error {
	w := s.lists.fg
	if core.IsBackground(ctx) {
		w = s.lists.bg
	}
	if err := w.append(ctx, listItem{stream: user, ref: ref, at: at}, listItem{stream: all, ref: ref, at: at}); err != nil {
		return dbError(err, fmt.Sprintf("could not list the %s", what))
	}
	return nil
}
