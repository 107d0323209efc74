package mongostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
)

// The outbox's count (the cineflow_core_outbox_pending gauge) is kept, not counted: on the dev database
// every way of counting a collection reads all of it (count decodes every document: 3.8 s at
// 100,000 e-mails; collStats and $collStats walk every page: 0.2 s), and its cost would grow
// with the backlog an outage piles up.
//
//   - Each insert and delete of an e-mail, in any of the outbox's collections, adds +1 or -1 to
//     this process's pending delta (a duplicate insert or a delete of nothing adds nothing, so
//     two relays racing on one e-mail are counted right).
//   - Within countFlushDelay the delta is appended as one entry of a gap-free sequence of
//     entries (_id "0", "1", ...: the only reads are by exact _id); a writer takes the first
//     free number, and one that meets a duplicate moves on. An entry whose reply was lost is
//     retried under its token, so it is appended once.
//   - Snapshots (a gap-free sequence too) hold the sum of the entries before their Upto. A
//     reader takes the latest snapshot and adds the entries after it; when they are many it
//     inserts the next snapshot (two readers racing insert one) and deletes what the previous
//     snapshot covered, so both collections stay small.
//
// So a read costs a few point reads whatever the number of e-mails. The figure is an
// estimate: a process that dies holding a delta (at most countFlushDelay of its inserts and
// deletes), and e-mails that an earlier version enqueued or delivered (during a rolling
// upgrade), shift it. It is settled back to zero when the outbox is seen empty twice, at
// least countSettleAfter apart, with no entry appended in between (the correction is
// inserted at exactly the head it was computed for: a racing append makes it lose).

// Collections of the outbox's count.
const (
	OutboxCountCollection     = "outbox_count"
	OutboxSnapshotsCollection = "outbox_count_snapshots"
)

const (
	// countFlushDelay is how long a delta waits for more before it is appended.
	countFlushDelay = 200 * time.Millisecond
	// countRetryDelay is how long a failed append waits before it is tried again.
	countRetryDelay = time.Second
	// countFoldAt is how many entries after the latest snapshot make a reader fold them.
	countFoldAt = 64
	// countReadMax bounds the entries one read adds.
	countReadMax = 1000
	// countSettleAfter is the least time between the two sightings of an empty outbox that
	// settle the count back to zero.
	countSettleAfter = 3 * time.Second
)

type countEntry struct {
	ID    string    `bson:"_id"` // countSeqID(Seq)
	Seq   int64     `bson:"seq"`
	Delta int64     `bson:"delta"`
	Token string    `bson:"token"`
	At    time.Time `bson:"at"`
}

type countSnapshot struct {
	ID   string    `bson:"_id"` // countSeqID(Seq)
	Seq  int64     `bson:"seq"`
	Upto int64     `bson:"upto"` // the sum of entries 0..Upto-1
	Sum  int64     `bson:"sum"`
	At   time.Time `bson:"at"`
}

// Sequence numbers are stored as strings in _id: the dev database serves a filter on _id from
// an index only for a string or an ObjectID.
func countSeqID(n int64) string { return strconv.FormatInt(n, 10) }

// outboxCount is one process's view of the count (see above).
type outboxCount struct {
	entries, snaps *mongo.Collection
	now            func() time.Time
	delay          time.Duration

	mu       sync.Mutex
	pending  int64       // not appended yet
	inflight *countEntry // being appended: retried under its token until it is in
	tried    int64       // the number inflight was last tried at (-1: none)
	timer    *time.Timer // a flush is scheduled
	flushMu  sync.Mutex  // one flush at a time

	entryHint, snapHint atomic.Int64 // lower bounds of the heads

	settleMu sync.Mutex
	empty    struct {
		seen      bool
		head, sum int64
		at        time.Time
	}
}

func newOutboxCount(db *mongo.Database, now func() time.Time) *outboxCount {
	return &outboxCount{entries: db.Collection(OutboxCountCollection), snaps: db.Collection(OutboxSnapshotsCollection),
		now: now, delay: countFlushDelay, tried: -1}
}

// add adds d to the pending delta and makes sure a flush follows.
func (c *outboxCount) add(d int64) {
	if d == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending += d
	if c.timer == nil {
		c.timer = time.AfterFunc(c.delay, c.flushLater)
	}
}

func (c *outboxCount) flushLater() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.flush(ctx) // a failure schedules another try
}

// local is what this process holds that is not appended yet.
func (c *outboxCount) local() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.pending
	if c.inflight != nil {
		n += c.inflight.Delta
	}
	return n
}

// flush appends the pending delta now.
func (c *outboxCount) flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.inflight == nil && c.pending != 0 {
		c.inflight = &countEntry{Delta: c.pending, Token: countToken()}
		c.pending, c.tried = 0, -1
	}
	e, tried := c.inflight, c.tried
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	n, upto, err := c.append(ctx, e, tried)
	if err == nil && n-upto >= 2*countFoldAt {
		// Many entries since the latest snapshot (the figure is not read, or seldom): fold.
		_, _, _ = c.read(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.inflight = nil
	} else {
		c.tried = n
	}
	if errors.Is(err, mongo.ErrClientDisconnected) {
		return err // the process is closing: what is left is lost, as in a crash
	}
	if (err != nil || c.pending != 0) && c.timer == nil {
		delay := c.delay
		if err != nil {
			delay = countRetryDelay
		}
		c.timer = time.AfterFunc(delay, c.flushLater)
	}
	return err
}

// append inserts e at the head of the entries; tried is the number an earlier try of e may
// have landed at (-1: none). It returns the number it last tried, and the Upto of the latest
// snapshot.
func (c *outboxCount) append(ctx context.Context, e *countEntry, tried int64) (int64, int64, error) {
	if tried >= 0 {
		var got countEntry
		found, err := outboxFindByID(ctx, c.entries, countSeqID(tried), &got)
		if err != nil {
			return tried, 0, err
		}
		if found && got.Token == e.Token {
			return tried, 0, nil // the earlier try landed
		}
	}
	snap, err := c.latestSnapshot(ctx)
	if err != nil {
		return tried, 0, err
	}
	raiseHint(&c.entryHint, snap.Upto) // entries below it may be deleted: never write there
	for {
		n, err := countHead(ctx, c.entries, &c.entryHint)
		if err != nil {
			return tried, snap.Upto, err
		}
		e.ID, e.Seq, e.At = countSeqID(n), n, c.now().UTC()
		_, err = c.entries.InsertOne(ctx, e)
		if err == nil {
			raiseHint(&c.entryHint, n+1)
			return n, snap.Upto, nil
		}
		if !mongox.IsDuplicateKey(err) {
			return n, snap.Upto, err // it may have landed: the next try looks at n first
		}
		var got countEntry
		found, ferr := outboxFindByID(ctx, c.entries, countSeqID(n), &got)
		if ferr != nil {
			return n, snap.Upto, ferr
		}
		if found && got.Token == e.Token {
			return n, snap.Upto, nil
		}
		raiseHint(&c.entryHint, n+1) // another process took n
	}
}

// read returns the count appended so far, and the head of the entries it was read at,
// folding the entries into a new snapshot when they are many.
func (c *outboxCount) read(ctx context.Context) (int64, int64, error) {
	for {
		snap, err := c.latestSnapshot(ctx)
		if err != nil {
			return 0, 0, err
		}
		sum, n := snap.Sum, snap.Upto
		for n-snap.Upto < countReadMax {
			var e countEntry
			found, err := outboxFindByID(ctx, c.entries, countSeqID(n), &e)
			if err != nil {
				return 0, 0, err
			}
			if !found {
				break
			}
			sum += e.Delta
			n++
		}
		raiseHint(&c.entryHint, n)
		if n-snap.Upto < countFoldAt {
			return sum, n, nil
		}
		next := countSnapshot{ID: countSeqID(snap.Seq + 1), Seq: snap.Seq + 1, Upto: n, Sum: sum, At: c.now().UTC()}
		_, err = c.snaps.InsertOne(ctx, next)
		switch {
		case err == nil:
			raiseHint(&c.snapHint, next.Seq+1)
			c.prune(ctx, snap)
		case !mongox.IsDuplicateKey(err):
			return 0, 0, err
		}
		if n-snap.Upto < countReadMax {
			return sum, n, nil
		}
		// more entries than one read adds: carry on from the new snapshot
	}
}

// prune deletes what prev, the snapshot before the one just inserted, covers: the snapshots
// before it and the entries before its Upto. Snapshots go oldest first, one at a time,
// stopping at the first failure, so that those left are a gap-free run that a process
// starting afresh finds from the first of them. Errors are left for the next fold.
func (c *outboxCount) prune(ctx context.Context, prev countSnapshot) {
	var first countSnapshot
	if err := c.snaps.FindOne(ctx, bson.D{}).Decode(&first); err == nil {
		for k := first.Seq; k < prev.Seq; k++ {
			if _, err := c.snaps.DeleteOne(ctx, bson.D{{Key: "_id", Value: countSeqID(k)}}); err != nil {
				break
			}
		}
	}
	var firstEntry countEntry
	if err := c.entries.FindOne(ctx, bson.D{}).Decode(&firstEntry); err != nil {
		return
	}
	ids := make([]any, 0, countFoldAt)
	for k := firstEntry.Seq; k < prev.Upto && len(ids) < countReadMax; k++ {
		ids = append(ids, countSeqID(k))
	}
	_, _ = deleteByIDs(ctx, c.entries, ids)
}

// latestSnapshot returns the newest snapshot, or a zero one (Seq -1) when there is none.
func (c *outboxCount) latestSnapshot(ctx context.Context) (countSnapshot, error) {
	// The snapshots left by pruning are a gap-free run from the first of them (the first row
	// of the collection): start from it, should pruning have passed this process's hint.
	var first countSnapshot
	err := c.snaps.FindOne(ctx, bson.D{}).Decode(&first)
	switch {
	case err == nil:
		raiseHint(&c.snapHint, first.Seq)
	case !errors.Is(err, mongo.ErrNoDocuments):
		return countSnapshot{Seq: -1}, dbError(err, "read the outbox count")
	}
	n, err := countHead(ctx, c.snaps, &c.snapHint)
	if err != nil || n == 0 {
		return countSnapshot{Seq: -1}, err
	}
	var snap countSnapshot
	found, err := outboxFindByID(ctx, c.snaps, countSeqID(n-1), &snap)
	if err != nil || !found { // not found: pruned under our feet, cannot happen in practice
		return countSnapshot{Seq: -1}, err
	}
	return snap, nil
}

// settle is told that the outbox was seen empty just before the count read sum at head: it
// inserts a correction of -sum at exactly head if the previous sighting, countSettleAfter
// ago at least, saw the same (see above).
func (c *outboxCount) settle(ctx context.Context, sum, head int64) {
	c.settleMu.Lock()
	defer c.settleMu.Unlock()
	now := c.now()
	switch {
	case sum == 0 || c.local() != 0:
		c.empty.seen = false
		return
	case !c.empty.seen || c.empty.head != head || c.empty.sum != sum:
		c.empty.seen, c.empty.head, c.empty.sum, c.empty.at = true, head, sum, now
		return
	case now.Sub(c.empty.at) < countSettleAfter:
		return
	}
	c.empty.seen = false
	fix := countEntry{ID: countSeqID(head), Seq: head, Delta: -sum, Token: "settle-" + countToken(), At: now.UTC()}
	if _, err := c.entries.InsertOne(ctx, fix); err == nil {
		raiseHint(&c.entryHint, head+1)
	}
}

// notEmpty is told that the outbox was seen holding emails.
func (c *outboxCount) notEmpty() {
	c.settleMu.Lock()
	c.empty.seen = false
	c.settleMu.Unlock()
}

// countHead returns the first free number of a gap-free sequence of _ids in coll, starting
// from hint, a number known to be at most the head: gallop up while numbers exist, then
// bisect.
func countHead(ctx context.Context, coll *mongo.Collection, hint *atomic.Int64) (int64, error) {
	lo := hint.Load() // every number from the start of the run below lo exists
	found, err := outboxIDExists(ctx, coll, countSeqID(lo))
	if err != nil || !found {
		return lo, err
	}
	lo++
	step := int64(1)
	hi := lo // first number not yet known to exist
	for {
		found, err := outboxIDExists(ctx, coll, countSeqID(hi))
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
	for lo < hi { // numbers below lo exist, hi does not: find the first missing one
		mid := lo + (hi-lo)/2
		found, err := outboxIDExists(ctx, coll, countSeqID(mid))
		if err != nil {
			return 0, err
		}
		if found {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	raiseHint(hint, lo)
	return lo, nil
}

// outboxIDExists reports whether coll has a document of _id id (a read by exact _id).
func outboxIDExists(ctx context.Context, coll *mongo.Collection, id string) (bool, error) {
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	}
	return false, dbError(err, "read the outbox count")
}

// outboxFindByID decodes coll's document of _id id into dst; found is false when there is none.
func outboxFindByID(ctx context.Context, coll *mongo.Collection, id string, dst any) (bool, error) {
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(dst)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	}
	return false, dbError(err, "read the outbox")
}

// raiseHint sets *v to n if n is greater.
func raiseHint(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

func countToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
