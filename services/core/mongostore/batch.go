package mongostore

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
)

// maxBatchDocs bounds the documents of one coalesced write (mongox.Inserter's bound too).
const maxBatchDocs = mongox.MaxBatchDocs

// batchTimeout bounds one coalesced write (it runs for many requests, so on no request's
// context).
const batchTimeout = mongox.BatchTimeout

// deleter coalesces the deletes by _id of concurrent callers into one delete command per batch,
// like mongox.Inserter: while one is in flight the next callers queue, and the next batch takes them
// all. A delete of a missing document is not an error.
type deleter struct {
	coll *mongo.Collection
	// deleted, if set, is told how many documents each batch deleted (the outbox's count).
	deleted func(n int64)

	mu      sync.Mutex
	queue   []*deleteReq
	running bool
}

type deleteReq struct {
	ids  []any
	done chan error
}

func newDeleter(coll *mongo.Collection) *deleter { return &deleter{coll: coll} }

// delete deletes the documents with the given _ids (in one of the coalesced batches).
func (d *deleter) delete(ctx context.Context, ids ...any) error {
	if len(ids) == 0 {
		return nil
	}
	req := &deleteReq{ids: ids, done: make(chan error, 1)}
	d.mu.Lock()
	d.queue = append(d.queue, req)
	if !d.running {
		d.running = true
		go d.loop()
	}
	d.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *deleter) loop() {
	for {
		d.mu.Lock()
		var batch []*deleteReq
		n := 0
		for len(d.queue) > 0 && (len(batch) == 0 || n+len(d.queue[0].ids) <= maxBatchDocs) {
			n += len(d.queue[0].ids)
			batch = append(batch, d.queue[0])
			d.queue = d.queue[1:]
		}
		if len(batch) == 0 {
			d.running = false
			d.queue = nil
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		ids := make([]any, 0, n)
		for _, r := range batch {
			ids = append(ids, r.ids...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		gone, err := deleteByIDs(ctx, d.coll, ids)
		cancel()
		if d.deleted != nil {
			d.deleted(gone)
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// deleteByIDs deletes the documents with the given _ids in one command of one statement per
// id. A single {_id: {$in: ids}} would be shorter, but the embedded database serves only an
// exact {_id: v} filter from its index and scans the whole collection for anything else: one
// statement per id keeps a delete's cost independent of the collection's size. It answers how
// many documents it deleted (also on a partial failure).
func deleteByIDs(ctx context.Context, c *mongo.Collection, ids []any) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	models := make([]mongo.WriteModel, len(ids))
	for i, id := range ids {
		models[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}})
	}
	res, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if res == nil {
		return 0, err
	}
	return res.DeletedCount, err
}

// setByIDs applies the same $set to the documents with the given _ids, one statement per id
// (see deleteByIDs). A missing document is not an error.
func setByIDs(ctx context.Context, c *mongo.Collection, ids []any, set bson.M) error {
	for start := 0; start < len(ids); start += maxUpdatesPerBulk {
		chunk := ids[start:min(len(ids), start+maxUpdatesPerBulk)]
		models := make([]mongo.WriteModel, len(chunk))
		for i, id := range chunk {
			models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetUpdate(bson.M{"$set": set})
		}
		if _, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return err
		}
	}
	return nil
}

// maxUpdatesPerBulk bounds the update statements of one bulk write: the embedded database never
// answers one of about 100 (measured: 60 answer, 100 hang until the client times out).
const maxUpdatesPerBulk = 50
