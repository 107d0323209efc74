package mongostore

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// The list indexes: what GET / reads instead of a sorted, filtered find of the tickets (which
// the dev database answers by reading and sorting every ticket). Each index is a collection
// of entries with gap-free sequence numbers as _id, written once and never changed, read
// newest first by exact _id (see list.go):
//
//   - ticket_list: every ticket, appended when it is created, before the ticket itself (so a
//     stored ticket is always listed; an entry whose ticket insert failed is skipped).
//   - ticket_list_success, ticket_list_failed: a ticket generation's outcome, appended before
//     the outcome is inserted (Decide).
//   - ticket_list_requeued: a re-queued ticket generation, appended before the re-queue's
//     decision (Requeue). A PENDING list reads it beside ticket_list (generation 0).
//
// An entry says that its ticket may have entered the status; readers resolve the ticket and
// skip the entry when the ticket is not (or no longer) in that status and generation. Each
// entry also has a unique key (the ticket, or its generation), so that a repeated append (two
// replicas back-filling at once, a retried decision) lists it once.
//
// New entries take the numbers 0, 1, 2, ... (upward); the back-fill of tickets stored before
// the indexes existed takes -1, -2, ... (downward), newest first, so that the entries read
// from the head down to 0 and on through -1, -2, ... are newest first throughout. Both runs
// stay gap-free: a writer inserts a run at the first free number (found by gallop and
// bisection from a remembered hint, as the tally does) with an ordered insert, which stops
// at the first number or key taken.

// List index collections.
const (
	ListCollection         = "ticket_list"
	ListRequeuedCollection = "ticket_list_requeued"
	ListSuccessCollection  = "ticket_list_success"
	ListFailedCollection   = "ticket_list_failed"
)

// The list indexes, by their place in Store.lists.
const (
	listAll = iota
	listRequeued
	listSuccess
	listFailed
	numLists
)

var listCollections = [numLists]string{ListCollection, ListRequeuedCollection, ListSuccessCollection, ListFailedCollection}

// alreadyListed marks an entry whose key was listed before (no number taken).
const alreadyListed = math.MinInt64

// maxAppendConflicts bounds the retries of one append when other writers take its numbers.
const maxAppendConflicts = 64

// maxOrderedInsert bounds the documents of one ordered insert. The dev database (FerretDB
// 1.24) inserts a longer list in chunks of 100 and goes on with the next chunk after a
// failure in one, which would leave a gap; up to 100 it stops at the first failure.
const maxOrderedInsert = 100

// listEntry is one entry of a list index: ticket Ticket, in generation Gen, at At.
type listEntry struct {
	ID     string          `bson:"_id"` // seqID(Seq)
	Seq    int64           `bson:"seq"`
	Key    string          `bson:"key"` // unique in the index
	Ticket notification.ID `bson:"ticket"`
	Gen    int             `bson:"gen"`
	At     time.Time       `bson:"at"`
}

// listIndex is one list index and what this process knows of its ends.
type listIndex struct {
	coll *mongo.Collection
	top  atomic.Int64 // a lower bound of the upward run's length
	low  atomic.Int64 // a lower bound of the downward run's length
	ins  *appender
}

func newListIndex(coll *mongo.Collection) *listIndex {
	x := &listIndex{coll: coll}
	x.ins = &appender{x: x}
	return x
}

// head is the first free upward number: the entries read newest first start below it.
func (x *listIndex) head(ctx context.Context) (int64, error) {
	return runEnd(ctx, x.coll, &x.top, upward)
}

// bottom is the first free downward number (-1 when nothing was back-filled).
func (x *listIndex) bottom(ctx context.Context) (int64, error) {
	k, err := runEnd(ctx, x.coll, &x.low, downward)
	return downward(k), err
}

// insertRun appends entries in their order, upward (or downward), and returns the number
// each took, or alreadyListed for one whose key was listed before. Its ordered insert starts
// at the first free number; when it stops at a duplicate, the number is read: taken by another
// writer, the rest go on from the next free number; free (or holding the same key), it was
// the key that was taken, and the rest go on at that number.
func (x *listIndex) insertRun(ctx context.Context, down bool, entries []listEntry) ([]int64, error) {
	hint, slot := &x.top, upward
	if down {
		hint, slot = &x.low, downward
	}
	nums := make([]int64, len(entries))
	todo := entries
	done := 0 // entries[:done] have their number
	// The first attempt goes at the number this process knows to be free, without a read: if
	// another writer took it, the duplicate says so and the end is searched.
	k, search := hint.Load(), false
	for conflicts := 0; len(todo) > 0; {
		if search {
			var err error
			if k, err = runEnd(ctx, x.coll, hint, slot); err != nil {
				return nums, err
			}
		}
		run := todo[:min(len(todo), maxOrderedInsert)]
		docs := make([]any, len(run))
		for j := range run {
			e := run[j]
			e.Seq = slot(k + int64(j))
			e.ID = seqID(e.Seq)
			docs[j] = e
		}
		_, err := x.coll.InsertMany(ctx, docs) // ordered: stops at the first failure
		if err == nil {
			for j := range run {
				nums[done+j] = slot(k + int64(j))
			}
			raise(hint, k+int64(len(run)))
			done, todo, k, search = done+len(run), todo[len(run):], k+int64(len(run)), false
			continue
		}
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 ||
			!mongo.IsDuplicateKeyError(bwe.WriteErrors[0]) {
			return nums, err
		}
		j := bwe.WriteErrors[0].Index // the entries before it are in
		if j < 0 || j >= len(run) {
			return nums, err
		}
		for i := range j {
			nums[done+i] = slot(k + int64(i))
		}
		raise(hint, k+int64(j))
		var there listEntry
		found, err := findByID(ctx, x.coll, seqID(slot(k+int64(j))), &there)
		if err != nil {
			return nums, err
		}
		switch {
		case !found: // the number is free: the key is listed already; go on at the number
			nums[done+j] = alreadyListed
			done, todo, k, search = done+j+1, todo[j+1:], k+int64(j), false
		case there.Key == todo[j].Key: // another writer listed the same key there
			nums[done+j] = alreadyListed
			raise(hint, k+int64(j)+1)
			done, todo, search = done+j+1, todo[j+1:], true
		default: // another writer took the number: go on from the next free one
			if conflicts++; conflicts > maxAppendConflicts {
				return nums, errors.New("list index: too many concurrent appends")
			}
			raise(hint, k+int64(j)+1)
			done, todo, search = done+j, todo[j:], true
		}
	}
	return nums, nil
}

// read reads the entries of the given numbers (nil where there is none), at most
// resolveParallel at a time.
func (x *listIndex) read(ctx context.Context, nums []int64) ([]*listEntry, error) {
	out := make([]*listEntry, len(nums))
	err := pointReads(len(nums), func(i int) error {
		var e listEntry
		found, err := findByID(ctx, x.coll, seqID(nums[i]), &e)
		if found {
			out[i] = &e
		}
		return err
	})
	return out, err
}

// appender coalesces the upward appends of concurrent requests into one ordered insert, as
// mongox.Inserter does for plain inserts: at low load an append goes out alone,
// under load the requests that queued meanwhile go out together, taking consecutive numbers.
type appender struct {
	x       *listIndex
	mu      sync.Mutex
	queue   []*appendReq
	running bool
}

type appendReq struct {
	entries []listEntry
	nums    []int64
	done    chan error
}

// append lists entries upward and returns the number each took (alreadyListed when its key was
// listed before). On ctx's end it returns at once; the entries may still be listed.
func (a *appender) append(ctx context.Context, entries ...listEntry) ([]int64, error) {
	req := &appendReq{entries: entries, done: make(chan error, 1)}
	a.mu.Lock()
	a.queue = append(a.queue, req)
	if !a.running {
		a.running = true
		go a.loop()
	}
	a.mu.Unlock()
	select {
	case err := <-req.done:
		return req.nums, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *appender) loop() {
	for {
		a.mu.Lock()
		n, size := 0, 0
		for n < len(a.queue) && (n == 0 || size+len(a.queue[n].entries) <= mongox.MaxBatchDocs) {
			size += len(a.queue[n].entries)
			n++
		}
		batch := a.queue[:n]
		a.queue = a.queue[n:]
		if len(batch) == 0 {
			a.running = false
			a.queue = nil
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		a.flush(batch)
	}
}

func (a *appender) flush(batch []*appendReq) {
	var all []listEntry
	for _, r := range batch {
		all = append(all, r.entries...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mongox.BatchTimeout)
	nums, err := a.x.insertRun(ctx, false, all)
	cancel()
	for _, r := range batch {
		r.nums, nums = nums[:len(r.entries)], nums[len(r.entries):]
		r.done <- err
	}
}

// ensureListIndexes creates the unique index on every list index's key.
func (s *Store) ensureListIndexes(ctx context.Context) error {
	for _, x := range s.lists {
		if err := mongox.EnsureIndexes(ctx, x.coll, mongo.IndexModel{Keys: bson.D{{Key: "key", Value: 1}},
			Options: options.Index().SetName("key").SetUnique(true)}); err != nil {
			return err
		}
	}
	return nil
}
