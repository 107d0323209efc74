package sweeper

import (
	"context"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/cineflow/cineflow/services/notification"
)

// orphanGrace is how long a queue entry of a re-queued generation may wait for its
// generation record (the re-queue decision, inserted just after it) before it counts as
// left by a re-queue that failed, and is removed.
const orphanGrace = 10 * time.Minute

// maxOpenRead bounds the open batches one sweep reads.
const maxOpenRead = 20000

// BatchStore is what taking over and forming batches needs from the database: the open
// batches and their leases, the delivery queue, and the batch records.
type BatchStore interface {
	// OpenBatches returns up to limit batches not yet done.
	OpenBatches(ctx context.Context, limit int) ([]notification.OpenBatch, error)
	// Claim takes the next lease on a batch: it finds the last claim from from (the last
	// claim number known, 0 for none; a hint any distance behind or ahead costs a few reads
	// more) and, when that claim has ended, inserts the next one, n, so the winner of claim n
	// learns n from its own insert. ok is false when a lease is held.
	Claim(ctx context.Context, batchID string, from int, holder string, now, until time.Time) (n int, ok bool, err error)
	// ReleaseClaim ends claim n at now, so the next sweep may take the batch at once.
	ReleaseClaim(ctx context.Context, batchID string, n int, now time.Time) error
	// Batch reads a batch (nil when there is none).
	Batch(ctx context.Context, id string) (*notification.Batch, error)
	// QueueHead returns up to limit queued ticket generations of queue shard shard (of
	// notification.QueueShards), oldest queued first.
	QueueHead(ctx context.Context, shard, limit int) ([]notification.QueueEntry, error)
	// Dequeue removes queue entries.
	Dequeue(ctx context.Context, keys []string) error
	// GenerationStarted reports whether a ticket's generation exists (its re-queue is decided).
	GenerationStarted(ctx context.Context, ticket notification.ID, gen int) (bool, error)
	// AppendTally records a change of the delivery figures under a unique key, once.
	AppendTally(ctx context.Context, key string, d notification.Tally) error
	// InsertBatch stores a new batch (held by its creator until b.NextAttemptAt) and opens it.
	InsertBatch(ctx context.Context, b *notification.Batch) error
	// Assign assigns ticket generations to a batch; it returns the indexes another batch owns.
	Assign(ctx context.Context, b *notification.Batch, members []notification.Member) (lost map[int]bool, err error)
	// SaveBatch writes the batch (and its open entry) as its holder sees it.
	SaveBatch(ctx context.Context, b *notification.Batch) error
	// CloseBatch removes a done batch from the open batches.
	CloseBatch(ctx context.Context, id string) error
	// DiscardBatch removes a batch that won no ticket.
	DiscardBatch(ctx context.Context, id string) error
}

// produce feeds jobs: first batches that are due again (retries, abandoned leases), then new
// batches of queued tickets, until there is nothing left or the sweep must stop.
func (r *run) produce(jobs chan<- job) {
	cfg := r.s.cfg
	var st BatchStore = r.s.store
	open, err := st.OpenBatches(r.stop, maxOpenRead)
	if err != nil {
		r.storeError("open batches", err)
		r.startErr = err
		return
	}
	now := cfg.Now()
	due := open[:0]
	for _, b := range open {
		if !b.Due.After(now) {
			due = append(due, b)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].Due.Before(due[j].Due) })
	if limit := 10 * cfg.PageSize / cfg.BatchSize; len(due) > limit {
		due = due[:limit]
	}
	for _, ob := range due {
		if r.stop.Err() != nil {
			return
		}
		if j, ok := r.takeOver(ob); ok {
			select {
			case jobs <- j:
			case <-r.stop.Done():
				r.release(j)
				return
			}
		}
	}
	r.formBatches(jobs)
}

// takeOver claims a due batch and reads it afresh: the claim is won first, so what is read
// is what the previous holder last wrote. A batch done, or not due after all (the open
// entry read was stale), is released at once, its claim number not saved: the next Claim
// finds the last claim from the older hint.
func (r *run) takeOver(ob notification.OpenBatch) (job, bool) {
	cfg := r.s.cfg
	var st BatchStore = r.s.store
	// Once started, a claim or a batch is written to the end (hard), so that a stop in the
	// middle cannot leave one half made and held until its lease ends.
	n, ok, err := st.Claim(r.hard, ob.ID, ob.Claims, r.holder, cfg.Now(), r.leaseUntil)
	if err != nil {
		r.storeError("claim", err)
		return job{}, false
	}
	if !ok {
		return job{}, false
	}
	b, err := st.Batch(r.hard, ob.ID)
	now := cfg.Now()
	switch {
	case err != nil:
		r.storeError("read claimed batch", err)
	case b == nil: // an open entry without its batch (a creation that failed half-way)
		if err := st.CloseBatch(r.hard, ob.ID); err != nil {
			r.storeError("close orphan open entry", err)
		}
	case b.Done: // a holder finished it but did not close it
		if err := st.CloseBatch(r.hard, ob.ID); err != nil {
			r.storeError("close done batch", err)
		}
	case b.NextAttemptAt.After(now):
		// not due: leave it to its holder or its backoff
	default:
		b.Claims = n
		return job{batch: *b, claim: n, recovery: true}, true
	}
	if err := st.ReleaseClaim(r.hard, ob.ID, n, now); err != nil {
		r.storeError("release claim", err)
	}
	return job{}, false
}

// formBatches reads the delivery queue a page at a time, one shard after the other (from
// one picked at random, so that concurrent sweeps start apart and no shard always waits
// last), puts its entries into new batches of BatchSize (a batch may take entries of two
// shards), hands the batches to the workers, and removes the entries it handled (assigned
// by this sweep or, for the ones it lost, by another) before it reads on.
func (r *run) formBatches(jobs chan<- job) {
	cfg := r.s.cfg
	var st BatchStore = r.s.store
	var (
		buf  []notification.QueueEntry // read, not yet in a batch
		done []string                  // assigned (or left by a failed re-queue): to dequeue
		seen = map[string]bool{}       // every entry read by this sweep
	)
	// batches forms batches from buf, all of it or only full ones; false means stop.
	batches := func(all bool) bool {
		for len(buf) >= cfg.BatchSize || (all && len(buf) > 0) {
			if r.stop.Err() != nil {
				return false
			}
			chunk := buf[:min(cfg.BatchSize, len(buf))]
			buf = buf[len(chunk):]
			j, assigned, ok := r.newBatch(chunk)
			if !assigned {
				return false // the database failed: the entries stay queued for a later sweep
			}
			for _, e := range chunk {
				done = append(done, e.Key)
			}
			if !ok {
				continue
			}
			select {
			case jobs <- j:
			case <-r.stop.Done():
				r.release(j)
				return false
			}
		}
		return true
	}
	dequeue := func() bool {
		if len(done) == 0 {
			return true
		}
		err := st.Dequeue(r.hard, done)
		done = nil
		if err != nil {
			r.storeError("dequeue", err)
			return false
		}
		return true
	}
	first := rand.N(notification.QueueShards)
	for k := range notification.QueueShards {
		shard := (first + k) % notification.QueueShards
		for r.stop.Err() == nil {
			page, err := st.QueueHead(r.stop, shard, cfg.PageSize)
			if err != nil {
				if r.stop.Err() == nil {
					r.storeError("delivery queue", err)
					if k == 0 && len(seen) == 0 {
						r.startErr = err
					}
				}
				dequeue()
				return
			}
			fresh := page[:0]
			for _, e := range page {
				if !seen[e.Key] {
					seen[e.Key] = true
					fresh = append(fresh, e)
				}
			}
			keep, drop := r.checkGenerations(fresh)
			buf = append(buf, keep...)
			done = append(done, drop...)
			if !batches(false) || !dequeue() {
				dequeue()
				return
			}
			if len(page) < cfg.PageSize || len(fresh) == 0 {
				break // the shard is drained (what is left is in buf, or waits for its re-queue)
			}
		}
		if r.stop.Err() != nil {
			break
		}
	}
	batches(true)
	dequeue()
}

// checkGenerations keeps the entries whose generation exists. An entry of a re-queued
// generation whose re-queue is not decided is young (the re-queue is under way: left queued)
// or was left by a re-queue that failed (removed: returned in drop).
func (r *run) checkGenerations(page []notification.QueueEntry) (keep []notification.QueueEntry, drop []string) {
	var st BatchStore = r.s.store
	now := r.s.cfg.Now()
	for _, e := range page {
		if e.Generation == 0 {
			keep = append(keep, e)
			continue
		}
		ok, err := st.GenerationStarted(r.hard, e.Ticket, e.Generation)
		switch {
		case err != nil:
			r.storeError("read generation", err)
		case ok:
			keep = append(keep, e)
		case now.Sub(e.QueuedAt) > orphanGrace:
			drop = append(drop, e.Key)
		}
	}
	return keep, drop
}

// newBatch stores a batch of the chunk's ticket generations and assigns them to it.
// assigned reports that every entry of the chunk is now assigned (to this batch or another);
// ok that the batch won tickets and is to be sent.
func (r *run) newBatch(chunk []notification.QueueEntry) (j job, assigned, ok bool) {
	cfg := r.s.cfg
	var st BatchStore = r.s.store
	now := cfg.Now()
	members := make([]notification.Member, len(chunk))
	oldest := chunk[0].QueuedAt
	for i, e := range chunk {
		members[i] = notification.Member{Ticket: e.Ticket, Generation: e.Generation}
		if e.QueuedAt.Before(oldest) {
			oldest = e.QueuedAt
		}
	}
	// FirstSendAt is set from the start: the batch may reach the provider from now on. If
	// it is given back unsent, it is cleared.
	sendFrom := now
	b := notification.Batch{ID: notification.NewID().Hex(), From: cfg.From, Size: len(chunk), Members: members,
		FirstSendAt: &sendFrom, NextAttemptAt: r.leaseUntil, Oldest: oldest, Errors: []notification.AttemptError{},
		CreatedAt: now, UpdatedAt: now}
	if err := st.InsertBatch(r.hard, &b); err != nil {
		r.storeError("create batch", err)
		if err := st.DiscardBatch(r.hard, b.ID); err != nil {
			r.storeError("discard batch", err)
		}
		return j, false, false
	}
	lost, err := st.Assign(r.hard, &b, members)
	if err != nil {
		// Some may be assigned: the batch keeps its candidates, unverified, and is taken
		// over when its lease ends; the entries stay queued (a later assignment loses).
		r.storeError("assign tickets", err)
		return j, false, false
	}
	won := make([]notification.Ticket, 0, len(chunk))
	kept := make([]notification.Member, 0, len(chunk))
	for i, e := range chunk {
		if lost[i] {
			continue
		}
		won = append(won, e.AsTicket())
		kept = append(kept, members[i])
		if e.Generation > 0 { // count the re-queue, if its holder could not
			if err := st.AppendTally(r.hard, notification.RequeueTallyKey(e.Ticket, e.Generation-1), notification.Tally{Requeued: 1}); err != nil {
				r.storeError("count re-queue", err)
			}
		}
	}
	if len(won) == 0 {
		if err := st.DiscardBatch(r.hard, b.ID); err != nil {
			r.storeError("discard empty batch", err)
		}
		return j, true, false
	}
	b.Members, b.Verified, b.Size = kept, true, len(kept)
	return job{batch: b, created: true, tickets: won}, true, true
}

// release gives a batch back unsent: due now, lease ended.
func (r *run) release(j job) {
	r.releaseUntil(j, r.s.cfg.Now())
}

func (r *run) releaseUntil(j job, next time.Time) {
	var st BatchStore = r.s.store
	r.count(func(rep *Report) { rep.Released++ })
	b := j.batch
	b.NextAttemptAt = next
	b.UpdatedAt = r.s.cfg.Now()
	if j.created && !j.sent {
		b.FirstSendAt = nil // never left this sweep
	}
	if err := st.SaveBatch(r.hard, &b); err != nil {
		r.storeError("release batch", err)
	}
	if j.claim > 0 {
		if err := st.ReleaseClaim(r.hard, b.ID, j.claim, r.s.cfg.Now()); err != nil {
			r.storeError("release claim", err)
		}
	}
}
