package booking

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// Compaction of the seat logs. A show's seat log gets a snapshot every snapshotEvery entries;
// the entries a snapshot covers are deleted, in the background, so that a show keeps about
// seatLogKeep + 2*snapshotEvery entries (plus those of the last retention) however long it
// sells.
//
// What decides safety. The danger is a process whose view of a show is behind a deleted
// stretch: tailing, it would read up to the first missing entry and stop in the hole, missing
// every operation after it, and writing after its head it would insert an entry under a number
// already deleted, which no other view ever reads. Neither can happen, because of time, measured
// on the database's clock:
//
//   - Marking: a stretch 1..Mark is marked with the time MarkedAt at which every entry in it
//     existed (Mark is seatLogKeep behind the newest snapshot, read before the clock). A view
//     whose head S is below Mark found entry S+1 missing, so its last read of the head began
//     before MarkedAt.
//   - A view trusts its head for half the retention after its last read of it (seatViews.behind):
//     a view whose last read is older reloads from the snapshot instead of tailing, writing after
//     its head, or saving a snapshot of its state; a read that takes more than an eighth of the
//     retention is not trusted, and a snapshot write is given up after as long.
//   - Sweeping: the stretch is deleted only once the retention has passed since MarkedAt, and
//     only if the snapshot then read (after the clock) is at Mark or past it. By then every view
//     below Mark has stopped trusting its head, and no snapshot below Mark can still be written
//     (only such a view could write one), so a process that loads reads a snapshot past every
//     deleted entry, and the entries after it are all there.
//
// This holds while clocks (of the replicas and the database) agree within an eighth of the
// retention (DefaultSeatLogRetention: 10 minutes, so 75 s) and a write lands within as long of
// being sent.
//
// Progress is kept per show in one compaction record (Mark, MarkedAt, Done: the entries up to
// Done are deleted), read and replaced by exact id, so that no replica repeats what another did;
// a sweep is claimed by inserting a key naming the show, the mark and a lease window, so that
// one replica sweeps at a time. Records written by two replicas racing are each true (Done is
// only ever set to what was deleted, Mark with the time it was read at), so a lost write costs
// repeated work, never a missed operation.

// DefaultSeatLogRetention is how long the seat log keeps an entry after it has been marked for
// deletion (a snapshot covers it), by the database's clock.
const DefaultSeatLogRetention = 10 * time.Minute

const (
	// seatLogKeep is how many entries behind the newest snapshot are never marked: a view a
	// little behind the snapshot (the common case of another replica's) tails without
	// depending on the time rule at all.
	seatLogKeep = 64
	// seatLogMinSweep is the fewest entries a mark covers: a round costs a few writes of its own.
	seatLogMinSweep = snapshotEvery
	// seatLogDeleteBatch entries are deleted per command, seatLogDeletePause apart: on the
	// embedded database every delete is a transaction of its own, and requests go first.
	seatLogDeleteBatch = 64
	seatLogDeletePause = 50 * time.Millisecond
	// seatLogSweepLease is the lease window of a sweep's claim: a sweep stops after half of it
	// (recording how far it got), and a replica may take over in the next window.
	seatLogSweepLease = 2 * time.Minute
	// seatLogCompactEvery is the longest pause between two rounds of RunCompaction.
	seatLogCompactEvery = 30 * time.Second
)

// RunCompaction compacts the seat logs of the shows this process has views of until ctx ends
// (every replica may run it: the compaction records keep them from repeating each other's work).
func (b *Bookings) RunCompaction(ctx context.Context, onErr func(error)) {
	if b.retention <= 0 {
		return
	}
	t := time.NewTicker(max(min(b.retention/8, seatLogCompactEvery), 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := b.CompactSeatLogs(ctx); err != nil && ctx.Err() == nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// CompactSeatLogs does one round of compaction over the shows this process has views of: it
// marks a stretch of a show's log covered by its snapshot, or deletes a stretch marked at least
// the retention ago. It returns how many entries it deleted. See the top of this file for why
// no view can miss an operation.
func (b *Bookings) CompactSeatLogs(ctx context.Context) (int, error) {
	if b.retention <= 0 {
		return 0, nil
	}
	ctx = core.AsBackground(ctx)
	deleted := 0
	var first error
	for _, v := range b.views.list() {
		if ctx.Err() != nil {
			break
		}
		now := b.now()
		v.mu.Lock()
		due := v.loaded && v.seq >= max(v.compactSeq, seatLogKeep+seatLogMinSweep) && !now.Before(v.compactNext)
		v.mu.Unlock()
		if !due {
			continue
		}
		n, err := b.compactShow(ctx, v)
		deleted += n
		first = cmp.Or(first, err)
	}
	return deleted, first
}

// compactShow does one step of the compaction of a show's log: a sweep of the marked stretch
// if it is due, else a new mark if the snapshot is far enough ahead of what is deleted.
func (b *Bookings) compactShow(ctx context.Context, v *seatView) (int, error) {
	rec, err := b.store.SeatLogCompaction(ctx, v.showID)
	if err != nil {
		return 0, err
	}
	snap, err := b.store.SeatSnapshot(ctx, v.showID)
	if err != nil {
		return 0, err
	}
	dbNow, err := b.store.DBTime(ctx) // after the snapshot: every entry it covers existed by then
	if err != nil {
		return 0, err
	}
	n := 0
	if rec.Mark > rec.Done && !dbNow.Before(rec.MarkedAt.Add(b.retention)) {
		if n, err = b.sweepSeatLog(ctx, rec, dbNow); err != nil {
			return n, err
		}
		if rec, err = b.store.SeatLogCompaction(ctx, v.showID); err != nil {
			return n, err
		}
	} else if rec.Mark <= rec.Done && snap != nil && snap.Seq-seatLogKeep-rec.Done >= seatLogMinSweep {
		rec.Mark, rec.MarkedAt = snap.Seq-seatLogKeep, dbNow
		if err := b.store.SaveSeatLogCompaction(ctx, rec); err != nil {
			return 0, err
		}
	}
	// When this process needs to look again: once a snapshot may be far enough ahead of what
	// is deleted, or once the marked stretch is due.
	now := b.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case rec.Mark <= rec.Done:
		v.compactSeq, v.compactNext = rec.Done+seatLogKeep+seatLogMinSweep, time.Time{}
		if snap != nil {
			v.compactSeq = max(v.compactSeq, snap.Seq+snapshotEvery/2)
		}
	case dbNow.Before(rec.MarkedAt.Add(b.retention)):
		v.compactSeq, v.compactNext = 0, now.Add(rec.MarkedAt.Add(b.retention).Sub(dbNow))
	default: // due, but swept by another replica, or not finished: look again shortly
		v.compactSeq, v.compactNext = 0, now.Add(min(b.retention/8, seatLogSweepLease/4))
	}
	return n, nil
}

// sweepSeatLog deletes the marked stretch of a show's log after Done, paced, under a claim of
// the current lease window, and records how far it got. The marked stretch is deleted only if
// the show's snapshot, read now that the retention has passed since the mark, is at the mark or
// past it (a snapshot written late by a process behind would leave loaders short of it).
func (b *Bookings) sweepSeatLog(ctx context.Context, rec core.SeatLogCompaction, dbNow time.Time) (int, error) {
	snap, err := b.store.SeatSnapshot(ctx, rec.ShowID)
	if err != nil || snap == nil || snap.Seq < rec.Mark {
		return 0, err
	}
	window := dbNow.Unix() / int64(seatLogSweepLease/time.Second)
	key := fmt.Sprintf("%s:%d:%d", rec.ShowID, rec.Mark, window)
	won, err := b.store.ClaimSeatLogSweep(ctx, key)
	if err != nil || !won {
		return 0, err
	}
	defer func() {
		ctx := context.WithoutCancel(ctx)
		_ = b.store.DropSeatLogSweep(ctx, key)
		// A sweeper of the last window that died left its claim: it is of no use any more.
		_ = b.store.DropSeatLogSweep(ctx, fmt.Sprintf("%s:%d:%d", rec.ShowID, rec.Mark, window-1))
	}()
	start := time.Now()
	deleted := 0
	var sweepErr error
	for rec.Done < rec.Mark && ctx.Err() == nil {
		to := min(rec.Done+seatLogDeleteBatch, rec.Mark)
		if sweepErr = b.store.DeleteSeatLog(ctx, rec.ShowID, rec.Done+1, to); sweepErr != nil {
			break
		}
		deleted += int(to - rec.Done)
		rec.Done = to
		if rec.Done == rec.Mark || time.Since(start) >= seatLogSweepLease/2 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(seatLogDeletePause):
		}
	}
	if deleted > 0 {
		sweepErr = cmp.Or(sweepErr, b.store.SaveSeatLogCompaction(context.WithoutCancel(ctx), rec))
	}
	return deleted, sweepErr
}
