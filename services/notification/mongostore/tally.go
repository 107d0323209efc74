package mongostore

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// The tally keeps the delivery figures (tickets delivered, failed, re-queued) without counting
// tickets or outcomes, with inserts only:
//
//   - Each change is an entry with a sequence number as _id and a unique key naming its cause
//     (a batch's outcomes, a re-queue): the first insert of a key counts, a repeat (a sweep that
//     took a batch over, a retried re-queue) is refused by the unique index. Entries form a
//     gap-free sequence 0, 1, 2, ...: a writer inserts at the first free number and moves on
//     when another writer took it.
//   - A snapshot k (also a gap-free sequence) holds the sum of the entries before its Upto. A
//     reader takes the latest snapshot and adds the entries after it; when they are many it
//     inserts the next snapshot (two readers racing insert one).
//
// So a read costs a few point reads by _id whatever the number of tickets; the heads of both
// sequences are found from a remembered lower bound by galloping and bisection.

// tallyFoldAt is how many entries after the latest snapshot make a reader fold them.
const tallyFoldAt = 64

// tallyReadMax bounds the entries one fold reads.
const tallyReadMax = 1000

// Sequence numbers are stored as strings in _id: the dev database serves a filter on _id from
// an index only for a string or an ObjectID.

func seqID(n int64) string { return strconv.FormatInt(n, 10) }

type tallyEntry struct {
	ID                 string `bson:"_id"` // seqID(Seq)
	Seq                int64  `bson:"seq"`
	Key                string `bson:"key"`
	notification.Tally `bson:",inline"`
	At                 time.Time `bson:"at"`
}

type tallySnapshot struct {
	ID                 string `bson:"_id"` // seqID(Seq)
	Seq                int64  `bson:"seq"`
	Upto               int64  `bson:"upto"` // the sum of entries 0..Upto-1
	notification.Tally `bson:",inline"`
	At                 time.Time `bson:"at"`
}

// AppendTally records a change of the figures under key, once: a key recorded before is not
// counted again.
func (s *Store) AppendTally(ctx context.Context, key string, d notification.Tally) error {
	for {
		n, err := s.head(ctx, s.tally, &s.tallyHead)
		if err != nil {
			return err
		}
		_, err = s.tally.InsertOne(ctx, tallyEntry{ID: seqID(n), Seq: n, Key: key, Tally: d, At: s.now()})
		if err == nil {
			raise(&s.tallyHead, n+1)
			return nil
		}
		if !mongox.IsDuplicateKey(err) {
			return err
		}
		var e tallyEntry
		found, err := findByID(ctx, s.tally, seqID(n), &e)
		if err != nil {
			return err
		}
		if !found || e.Key == key {
			return nil // the slot is free, so the key is what is taken: counted already
		}
		raise(&s.tallyHead, n+1) // another change took this number: find the head again
	}
}

// ReadTally returns the sum of every change recorded, folding the entries after the latest
// snapshot into a new one when they are many.
func (s *Store) ReadTally(ctx context.Context) (notification.Tally, error) {
	for {
		snap, err := s.latestSnapshot(ctx)
		if err != nil {
			return notification.Tally{}, err
		}
		sum := snap.Tally
		n := snap.Upto
		for n-snap.Upto < tallyReadMax {
			var e tallyEntry
			found, err := findByID(ctx, s.tally, seqID(n), &e)
			if err != nil {
				return notification.Tally{}, err
			}
			if !found {
				break
			}
			sum = sum.Add(e.Tally)
			n++
		}
		raise(&s.tallyHead, n)
		if n-snap.Upto < tallyFoldAt {
			return sum, nil
		}
		_, err = s.snapshots.InsertOne(ctx, tallySnapshot{ID: seqID(snap.Seq + 1), Seq: snap.Seq + 1, Upto: n, Tally: sum, At: s.now()})
		if err != nil && !mongox.IsDuplicateKey(err) {
			return notification.Tally{}, err
		}
		if err == nil {
			raise(&s.snapHead, snap.Seq+2)
		}
		if n-snap.Upto < tallyReadMax {
			return sum, nil
		}
		// more entries than one fold reads: carry on from the new snapshot
	}
}

// latestSnapshot returns the newest snapshot, or a zero one (Seq -1) when there is none.
func (s *Store) latestSnapshot(ctx context.Context) (tallySnapshot, error) {
	n, err := s.head(ctx, s.snapshots, &s.snapHead)
	if err != nil || n == 0 {
		return tallySnapshot{Seq: -1}, err
	}
	var snap tallySnapshot
	found, err := findByID(ctx, s.snapshots, seqID(n-1), &snap)
	if err != nil {
		return tallySnapshot{Seq: -1}, err
	}
	if !found { // cannot happen: sequences have no gaps
		return tallySnapshot{Seq: -1}, nil
	}
	return snap, nil
}

// head returns the first free number of a gap-free sequence of _ids 0, 1, 2, ... in coll,
// starting from hint, a number known to be at most the head: gallop up while numbers exist,
// then bisect.
func (s *Store) head(ctx context.Context, coll *mongo.Collection, hint *atomic.Int64) (int64, error) {
	return runEnd(ctx, coll, hint, upward)
}

// upward and downward map the k-th number of a gap-free run to its _id number: 0, 1, 2, ...
// and -1, -2, -3, ... (the list indexes grow both ways; see list.go).
func upward(k int64) int64   { return k }
func downward(k int64) int64 { return -1 - k }

// runEnd returns the k of the first free number slot(k) of a gap-free run slot(0), slot(1),
// ... in coll, starting from hint, a k known to be at most the end: gallop while numbers
// exist, then bisect. It raises hint to the end found.
func runEnd(ctx context.Context, coll *mongo.Collection, hint *atomic.Int64, slot func(int64) int64) (int64, error) {
	has := func(k int64) (bool, error) { return exists(ctx, coll, seqID(slot(k))) }
	lo := hint.Load() // every number below lo exists
	found, err := has(lo)
	if err != nil || !found {
		return lo, err
	}
	lo++
	step := int64(1)
	hi := lo // first number not yet known to exist
	for {
		found, err := has(hi)
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
	// numbers below lo exist, hi does not: find the first missing one in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		found, err := has(mid)
		if err != nil {
			return 0, err
		}
		if found {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	raise(hint, lo)
	return lo, nil
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
