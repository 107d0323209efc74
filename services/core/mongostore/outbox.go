package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/outbox"
)

// OutboxCollection is the outbox's front: the emails owed, in the order they were enqueued
// (where every version so far enqueues them).
const OutboxCollection = "outbox"

// outboxRetryPrefix starts the name of every retry bucket: "outbox_retry_<start>_<end>" (Unix
// seconds) holds the emails due again in [start, end).
const outboxRetryPrefix = OutboxCollection + "_retry_"

// maxLastError bounds the stored reason of the last failed attempt, in bytes.
const maxLastError = 1000

// defaultRetryWidth is the span of due times one retry bucket holds: the relay's retries are
// 1 s to 5 min apart (an hour at most, when the notification service asks), so a few dozen
// buckets exist at a time.
const defaultRetryWidth = 10 * time.Second

// retryBucketLinger is how long after its end an empty retry bucket is kept before it is
// dropped. No email is moved into a bucket that has ended by the mover's clock, so this
// covers the clock skew between replicas plus the longest a move's insert may take to land
// (the coalesced insert's 30 s): an email is never inserted into a bucket after it was found
// empty and dropped.
const retryBucketLinger = 2 * time.Minute

// frontPasses bounds the reads of the front one Pending makes when the front holds emails not
// due yet (written by an earlier version, see Pending).
const frontPasses = 3

// Outbox is a outbox.OutboxStore on MongoDB that costs the same whatever the number of emails
// waiting: on the dev database only a read by exact _id, and an empty filter with a limit
// (the first rows in insertion order), do not read the whole collection, and those are the
// only reads it makes.
//
//   - The front (OutboxCollection) holds the emails enqueued, one document each, _id =
//     Email.Key, in the order they came: enqueueing a key twice keeps one (the duplicate-key
//     error is success). Its first rows are the emails waiting longest.
//   - An email that must wait for a retry moves out of the front into a retry bucket, a
//     collection per span of due times (outbox_retry_<start>_<end>), read from its front once
//     its span has begun, and dropped once it has ended and is found empty. A move inserts the
//     email into its bucket first and deletes it from where it was after, so a crash in
//     between leaves it in both places: it is posted twice, under one Idempotency-Key (one
//     ticket), and never lost.
//   - The relay deletes an email once the notification service has it.
//   - Earlier versions' documents are the same, in the front; an earlier version's relay
//     reschedules an email in place (nextAttemptAt in the future): Pending moves such emails
//     to their bucket as it meets them.
//
// Enqueueing a key that has moved to a retry bucket is not seen as a repeat: the email is
// queued a second time, and posted twice under its Idempotency-Key (one ticket), each copy
// counted in the backlog until delivered. The relay moves an email only after an attempt at
// it, and the booking engine owes a payment's confirmation once (Owe, then Nudge once the
// payment is decided), so only a caller that enqueues a key again after an attempt meets this.
//
// The number of emails is kept, not counted (see outbox_count.go).
type Outbox struct {
	db    *mongo.Database
	front *mongo.Collection
	now   func() time.Time
	width time.Duration // of a retry bucket

	mu      sync.Mutex
	queues  map[string]*outboxQueue // per collection: coalesced inserts and deletes
	emptyAt map[string]time.Time    // ended retry buckets found empty: when to look again

	count *outboxCount
}

// outboxQueue is one of the outbox's collections with its coalescers.
type outboxQueue struct {
	coll *mongo.Collection
	ins  *mongox.Inserter // concurrent inserts share one insertMany
	del  *deleter         // concurrent deletes share one bulk delete, taken off the count
}

var _ outbox.OutboxStore = (*Outbox)(nil)

// NewOutbox returns the outbox store on db. Call EnsureIndexes once at start, and Flush at
// the end.
func NewOutbox(db *mongo.Database) *Outbox {
	s := &Outbox{db: db, front: db.Collection(OutboxCollection), now: time.Now, width: defaultRetryWidth,
		queues: map[string]*outboxQueue{}, emptyAt: map[string]time.Time{}}
	s.count = newOutboxCount(db, func() time.Time { return s.now() })
	return s
}

// EnsureIndexes creates the outbox's indexes: there are none, every read is by _id or of a
// collection's first rows. (Earlier versions created next_attempt and created on the front
// for their sorted queries; they are left as they are.)
func (s *Outbox) EnsureIndexes(context.Context) error { return nil }

// Flush writes this process's share of the count now (call it once the relay has stopped).
func (s *Outbox) Flush(ctx context.Context) error { return s.count.flush(ctx) }

type outboxDoc struct {
	Key           string    `bson:"_id"`
	Recipients    []string  `bson:"recipients"`
	Subject       string    `bson:"subject"`
	Content       string    `bson:"content"`
	Kind          string    `bson:"kind"`
	Ref           string    `bson:"ref"`
	TraceParent   string    `bson:"traceParent,omitempty"`
	CreatedAt     time.Time `bson:"createdAt"`
	Attempts      int       `bson:"attempts"`
	NextAttemptAt time.Time `bson:"nextAttemptAt"`
	LastError     string    `bson:"lastError,omitempty"`
}

func (d *outboxDoc) entry(queue string) core.OutboxEntry {
	return core.OutboxEntry{
		Email: core.Email{Key: d.Key, Recipients: d.Recipients, Subject: d.Subject, Content: d.Content,
			Kind: d.Kind, Ref: d.Ref, TraceParent: d.TraceParent},
		CreatedAt: d.CreatedAt.UTC(), Attempts: d.Attempts, NextAttemptAt: d.NextAttemptAt.UTC(), LastError: d.LastError,
		Queue: queue,
	}
}

func docOf(e core.OutboxEntry) *outboxDoc {
	return &outboxDoc{Key: e.Key, Recipients: e.Recipients, Subject: e.Subject, Content: e.Content, Kind: e.Kind,
		Ref: e.Ref, TraceParent: e.TraceParent, CreatedAt: e.CreatedAt, Attempts: e.Attempts,
		NextAttemptAt: e.NextAttemptAt, LastError: e.LastError}
}

// queue returns the named collection of the outbox with its coalescers ("" is the front).
func (s *Outbox) queue(name string) *outboxQueue {
	if name == "" {
		name = OutboxCollection
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[name]
	if q == nil {
		coll := s.db.Collection(name)
		q = &outboxQueue{coll: coll, ins: mongox.NewInserter(coll), del: &deleter{coll: coll, deleted: func(n int64) { s.count.add(-n) }}}
		s.queues[name] = q
	}
	return q
}

// retryBucket is a retry bucket's name and span.
type retryBucket struct {
	name       string
	start, end time.Time
}

// retryBucketName names the bucket of the emails due at t.
func (s *Outbox) retryBucketName(t time.Time) string {
	start := t.UTC().Truncate(s.width)
	return fmt.Sprintf("%s%d_%d", outboxRetryPrefix, start.Unix(), start.Add(s.width).Unix())
}

func parseRetryBucket(name string) (retryBucket, bool) {
	rest, ok := strings.CutPrefix(name, outboxRetryPrefix)
	if !ok {
		return retryBucket{}, false
	}
	a, b, ok := strings.Cut(rest, "_")
	if !ok {
		return retryBucket{}, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end <= start {
		return retryBucket{}, false
	}
	return retryBucket{name: name, start: time.Unix(start, 0).UTC(), end: time.Unix(end, 0).UTC()}, true
}

// retryBuckets lists the retry buckets, earliest first (the database's list of collection
// names: no document is read).
func (s *Outbox) retryBuckets(ctx context.Context) ([]retryBucket, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, dbError(err, "list the outbox's retry buckets")
	}
	var out []retryBucket
	listed := map[string]bool{}
	for _, n := range names {
		if b, ok := parseRetryBucket(n); ok {
			out = append(out, b)
			listed[n] = true
		}
	}
	slices.SortFunc(out, func(x, y retryBucket) int { return x.start.Compare(y.start) })
	// Forget the coalescers of buckets dropped (by any process); one being created meanwhile
	// gets new ones.
	s.mu.Lock()
	for name := range s.queues {
		if name != OutboxCollection && !listed[name] {
			delete(s.queues, name)
		}
	}
	s.mu.Unlock()
	return out, nil
}

// Enqueue inserts e into the front, due now. It is durable when it returns nil; a key
// already in the front is success (the first email is kept).
func (s *Outbox) Enqueue(ctx context.Context, e core.Email) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	dup, err := s.queue("").ins.Insert(ctx, &outboxDoc{Key: e.Key, Recipients: e.Recipients, Subject: e.Subject,
		Content: e.Content, Kind: e.Kind, Ref: e.Ref, TraceParent: e.TraceParent,
		CreatedAt: now, NextAttemptAt: now})
	if err != nil {
		return dbError(err, "store the email in the outbox")
	}
	if !dup[0] { // a duplicate key is the same email enqueued again: one is kept
		s.count.add(1)
	}
	return nil
}

// Pending lists up to limit emails due at now, the longest due first: from the front of
// each retry bucket whose span has begun (earliest first), then from the front of the
// outbox. Each is read with an empty filter and a limit, so the cost is the same whatever
// the number of emails waiting. (In the bucket whose span is under way, emails not due yet
// are skipped; those behind them wait at most the bucket's span.)
//
// An email in the front that is not due (an earlier version's relay rescheduled it there)
// is moved to its retry bucket, so it no longer stands in the way of those behind it.
func (s *Outbox) Pending(ctx context.Context, now time.Time, limit int) ([]core.OutboxEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	now = now.UTC()
	buckets, err := s.retryBuckets(ctx)
	if err != nil {
		return nil, err
	}
	var due []core.OutboxEntry
	taken := map[string]bool{} // keys listed: one copy of an email is enough
	add := func(e core.OutboxEntry) {
		if !taken[e.Key] {
			taken[e.Key] = true
			due = append(due, e)
		}
	}
	for _, b := range buckets {
		if len(due) >= limit || b.start.After(now) {
			break
		}
		if s.lookLater(b.name) {
			continue
		}
		docs, err := findAll(ctx, s.queue(b.name).coll, bson.D{}, options.Find().SetLimit(int64(limit-len(due))),
			"list due emails", func(d *outboxDoc) core.OutboxEntry { return d.entry(b.name) })
		if err != nil {
			return nil, err
		}
		if len(docs) == 0 {
			s.emptyBucket(ctx, b, now)
			continue
		}
		for _, e := range docs {
			if !e.NextAttemptAt.After(now) {
				add(e)
			}
		}
	}
	fromFront := 0 // due emails listed from the front: its first rows, read again by a next pass
	for pass := 0; len(due) < limit && pass < frontPasses; pass++ {
		read := fromFront + limit - len(due)
		docs, err := findAll(ctx, s.front, bson.D{}, options.Find().SetLimit(int64(read)), "list due emails",
			func(d *outboxDoc) core.OutboxEntry { return d.entry("") })
		if err != nil {
			return nil, err
		}
		var later []core.OutboxEntry
		for _, e := range docs {
			switch {
			case taken[e.Key]: // listed already (by a previous pass, or its copy in a bucket)
			case e.NextAttemptAt.After(now):
				later = append(later, e)
			case !taken[e.Key]:
				add(e)
				fromFront++
			}
		}
		if len(docs) < read || len(later) == 0 {
			break
		}
		if err := s.moveAll(ctx, later); err != nil {
			break // they stay in the front, due later: tried again next time
		}
	}
	slices.SortStableFunc(due, func(a, b core.OutboxEntry) int { return a.NextAttemptAt.Compare(b.NextAttemptAt) })
	return due, nil
}

// lookLater reports whether name is an ended retry bucket found empty lately, not to be read
// again before it may be dropped.
func (s *Outbox) lookLater(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.emptyAt[name]
	return ok && s.now().Before(at)
}

// emptyBucket handles a retry bucket whose span has begun and that was found empty: once it
// has ended retryBucketLinger ago (by the earlier of the caller's and this process's clock)
// it is dropped; before that, if it has ended, it is not read again until then.
func (s *Outbox) emptyBucket(ctx context.Context, b retryBucket, now time.Time) {
	clock := s.now().UTC()
	if now.Before(clock) {
		clock = now
	}
	if !b.end.Add(retryBucketLinger).After(clock) {
		if err := s.db.Collection(b.name).Drop(ctx); err == nil {
			s.mu.Lock()
			delete(s.queues, b.name)
			delete(s.emptyAt, b.name)
			s.mu.Unlock()
		}
		return
	}
	if !b.end.After(clock) {
		s.mu.Lock()
		s.emptyAt[b.name] = b.end.Add(retryBucketLinger)
		s.mu.Unlock()
	}
}

// Reschedule records a failed or postponed attempt of e: it moves e to the retry bucket of
// next (or updates it in place when it is there already). An email no longer where Pending
// found it (another relay delivered or moved it) is moved all the same: at worst it is posted
// again under its Idempotency-Key, never lost.
func (s *Outbox) Reschedule(ctx context.Context, e core.OutboxEntry, attempts int, next time.Time, lastError string) error {
	if len(lastError) > maxLastError {
		lastError = lastError[:maxLastError]
	}
	next = next.UTC().Truncate(time.Millisecond)
	e.Attempts, e.NextAttemptAt, e.LastError = attempts, next, lastError
	target := s.retryBucketName(later(next, s.now()))
	if target == e.Queue {
		_, err := s.queue(target).coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.Key}}, bson.M{"$set": bson.M{
			"attempts": attempts, "nextAttemptAt": next, "lastError": lastError}})
		if err != nil {
			return dbError(err, "reschedule an email")
		}
		return nil
	}
	return s.moveAll(ctx, []core.OutboxEntry{e})
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// moveAll moves each email from its queue into the retry bucket of its NextAttemptAt (or of
// now, if that has passed): inserted there first, then deleted from where it was. An email
// already in its bucket (an earlier move cut short, or another relay's) is updated there.
func (s *Outbox) moveAll(ctx context.Context, es []core.OutboxEntry) error {
	byTarget := map[string][]core.OutboxEntry{}
	for _, e := range es {
		t := s.retryBucketName(later(e.NextAttemptAt, s.now()))
		byTarget[t] = append(byTarget[t], e)
	}
	var (
		mu    sync.Mutex
		moved = map[string][]any{} // source queue -> keys now in their bucket
		first error
		wg    sync.WaitGroup
	)
	for target, group := range byTarget {
		wg.Go(func() {
			docs := make([]any, len(group))
			for i := range group {
				docs[i] = docOf(group[i])
			}
			q := s.queue(target)
			s.mu.Lock()
			delete(s.emptyAt, target)
			s.mu.Unlock()
			dup, err := q.ins.Insert(ctx, docs...)
			if err == nil {
				s.count.add(int64(len(docs) - len(dup)))
				for i := range dup {
					e := group[i]
					_, err = q.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.Key}}, bson.M{"$set": bson.M{
						"attempts": e.Attempts, "nextAttemptAt": e.NextAttemptAt, "lastError": e.LastError}})
					if err != nil {
						break
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			for _, e := range group {
				moved[e.Queue] = append(moved[e.Queue], e.Key)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return dbError(first, "reschedule an email")
	}
	for src, keys := range moved {
		if err := s.queue(src).del.delete(ctx, keys...); err != nil {
			// In its bucket and where it was: posted twice at worst, under one Idempotency-Key.
			return dbError(err, "reschedule an email")
		}
	}
	return nil
}

// Delete removes e from where Pending found it; one already gone is not an error.
func (s *Outbox) Delete(ctx context.Context, e core.OutboxEntry) error {
	if err := s.queue(e.Queue).del.delete(ctx, e.Key); err != nil {
		return dbError(err, "delete an email from the outbox")
	}
	return nil
}

// Backlog returns the number of emails in the outbox and when the oldest was enqueued, at a
// cost that does not grow with their number. Oldest is the earliest of the first email of the
// front and of each retry bucket (exact for the front, which is in enqueueing order; a bucket
// is in the order its emails moved in). Pending is the kept count (see outbox_count.go): an
// estimate, zero when every queue is empty, at least the number of queues that are not.
func (s *Outbox) Backlog(ctx context.Context) (core.OutboxBacklog, error) {
	var b core.OutboxBacklog
	// The front first, then the buckets: an email moving out of the front is in its bucket
	// before it leaves the front, so it is seen once at least.
	nonEmpty := int64(0)
	oldest := func(coll *mongo.Collection) error {
		var d outboxDoc
		err := coll.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "createdAt", Value: 1}})).Decode(&d)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			return nil
		case err != nil:
			return dbError(err, "find the oldest email in the outbox")
		}
		nonEmpty++
		if b.Oldest.IsZero() || d.CreatedAt.Before(b.Oldest) {
			b.Oldest = d.CreatedAt.UTC()
		}
		return nil
	}
	if err := oldest(s.front); err != nil {
		return b, err
	}
	buckets, err := s.retryBuckets(ctx)
	if err != nil {
		return b, err
	}
	for _, rb := range buckets {
		if err := oldest(s.db.Collection(rb.name)); err != nil {
			return b, err
		}
	}
	sum, head, err := s.count.read(ctx)
	if err != nil {
		return b, err
	}
	if nonEmpty == 0 {
		s.count.settle(ctx, sum, head)
		return b, nil
	}
	s.count.notEmpty()
	b.Pending = max(sum+s.count.local(), nonEmpty)
	return b, nil
}

// Find returns the copies of the email keyed key, wherever they are (the front, retry
// buckets): reads by exact _id, one per queue. For tests and investigations.
func (s *Outbox) Find(ctx context.Context, key string) ([]core.OutboxEntry, error) {
	queues, err := s.Queues(ctx)
	if err != nil {
		return nil, err
	}
	var out []core.OutboxEntry
	for _, q := range queues {
		var d outboxDoc
		found, err := outboxFindByID(ctx, s.db.Collection(q), key, &d)
		if err != nil {
			return nil, err
		}
		if found {
			queue := q
			if q == OutboxCollection {
				queue = ""
			}
			out = append(out, d.entry(queue))
		}
	}
	return out, nil
}

// Queues names the outbox's collections that hold emails: the front, then the retry buckets,
// earliest first.
func (s *Outbox) Queues(ctx context.Context) ([]string, error) {
	buckets, err := s.retryBuckets(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{OutboxCollection}
	for _, b := range buckets {
		out = append(out, b.name)
	}
	return out, nil
}
