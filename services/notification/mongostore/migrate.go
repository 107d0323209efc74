package mongostore

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// MigrationsCollection holds one record per migration done.
const MigrationsCollection = "migrations"

// workQueuesMigration names the migration from the layout before the work collections.
const workQueuesMigration = "delivery-work-queues-v1"

// MigrateReport says what MigrateLegacy did.
type MigrateReport struct {
	Done       bool // it ran now (false: done before)
	Queued     int  // PENDING tickets put into the delivery queue
	Reopened   int  // undecided batches given their member list and open entry
	Idempotent int  // Idempotency-Key records made from tickets of the last 24 hours
}

// legacyTicket is what the migration reads of a ticket stored before the work collections.
type legacyTicket struct {
	notification.Ticket `bson:",inline"`
	Key                 string `bson:"idempotencyKey,omitempty"`
	Hash                string `bson:"requestHash,omitempty"`
}

// MigrateLegacy brings data written before the delivery queue and the open batches into
// them, once (a record in MigrationsCollection says it is done): every PENDING ticket
// whose current generation is neither decided nor assigned is queued; every batch not done
// gets its member list (from its assignments) and its open entry, so sweeps take it over;
// the figures get the outcomes and re-queues counted so far; tickets created under an
// Idempotency-Key in the last 24 hours get their key record. It reads every ticket once
// (the old layout offers nothing cheaper); each step is idempotent, so two processes
// running it at once, or one interrupted and run again, leave the same result.
func (s *Store) MigrateLegacy(ctx context.Context) (MigrateReport, error) {
	var rep MigrateReport
	migrations := s.db.Collection(MigrationsCollection)
	if done, err := exists(ctx, migrations, workQueuesMigration); err != nil || done {
		return rep, err
	}
	if err := s.migrateTickets(ctx, &rep); err != nil {
		return rep, fmt.Errorf("migrate tickets: %w", err)
	}
	if err := s.migrateBatches(ctx, &rep); err != nil {
		return rep, fmt.Errorf("migrate batches: %w", err)
	}
	if err := s.migrateFigures(ctx); err != nil {
		return rep, fmt.Errorf("migrate figures: %w", err)
	}
	_, err := migrations.InsertOne(ctx, bson.M{"_id": workQueuesMigration, "at": s.now(), "queued": rep.Queued,
		"reopened": rep.Reopened, "idempotencyKeys": rep.Idempotent})
	if err != nil && !mongox.IsDuplicateKey(err) {
		return rep, err
	}
	rep.Done = true
	return rep, nil
}

// markFreshInstall records the migration as done on a database without tickets: there is
// nothing to migrate, now or later.
func (s *Store) markFreshInstall(ctx context.Context) error {
	migrations := s.db.Collection(MigrationsCollection)
	if done, err := exists(ctx, migrations, workQueuesMigration); err != nil || done {
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
	_, err = migrations.InsertOne(ctx, bson.M{"_id": workQueuesMigration, "at": s.now(), "fresh": true})
	if mongox.IsDuplicateKey(err) {
		return nil
	}
	return err
}

func (s *Store) migrateTickets(ctx context.Context, rep *MigrateReport) error {
	cur, err := s.tickets.Find(ctx, bson.M{})
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	recent := s.now().Add(-IdempotencyRetention)
	for cur.Next(ctx) {
		var lt legacyTicket
		if err := cur.Decode(&lt); err != nil {
			return err
		}
		t := lt.Ticket
		if lt.Key != "" && t.CreatedAt.After(recent) {
			c := idemClaim{ID: claimID(idemScope(lt.Key), 0), Ticket: t.ID, Hash: lt.Hash, CreatedAt: t.CreatedAt}
			if _, err := s.idem.InsertOne(ctx, c); err == nil {
				rep.Idempotent++
			} else if !mongox.IsDuplicateKey(err) {
				return err
			}
		}
		if t.Status != notification.StatusPending {
			continue
		}
		if err := s.resolve(ctx, &t); err != nil {
			return err
		}
		if t.Status != notification.StatusPending || t.Batch != "" {
			continue // decided, or in a batch (reopened below)
		}
		queued, err := s.queued(ctx, t.ID, t.Generation)
		if err != nil {
			return err
		}
		if !queued {
			if err := s.Enqueue(ctx, notification.NewQueueEntry(&t, t.Generation, t.NextAttemptAt)); err != nil {
				return err
			}
			rep.Queued++
		}
	}
	return cur.Err()
}

func (s *Store) migrateBatches(ctx context.Context, rep *MigrateReport) error {
	cur, err := s.batches.Find(ctx, bson.M{"done": false})
	if err != nil {
		return err
	}
	var open []notification.Batch
	if err := cur.All(ctx, &open); err != nil {
		return err
	}
	for _, b := range open {
		if found, err := exists(ctx, s.open, b.ID); err != nil || found {
			if err != nil {
				return err
			}
			continue // opened by the new layout
		}
		acur, err := s.assignments.Find(ctx, bson.M{"batch": b.ID})
		if err != nil {
			return err
		}
		var as []notification.Assignment
		if err := acur.All(ctx, &as); err != nil {
			return err
		}
		b.Members = b.Members[:0]
		for _, a := range as {
			b.Members = append(b.Members, notification.Member{Ticket: a.Ticket, Generation: a.Generation})
		}
		b.Verified, b.Size = true, len(as)
		if b.FirstSendAt == nil {
			first := b.CreatedAt // it may have been sent from its creation on
			b.FirstSendAt = &first
		}
		if b.Oldest.IsZero() {
			b.Oldest = b.CreatedAt
		}
		if _, err := s.batches.ReplaceOne(ctx, bson.M{"_id": b.ID}, b); err != nil {
			return err
		}
		if _, err := s.open.InsertOne(ctx, openEntry(&b)); err != nil && !mongox.IsDuplicateKey(err) {
			return err
		}
		rep.Reopened++
	}
	return nil
}

// migrateFigures counts the outcomes and re-queues recorded so far into the tally, under
// one key each, so they are counted once.
func (s *Store) migrateFigures(ctx context.Context) error {
	cur, err := s.outcomes.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$status"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return err
	}
	var rows []struct {
		ID string `bson:"_id"`
		N  int64  `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return err
	}
	var t notification.Tally
	for _, r := range rows {
		switch notification.Status(r.ID) {
		case notification.StatusSuccess:
			t.Success = r.N
		case notification.StatusFailed:
			t.Failed = r.N
		}
	}
	if t.Requeued, err = s.requeues.CountDocuments(ctx, bson.D{}); err != nil {
		return err
	}
	if t == (notification.Tally{}) {
		return nil
	}
	return s.AppendTally(ctx, "migration:"+workQueuesMigration, t)
}
