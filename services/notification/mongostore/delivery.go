package mongostore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/notification"
)

// The delivery primitives the sweeper works with. Each is an insert (into a unique key), a
// read of the head of a small collection (an empty filter with a limit), or a read, replace
// or delete by exact _id.

// dequeueChunk bounds the deletes of one command.
const dequeueChunk = 1000

// QueueShardCollection names shard i of the delivery queue.
func QueueShardCollection(i int) string { return fmt.Sprintf("%s_%x", QueueCollection, i) }

// queueOf is the shard collection of a ticket's queue entries.
func (s *Store) queueOf(ticket notification.ID) *mongo.Collection {
	return s.queues[notification.QueueShard(ticket)]
}

// Enqueue inserts queue entries; an entry queued already is left as it is.
func (s *Store) Enqueue(ctx context.Context, entries ...notification.QueueEntry) error {
	var shards [notification.QueueShards][]any
	for _, e := range entries {
		i := notification.QueueShard(e.Ticket)
		shards[i] = append(shards[i], e)
	}
	for i, docs := range shards {
		if len(docs) == 0 {
			continue
		}
		if _, err := duplicates(s.queues[i].InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))); err != nil {
			return err
		}
	}
	return nil
}

// queued reports whether a ticket generation has a queue entry.
func (s *Store) queued(ctx context.Context, ticket notification.ID, gen int) (bool, error) {
	return exists(ctx, s.queueOf(ticket), notification.AssignmentKey(ticket, gen))
}

// QueueHead returns up to limit entries of queue shard i, in the order they were inserted.
func (s *Store) QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error) {
	cur, err := s.queues[shard].Find(ctx, bson.D{}, options.Find().SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	out := make([]notification.QueueEntry, 0, limit)
	if err := cur.All(ctx, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// QueueLen counts the queue entries.
func (s *Store) QueueLen(ctx context.Context) (int64, error) {
	var n int64
	for i := range s.queues {
		c, err := s.shardLen(ctx, i)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// shardLen counts the entries of queue shard i from the collection's statistics (collStats):
// MongoDB keeps the count, the dev database counts its table's rows without decoding them.
func (s *Store) shardLen(ctx context.Context, i int) (int64, error) {
	var st struct {
		Count int64 `bson:"count"`
	}
	err := s.db.RunCommand(ctx, bson.D{{Key: "collStats", Value: QueueShardCollection(i)}}).Decode(&st)
	var se mongo.ServerError
	switch {
	case err == nil:
		return st.Count, nil
	case errors.As(err, &se) && se.HasErrorCode(26): // NamespaceNotFound: nothing was ever queued there
		return 0, nil
	default:
		return s.queues[i].CountDocuments(ctx, bson.D{})
	}
}

// dequeueScanMax is the shard length up to which Dequeue removes entries with deletes by _id
// $in (see Dequeue): past it, deleting by exact _id costs less.
const dequeueScanMax = 5000

// Dequeue deletes queue entries, shard by shard. While a shard holds at most dequeueScanMax
// entries, up to dequeueChunk of them go in one delete by _id $in: one transaction, for which
// the dev database reads every entry of the shard and matches it against the list (about
// 70 us per entry of the shard for a list of 1,000, so it pays on a small shard only). On a
// bigger shard each entry is deleted by exact _id (one transaction each, about 0.5 ms, in one
// command). MongoDB serves both from the _id index.
func (s *Store) Dequeue(ctx context.Context, keys []string) error {
	var shards [notification.QueueShards][]string
	for _, k := range keys {
		id, err := notification.ParseID(k[:min(len(k), 24)])
		if err != nil {
			return fmt.Errorf("queue key %q: %w", k, err)
		}
		i := notification.QueueShard(id)
		shards[i] = append(shards[i], k)
	}
	for i, keys := range shards {
		if len(keys) == 0 {
			continue
		}
		if len(keys) == 1 {
			if _, err := s.queues[i].DeleteOne(ctx, bson.M{"_id": keys[0]}); err != nil {
				return err
			}
			continue
		}
		n, err := s.shardLen(ctx, i)
		if err != nil {
			return err
		}
		for len(keys) > 0 {
			chunk := keys[:min(len(keys), dequeueChunk)]
			keys = keys[len(chunk):]
			if n <= dequeueScanMax {
				if _, err := s.queues[i].DeleteMany(ctx, bson.M{"_id": bson.M{"$in": chunk}}); err != nil {
					return err
				}
				continue
			}
			models := make([]mongo.WriteModel, len(chunk))
			for j, k := range chunk {
				models[j] = mongo.NewDeleteOneModel().SetFilter(bson.M{"_id": k})
			}
			if _, err := s.queues[i].BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
				return err
			}
		}
	}
	return nil
}

// GenerationStarted reports whether generation gen of a ticket exists: generation 0 always,
// a later one once its generation record (the re-queue of gen-1) is inserted.
func (s *Store) GenerationStarted(ctx context.Context, ticket notification.ID, gen int) (bool, error) {
	if gen == 0 {
		return true, nil
	}
	return exists(ctx, s.requeues, notification.AssignmentKey(ticket, gen-1))
}

// openEntry is b's entry in the open batches.
func openEntry(b *notification.Batch) notification.OpenBatch {
	return notification.OpenBatch{ID: b.ID, Due: b.NextAttemptAt, Size: b.Size, Oldest: b.Oldest, Claims: b.Claims}
}

// InsertBatch stores a new batch and its open entry.
func (s *Store) InsertBatch(ctx context.Context, b *notification.Batch) error {
	if _, err := s.batches.InsertOne(ctx, b); err != nil {
		return err
	}
	_, err := s.open.InsertOne(ctx, openEntry(b))
	return err
}

// Assign inserts the assignments of members to b (unordered, so one duplicate does not stop
// the others) and returns the indexes of the members assigned already: to another batch, or
// to b by an earlier call (the sweeper assigns a member to a new batch only, once).
func (s *Store) Assign(ctx context.Context, b *notification.Batch, members []notification.Member) (map[int]bool, error) {
	if len(members) == 0 {
		return nil, nil
	}
	docs := make([]any, len(members))
	for i, m := range members {
		docs[i] = notification.Assignment{Key: m.Key(), Ticket: m.Ticket, Generation: m.Generation, Batch: b.ID, CreatedAt: b.CreatedAt}
	}
	return duplicates(s.assignments.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)))
}

// duplicates returns the indexes of an unordered insertMany that hit a unique key; any other
// failure is returned as an error.
func duplicates(_ *mongo.InsertManyResult, err error) (map[int]bool, error) {
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, err
	}
	dup := make(map[int]bool, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return nil, err
		}
		dup[we.Index] = true
	}
	return dup, nil
}

// Batch reads a batch (nil when there is none).
func (s *Store) Batch(ctx context.Context, id string) (*notification.Batch, error) {
	var b notification.Batch
	found, err := findByID(ctx, s.batches, id, &b)
	if err != nil || !found {
		return nil, err
	}
	return &b, nil
}

// SaveBatch replaces the batch record and, while it is open, its open entry (only the batch's
// holder calls it).
func (s *Store) SaveBatch(ctx context.Context, b *notification.Batch) error {
	if _, err := s.batches.ReplaceOne(ctx, bson.M{"_id": b.ID}, b); err != nil {
		return err
	}
	if b.Done {
		return nil
	}
	_, err := s.open.ReplaceOne(ctx, bson.M{"_id": b.ID}, openEntry(b))
	return err
}

// CloseBatch removes a done batch from the open batches.
func (s *Store) CloseBatch(ctx context.Context, id string) error {
	_, err := s.open.DeleteOne(ctx, bson.M{"_id": id})
	return err
}

// DiscardBatch removes a batch that won no ticket (nothing refers to it).
func (s *Store) DiscardBatch(ctx context.Context, id string) error {
	if err := s.CloseBatch(ctx, id); err != nil {
		return err
	}
	_, err := s.batches.DeleteOne(ctx, bson.M{"_id": id})
	return err
}

// OpenBatches returns up to limit open batches, in the order they were opened.
func (s *Store) OpenBatches(ctx context.Context, limit int) ([]notification.OpenBatch, error) {
	cur, err := s.open.Find(ctx, bson.D{}, options.Find().SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	var out []notification.OpenBatch
	if err := cur.All(ctx, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// pointReads runs read(i) for i in [0, n), at most resolveParallel at a time.
func pointReads(n int, read func(i int) error) error {
	errc := make([]error, n)
	sem := make(chan struct{}, resolveParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errc[i] = read(i)
		})
	}
	wg.Wait()
	return errors.Join(errc...)
}

// Members returns the tickets of a batch taken over from another sweep, in id order (the
// content read from the ticket documents, Generation the one the batch delivers). Unless the
// member list is verified, it keeps the members whose assignment names the batch, and
// records that in b (the caller saves b).
func (s *Store) Members(ctx context.Context, b *notification.Batch) ([]notification.Ticket, error) {
	members := b.Members
	if !b.Verified {
		mine := make([]bool, len(members))
		err := pointReads(len(members), func(i int) error {
			var a notification.Assignment
			found, err := findByID(ctx, s.assignments, members[i].Key(), &a)
			mine[i] = found && a.Batch == b.ID
			return err
		})
		if err != nil {
			return nil, err
		}
		kept := make([]notification.Member, 0, len(members))
		for i, m := range members {
			if mine[i] {
				kept = append(kept, m)
			}
		}
		b.Members, b.Verified, b.Size = kept, true, len(kept)
		members = kept
	}
	out := make([]notification.Ticket, len(members))
	found := make([]bool, len(members))
	err := pointReads(len(members), func(i int) error {
		var err error
		found[i], err = findByID(ctx, s.tickets, members[i].Ticket, &out[i])
		out[i].Generation = members[i].Generation
		return err
	})
	if err != nil {
		return nil, err
	}
	tickets := out[:0]
	for i := range out {
		if found[i] {
			tickets = append(tickets, out[i])
		}
	}
	slices.SortFunc(tickets, func(a, b notification.Ticket) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return tickets, nil
}

// Decide inserts outcomes; a ticket generation decided already keeps its first outcome, and
// its key is returned in already. Each outcome's entry in the list index of its status is
// appended first, so that a decided ticket is always listed under its status (an entry whose
// outcome lost to an earlier one is skipped by readers).
func (s *Store) Decide(ctx context.Context, outcomes []notification.Outcome) (map[string]bool, error) {
	var entries [numLists][]listEntry
	for _, o := range outcomes {
		i := listFailed
		if o.Status == notification.StatusSuccess {
			i = listSuccess
		}
		entries[i] = append(entries[i], listEntry{Key: o.Key, Ticket: o.Ticket, Gen: o.Generation, At: o.At})
	}
	for i, es := range entries {
		if len(es) > 0 {
			if _, err := s.lists[i].ins.append(ctx, es...); err != nil {
				return nil, err
			}
		}
	}
	docs := make([]any, len(outcomes))
	for i := range outcomes {
		docs[i] = outcomes[i]
	}
	dup, err := duplicates(s.outcomes.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)))
	if err != nil {
		return nil, err
	}
	already := make(map[string]bool, len(dup))
	for i := range dup {
		already[outcomes[i].Key] = true
	}
	return already, nil
}

// Outcomes reads the outcomes of the given ticket generations (missing ones are absent).
func (s *Store) Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error) {
	got := make([]*notification.Outcome, len(keys))
	err := pointReads(len(keys), func(i int) error {
		var o notification.Outcome
		found, err := findByID(ctx, s.outcomes, keys[i], &o)
		if found {
			got[i] = &o
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*notification.Outcome, len(keys))
	for i, o := range got {
		if o != nil {
			out[keys[i]] = o
		}
	}
	return out, nil
}

// claim is one lease on a batch: claim n of a batch is inserted only after claim n-1 ended,
// so its number is learned from the insert that won it. A batch's claims are numbered 1, 2,
// 3, ... without gaps, and never removed.
type claim struct {
	Key    string    `bson:"_id"` // <batch>:<n>
	Batch  string    `bson:"batch"`
	N      int       `bson:"n"`
	Holder string    `bson:"holder"`
	Until  time.Time `bson:"until"`
	At     time.Time `bson:"at"`
}

// maxClaimTries bounds how many claims one Claim tries to insert (each lost race moves it on
// to the next number, and only while the claim that won ended at once).
const maxClaimTries = 64

// Claim takes the next lease on a batch, until until. It finds the batch's last claim n from
// from (the last claim number its caller knew of, 0 for none; see lastClaim), checks that
// claim n has ended, and inserts claim n+1 (claims start at 1); when another caller inserted
// n+1 first, it checks that one and goes on. So claim n+1 is won by one insert, only once
// claim n is over, and its winner learns n+1 from that insert. A hint any distance behind or
// ahead of the last claim costs a few reads by exact _id (logarithmic in the distance), so a
// batch whose hint was not saved by the sweeps that claimed it (a claim released at once, a
// sweep killed after its claim) can always be claimed again. It returns the number won, or
// ok=false when a lease is held.
func (s *Store) Claim(ctx context.Context, batchID string, from int, holder string, now, until time.Time) (int, bool, error) {
	key := func(n int) string { return fmt.Sprintf("%s:%d", batchID, n) }
	read := func(n int) (*claim, error) {
		var c claim
		found, err := findByID(ctx, s.claims, key(n), &c)
		if err != nil || !found {
			return nil, err
		}
		return &c, nil
	}
	hint := from
	for range maxClaimTries {
		n, last, err := lastClaim(read, hint)
		if err != nil {
			return 0, false, err
		}
		if last != nil && last.Until.After(now) {
			return 0, false, nil // held
		}
		n++
		c := claim{Key: key(n), Batch: batchID, N: n, Holder: holder, Until: until, At: now}
		_, err = s.claims.InsertOne(ctx, c)
		if err == nil {
			return n, true, nil
		}
		if !mongox.IsDuplicateKey(err) {
			return 0, false, err
		}
		hint = n // claim n exists: whether it ended is checked before claiming n+1
	}
	return 0, false, nil
}

// lastClaim returns the number of a batch's last claim (0 for none) and that claim (nil for
// none), read with read, starting from hint: since the claims are 1..n without gaps, it
// reads the hint's claim, then gallops on (hint+1, +2, +4, ...) while claims exist, or, when
// the hint is past the last, starts from below it; then it bisects. The hint's own claim
// and the next are read when the hint is the last claim, about 2*log2(d) claims when it is
// d behind.
func lastClaim(read func(n int) (*claim, error), hint int) (int, *claim, error) {
	lo, hi := 0, 0 // claim lo exists (lo 0: none needs to), claim hi does not (hi 0: none known)
	var last *claim
	if hint > 0 {
		c, err := read(hint)
		if err != nil {
			return 0, nil, err
		}
		if c != nil {
			lo, last = hint, c
		} else {
			hi = hint
		}
	}
	for step := 1; hi == 0; step *= 2 {
		c, err := read(lo + step)
		if err != nil {
			return 0, nil, err
		}
		if c == nil {
			hi = lo + step
		} else {
			lo, last = lo+step, c
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		c, err := read(mid)
		if err != nil {
			return 0, nil, err
		}
		if c != nil {
			lo, last = mid, c
		} else {
			hi = mid
		}
	}
	return lo, last, nil
}

// ReleaseClaim ends claim n of a batch at now (only its holder calls it).
func (s *Store) ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error {
	_, err := s.claims.UpdateOne(ctx, bson.M{"_id": fmt.Sprintf("%s:%d", batchID, n)}, bson.M{"$set": bson.M{"until": now}})
	return err
}

type projectionEntry struct {
	Batch string    `bson:"_id"`
	At    time.Time `bson:"at"`
}

// EnqueueProjection records that a decided batch's outcomes are to be copied onto its
// tickets' documents.
func (s *Store) EnqueueProjection(ctx context.Context, batchID string) error {
	_, err := s.projection.InsertOne(ctx, projectionEntry{Batch: batchID, At: s.now()})
	if mongox.IsDuplicateKey(err) {
		return nil
	}
	return err
}

// ProjectionHead returns up to limit batches waiting for projection, oldest first.
func (s *Store) ProjectionHead(ctx context.Context, limit int) ([]string, error) {
	cur, err := s.projection.Find(ctx, bson.D{}, options.Find().SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	var rows []projectionEntry
	if err := cur.All(ctx, &rows); err != nil {
		return nil, err
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Batch
	}
	return out, nil
}

// ProjectionDone removes a batch from the projection queue.
func (s *Store) ProjectionDone(ctx context.Context, batchID string) error {
	_, err := s.projection.DeleteOne(ctx, bson.M{"_id": batchID})
	return err
}

// ProjectMember copies the outcome o of member m of batch b onto the ticket's document (see
// Project). Generation 0 needs no read: its history is the batch's; a later generation is
// resolved from its records.
func (s *Store) ProjectMember(ctx context.Context, m notification.Member, b *notification.Batch, o *notification.Outcome) error {
	if m.Generation > 0 || o == nil {
		t, err := s.Get(ctx, m.Ticket)
		if err != nil {
			return err
		}
		return s.Project(ctx, t)
	}
	t := notification.Resolve(notification.Ticket{ID: m.Ticket, Status: notification.StatusPending, Errors: []notification.AttemptError{}},
		notification.GenerationRecords{Generation: 0, Batch: b, Outcome: o})
	return s.Project(ctx, &t)
}
