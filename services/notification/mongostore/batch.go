package mongostore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxBatchDocs bounds the documents of one coalesced insertMany.
const maxBatchDocs = 500

// batchTimeout bounds one coalesced insertMany (it runs for many requests, so on no
// request's context).
const batchTimeout = 30 * time.Second

// inserter coalesces the inserts of concurrent requests into one unordered insertMany per
// collection ("group commit", as the core does): while one batch is in flight, the next
// requests queue, and the next batch takes them all. At low load an insert goes out at once,
// alone; under load, sixteen creates cost one write instead of sixteen (on the dev database
// every write is a transaction, and writers that find SQLite busy sleep). Each document
// still succeeds or fails on its own: a unique key refuses a duplicate in a batch exactly as
// it would alone, and each caller learns whether its document was refused. A failure of the
// whole batch (a timeout, a lost connection) is every caller's: their documents may or may
// not be stored, as with a lost reply to a single insert.
//
// One inserter may serve several collections (the queue's shards): a batch then makes one
// insertMany per collection, one after the other, so the inserts stay one write at a time.
type inserter struct {
	colls   []*mongo.Collection
	mu      sync.Mutex
	queue   []*insertReq
	running bool
}

type insertReq struct {
	coll int // index into colls
	doc  any
	done chan error
}

func newInserter(colls ...*mongo.Collection) *inserter { return &inserter{colls: colls} }

// insert inserts doc into the first collection, in one of the coalesced batches; a refused
// duplicate is an error for which mongox.IsDuplicateKey holds. On ctx's end it returns at
// once; the document may still be inserted.
func (in *inserter) insert(ctx context.Context, doc any) error { return in.insertInto(ctx, 0, doc) }

// insertInto is insert into collection coll of the inserter's.
func (in *inserter) insertInto(ctx context.Context, coll int, doc any) error {
	req := &insertReq{coll: coll, doc: doc, done: make(chan error, 1)}
	in.mu.Lock()
	in.queue = append(in.queue, req)
	if !in.running {
		in.running = true
		go in.loop()
	}
	in.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (in *inserter) loop() {
	for {
		in.mu.Lock()
		batch := in.queue[:min(len(in.queue), maxBatchDocs)]
		in.queue = in.queue[len(batch):]
		if len(batch) == 0 {
			in.running = false
			in.queue = nil
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		in.flush(batch)
	}
}

func (in *inserter) flush(batch []*insertReq) {
	byColl := make([][]*insertReq, len(in.colls))
	for _, r := range batch {
		byColl[r.coll] = append(byColl[r.coll], r)
	}
	for c, reqs := range byColl {
		if len(reqs) > 0 {
			in.flushInto(in.colls[c], reqs)
		}
	}
}

func (in *inserter) flushInto(coll *mongo.Collection, batch []*insertReq) {
	docs := make([]any, len(batch))
	for i, r := range batch {
		docs[i] = r.doc
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	cancel()
	results := make([]error, len(batch))
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
			for i := range results {
				results[i] = err
			}
		} else {
			for _, we := range bwe.WriteErrors {
				if we.Index >= 0 && we.Index < len(results) {
					results[we.Index] = mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}
				}
			}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}
