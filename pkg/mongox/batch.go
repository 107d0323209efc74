package mongox

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MaxBatchDocs bounds the documents of one coalesced write (an Inserter's insertMany takes
// more only for a single request of more).
const MaxBatchDocs = 500

// BatchTimeout bounds one coalesced write: it runs for many requests, so on no request's
// context.
const BatchTimeout = 30 * time.Second

// Inserter coalesces the inserts of concurrent requests into one unordered insertMany per
// collection ("group commit"): while one batch is in flight, the next requests queue, and the
// next batch takes them all (up to MaxBatchDocs documents). At low load a request's insert
// goes out at once, alone; under load, sixteen inserts cost one write instead of sixteen (on
// FerretDB every write is a transaction, and writers that find SQLite busy sleep). Each
// document still succeeds or fails on its own: a unique key refuses the duplicates of one
// batch exactly as it would refuse them one by one (the insertMany is unordered, so a
// duplicate never stops the documents after it), and each caller learns which of its
// documents were refused. A failure of the whole batch (a timeout, a lost connection) is
// every caller's: their documents may or may not be stored, as with a lost reply to a
// single insert.
//
// One Inserter may serve several collections (e.g. the shards of a queue): a batch then makes
// one insertMany per collection, one after the other, so the inserts stay one write at a time.
type Inserter struct {
	colls   []*mongo.Collection
	mu      sync.Mutex
	queue   []*insertReq
	running bool
}

type insertReq struct {
	coll int // index into colls
	docs []any
	done chan insertResult
}

// insertResult is what one request learns of its batch.
type insertResult struct {
	writeErrs []docWriteError // its documents' write errors, in the server's order
	err       error           // the batch's failure (then nothing can be assumed about the documents)
}

// docWriteError is the write error of one document: pos is its position in the request's
// docs; we is the server's error as it came (its Index counts in the whole batch).
type docWriteError struct {
	pos int
	we  mongo.BulkWriteError
}

// NewInserter returns an Inserter into colls (the first one unless told: see InsertInto).
func NewInserter(colls ...*mongo.Collection) *Inserter { return &Inserter{colls: colls} }

// Insert inserts docs into the first collection (in one of the coalesced batches) and returns
// the positions in docs refused by a unique key; err is any other failure: the first other
// write error of its documents, or the failure of the batch. On ctx's end it returns at once;
// the documents may still be inserted.
func (in *Inserter) Insert(ctx context.Context, docs ...any) (map[int]bool, error) {
	return in.InsertInto(ctx, 0, docs...)
}

// InsertInto is Insert into collection coll of the Inserter's.
func (in *Inserter) InsertInto(ctx context.Context, coll int, docs ...any) (map[int]bool, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	r, err := in.submit(ctx, coll, docs)
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	var dup map[int]bool
	for _, w := range r.writeErrs {
		if mongo.IsDuplicateKeyError(w.we) {
			if dup == nil {
				dup = map[int]bool{}
			}
			dup[w.pos] = true
		} else if err == nil {
			err = w.we
		}
	}
	return dup, err
}

// InsertOne inserts doc into the first collection, in one of the coalesced batches; a
// refused duplicate is an error for which IsDuplicateKey holds (a mongo.WriteException of the
// document's write error, as for any other write error of it). On ctx's end it returns at
// once; the document may still be inserted.
func (in *Inserter) InsertOne(ctx context.Context, doc any) error {
	return in.InsertOneInto(ctx, 0, doc)
}

// InsertOneInto is InsertOne into collection coll of the Inserter's.
func (in *Inserter) InsertOneInto(ctx context.Context, coll int, doc any) error {
	r, err := in.submit(ctx, coll, []any{doc})
	if err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	if len(r.writeErrs) > 0 {
		return mongo.WriteException{WriteErrors: []mongo.WriteError{r.writeErrs[0].we.WriteError}}
	}
	return nil
}

// submit queues docs for collection coll and waits for its batch (or ctx's end).
func (in *Inserter) submit(ctx context.Context, coll int, docs []any) (insertResult, error) {
	req := &insertReq{coll: coll, docs: docs, done: make(chan insertResult, 1)}
	in.mu.Lock()
	in.queue = append(in.queue, req)
	if !in.running {
		in.running = true
		go in.loop()
	}
	in.mu.Unlock()
	select {
	case r := <-req.done:
		return r, nil
	case <-ctx.Done():
		return insertResult{}, ctx.Err()
	}
}

func (in *Inserter) loop() {
	for {
		in.mu.Lock()
		var batch []*insertReq
		n := 0
		for len(in.queue) > 0 && (len(batch) == 0 || n+len(in.queue[0].docs) <= MaxBatchDocs) {
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
		in.flush(batch)
	}
}

// flush writes a batch: one insertMany per collection, in the collections' order.
func (in *Inserter) flush(batch []*insertReq) {
	if len(in.colls) == 1 {
		in.flushInto(in.colls[0], batch)
		return
	}
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

func (in *Inserter) flushInto(coll *mongo.Collection, batch []*insertReq) {
	n := 0
	for _, r := range batch {
		n += len(r.docs)
	}
	docs := make([]any, 0, n)
	for _, r := range batch {
		docs = append(docs, r.docs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), BatchTimeout)
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	cancel()
	results := make([]insertResult, len(batch))
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
			for i := range results {
				results[i].err = err
			}
		} else {
			// Map each write error back to its request and position: owner[i] is the request
			// of the batch's document i, start[r] the position of request r's first document.
			owner, start := make([]int, len(docs)), make([]int, len(batch))
			for r, i := 0, 0; r < len(batch); r++ {
				start[r] = i
				for range batch[r].docs {
					owner[i] = r
					i++
				}
			}
			for _, we := range bwe.WriteErrors {
				if we.Index < 0 || we.Index >= len(docs) {
					continue
				}
				r := owner[we.Index]
				results[r].writeErrs = append(results[r].writeErrs, docWriteError{pos: we.Index - start[r], we: we})
			}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}
