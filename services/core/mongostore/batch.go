package mongostore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxBatchDocs bounds the documents of one coalesced insertMany.
const maxBatchDocs = 500

// batchTimeout bounds one coalesced insertMany (it runs for many requests, so on no
// request's context).
const batchTimeout = 30 * time.Second

// inserter coalesces the inserts of concurrent requests into one unordered insertMany per
// collection ("group commit"): while one batch is in flight, the next requests queue, and the
// next batch takes them all. At low load a request's insert goes out at once, alone; under
// load, sixteen bookings cost one write instead of sixteen. Each document still succeeds or
// fails on its own: a unique key refuses the duplicates of one batch exactly as it would
// refuse them one by one, and each caller learns which of its documents were refused.
type inserter struct {
	coll    *mongo.Collection
	mu      sync.Mutex
	queue   []*insertReq
	running bool
}

type insertReq struct {
	docs []any
	done chan insertResult
}

type insertResult struct {
	dup map[int]bool // positions in the request's docs refused by a unique key
	err error        // any other failure (then nothing can be assumed about the documents)
}

func newInserter(coll *mongo.Collection) *inserter { return &inserter{coll: coll} }

// insert inserts docs (in one of the coalesced batches) and returns the positions refused by a
// unique key. On ctx's end it returns at once; the documents may still be inserted.
func (in *inserter) insert(ctx context.Context, docs ...any) (map[int]bool, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	req := &insertReq{docs: docs, done: make(chan insertResult, 1)}
	in.mu.Lock()
	in.queue = append(in.queue, req)
	if !in.running {
		in.running = true
		go in.loop()
	}
	in.mu.Unlock()
	select {
	case r := <-req.done:
		return r.dup, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (in *inserter) loop() {
	for {
		in.mu.Lock()
		var batch []*insertReq
		n := 0
		for len(in.queue) > 0 && (len(batch) == 0 || n+len(in.queue[0].docs) <= maxBatchDocs) {
			n += len(in.queue[0].docs)
			batch = append(batch, in.queue[0])
			in.queue = in.queue[1:]
		}
		if len(batch) == 0 {
			in.running = false
			in.queue = nil
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		in.flush(batch, n)
	}
}

func (in *inserter) flush(batch []*insertReq, n int) {
	docs := make([]any, 0, n)
	for _, r := range batch {
		docs = append(docs, r.docs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	_, err := in.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	cancel()
	results := make([]insertResult, len(batch))
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
			for i := range results {
				results[i].err = err
			}
		} else {
			// Map each write error back to its request and position.
			for _, we := range bwe.WriteErrors {
				off := we.Index
				for i, r := range batch {
					if off < len(r.docs) {
						if mongo.IsDuplicateKeyError(we) {
							if results[i].dup == nil {
								results[i].dup = map[int]bool{}
							}
							results[i].dup[off] = true
						} else if results[i].err == nil {
							results[i].err = we
						}
						break
					}
					off -= len(r.docs)
				}
			}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// deleter coalesces the deletes by _id of concurrent callers into one delete command per batch,
// like inserter: while one is in flight the next callers queue, and the next batch takes them
// all. A delete of a missing document is not an error.
type deleter struct {
	coll    *mongo.Collection
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
		err := deleteByIDs(ctx, d.coll, ids)
		cancel()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// deleteByIDs deletes the documents with the given _ids in one command of one statement per
// id. A single {_id: {$in: ids}} would be shorter, but the embedded database serves only an
// exact {_id: v} filter from its index and scans the whole collection for anything else: one
// statement per id keeps a delete's cost independent of the collection's size.
func deleteByIDs(ctx context.Context, c *mongo.Collection, ids []any) error {
	if len(ids) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(ids))
	for i, id := range ids {
		models[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}})
	}
	_, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	return err
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
