package mongostore

import (
	"bytes"
	"context"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// backfillChunk is how many tickets one step of BackfillList lists.
const backfillChunk = 500

// BackfillList lists the tickets an earlier version stored (those without a list entry: their
// document has no listSeq) in the list indexes, then writes the marker that makes lists read
// the indexes (see List). It returns at once when the marker exists.
//
// It reads the tickets' ids once (a cursor over the collection), then lists them newest first
// in chunks: each ticket's entry in the index of all tickets and, by its status now, in the
// index of that status (SUCCESS, FAILED, or re-queued PENDING), taking the downward numbers
// -1, -2, ... so that they read after (older than) every ticket listed on creation. Entries
// are unique by ticket (and generation), so replicas running it at once, or a run started
// again after one was interrupted, list each ticket once; as every run goes newest first, the
// order holds too. A ticket whose status changes meanwhile gets its new status's entry from
// that change (Decide, Requeue); the entry for its old status is then skipped by readers.
//
// Tickets an earlier version stores after the marker (replicas of it still running during a
// rolling upgrade) are not listed: upgrade the notification service and the sweeper together.
func (s *Store) BackfillList(ctx context.Context) (listed int, err error) {
	if ready, err := s.listReady(ctx); err != nil || ready {
		return 0, err
	}
	cur, err := s.tickets.Find(ctx, bson.D{}, options.Find().
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "listSeq", Value: 1}}).SetBatchSize(1000))
	if err != nil {
		return 0, err
	}
	var ids []notification.ID
	for cur.Next(ctx) {
		var d struct {
			ID      notification.ID `bson:"_id"`
			ListSeq *int64          `bson:"listSeq"`
		}
		if err := cur.Decode(&d); err != nil {
			cur.Close(ctx)
			return 0, err
		}
		if d.ListSeq == nil {
			ids = append(ids, d.ID)
		}
	}
	err = cur.Err()
	cur.Close(ctx)
	if err != nil {
		return 0, err
	}
	slices.SortFunc(ids, func(a, b notification.ID) int { return bytes.Compare(b[:], a[:]) }) // newest first
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), backfillChunk)]
		ids = ids[len(chunk):]
		n, err := s.backfillChunk(ctx, chunk)
		listed += n
		if err != nil {
			return listed, err
		}
	}
	_, err = s.db.Collection(MigrationsCollection).InsertOne(ctx, bson.M{"_id": listMigration, "at": s.now(), "listed": listed})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return listed, err
	}
	s.listDone.Store(true)
	return listed, nil
}

// backfillChunk lists the tickets ids (newest first) downward; it returns how many it listed
// in the index of all tickets.
func (s *Store) backfillChunk(ctx context.Context, ids []notification.ID) (int, error) {
	ts := make([]*notification.Ticket, len(ids))
	err := pointReads(len(ids), func(i int) error {
		t, err := s.stored(ctx, ids[i])
		if err != nil || t == nil {
			return err
		}
		if err := s.resolve(ctx, t); err != nil {
			return err
		}
		ts[i] = t
		return nil
	})
	if err != nil {
		return 0, err
	}
	var entries [numLists][]listEntry
	for _, t := range ts {
		if t == nil {
			continue
		}
		entries[listAll] = append(entries[listAll], listEntry{Key: t.ID.Hex(), Ticket: t.ID, At: t.CreatedAt})
		e := listEntry{Key: notification.AssignmentKey(t.ID, t.Generation), Ticket: t.ID, Gen: t.Generation, At: t.UpdatedAt}
		switch {
		case t.Status == notification.StatusSuccess:
			if t.SentAt != nil {
				e.At = *t.SentAt
			}
			entries[listSuccess] = append(entries[listSuccess], e)
		case t.Status == notification.StatusFailed:
			entries[listFailed] = append(entries[listFailed], e)
		case t.Generation > 0: // PENDING again after a re-queue
			entries[listRequeued] = append(entries[listRequeued], e)
		}
	}
	n := 0
	for i, es := range entries {
		if len(es) == 0 {
			continue
		}
		nums, err := s.lists[i].insertRun(ctx, true, es)
		if err != nil {
			return n, err
		}
		if i == listAll {
			for _, k := range nums {
				if k != alreadyListed {
					n++
				}
			}
		}
	}
	return n, nil
}

// markFreshList writes the list indexes' marker on a database without tickets: every ticket
// will be listed on creation.
func (s *Store) markFreshList(ctx context.Context) error {
	if ready, err := s.listReady(ctx); err != nil || ready {
		return err
	}
	cur, err := s.tickets.Find(ctx, bson.D{}, options.Find().SetLimit(1).SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return err
	}
	var any []bson.Raw
	if err := cur.All(ctx, &any); err != nil || len(any) > 0 {
		return err
	}
	_, err = s.db.Collection(MigrationsCollection).InsertOne(ctx, bson.M{"_id": listMigration, "at": s.now(), "fresh": true})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return err
	}
	s.listDone.Store(true)
	return nil
}
