package mongostore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/notification"
)

// The bulk re-queue (RequeueFailed) finds failures in the list index of FAILED outcomes
// (ticket_list_failed, listindex.go): an entry per ticket generation decided FAILED, numbered
// in the order sweeps appended them and stamped with the time of the outcome (At). It reads
// the entries newest first by exact _id, as a page of the FAILED list does, from FailedUntil
// down to FailedSince, so its cost grows with the failures it examines, never with the
// tickets stored (no read of the tickets collection, no filter but _id):
//
//   - with FailedUntil, the walk starts at the first entry stamped after FailedUntil +
//     requeueOrderMargin, found by bisection (about log2(entries) reads);
//   - it stops at the first entry stamped before FailedSince - requeueOrderMargin.
//
// An entry is numbered when its sweep appends it, and stamped with that sweep's clock when it
// decided: an entry may be a little older than one appended before it (the time from
// deciding to appending, and the clock skew between sweeps). requeueOrderMargin bounds that
// disorder, so neither end of the walk skips a failure inside the window. Entries back-filled
// for tickets an earlier version stored (the downward numbers) are ordered by ticket, not by
// failure: the walk reads all of them, unless the back-fill finished before FailedSince -
// requeueOrderMargin (then none of them can be in the window).
//
// Each entry examined costs one read; one stamped inside the window costs one more (the
// generation's re-queue record: re-queued already?) and then its outcome (FAILED, and the
// reason). A match is re-queued by requeue for its generation, exactly as POST /:id/retry
// re-queues: the insert of the generation record decides, so a bulk re-queue racing retries,
// other bulk re-queues and sweeps re-queues each generation once. One call reads at most
// requeueExamine entries, takes at most f.Limit matches and starts no round after
// requeueTime; when it stops early its report has More and the cursor to go on from (Next).

// requeueOrderMargin bounds how much older an entry of the FAILED list index may be than one
// appended before it (see above).
const requeueOrderMargin = 5 * time.Minute

// requeueExamine bounds the entries one call of RequeueFailed reads, and requeueTime the
// time it starts new rounds for: a call answers within about requeueTime plus a round
// (on the development database, 15 to 30 ms per ticket re-queued on a loaded machine), and
// says where to go on.
const (
	requeueExamine = 50000
	requeueTime    = 20 * time.Second
)

// requeueFirstRound and requeueRound bound the entries read in one round (read, checked,
// re-queued in parallel, at most resolveParallel at a time): rounds double from the first.
const (
	requeueFirstRound = 16
	requeueRound      = 256
)

// failedWalk is a walk of the FAILED list index, newest first.
type failedWalk struct {
	s        *Store
	x        *listIndex
	since    time.Time // stop at the first upward entry stamped before it
	pos      int64     // entries below pos are still to read
	floor    int64     // the first free downward number, once known
	down     bool      // the downward run is known to be worth reading (floor is set)
	done     bool      // no entry left to read
	examined int       // entries read (the cost)
}

// RequeueFailed re-queues the tickets whose current generation FAILED as f selects, newest
// failures first (see the comment above). A ticket re-queued meanwhile by someone else is
// matched but not re-queued. On an error the tickets re-queued so far stay re-queued: the same
// request again re-queues the rest.
func (s *Store) RequeueFailed(ctx context.Context, f notification.RequeueFilter) (notification.RequeueReport, error) {
	rep := notification.RequeueReport{DryRun: f.DryRun}
	if err := f.Validate(); err != nil {
		return rep, err
	}
	// Failure times are stored to the millisecond: a failure in FailedSince's millisecond
	// is in the window.
	f.FailedSince = f.FailedSince.Truncate(time.Millisecond)
	ready, err := s.listReady(ctx)
	if err != nil {
		return rep, unavailable(err, "read the failed tickets")
	}
	if !ready {
		return rep, errs.E(errs.Unavailable, "the list of failed tickets is still being built from an earlier version's tickets: try again in a minute")
	}
	w := &failedWalk{s: s, x: s.lists[listFailed], since: f.FailedSince.Add(-requeueOrderMargin)}
	if err := w.start(ctx, f); err != nil {
		return rep, err
	}
	reason := strings.ToLower(f.ReasonContains)
	round, began := requeueFirstRound/2, time.Now()
	for !w.done && rep.Matched < f.Limit && w.examined < requeueExamine && time.Since(began) < requeueTime {
		// Small rounds first, so that a narrow window reads little past its end.
		round = min(requeueExamine-w.examined, requeueRound, 2*round)
		entries, err := w.next(ctx, round)
		if err != nil {
			return rep, unavailable(err, "read the failed tickets")
		}
		// The entries stamped inside the window, checked in parallel.
		match := make([]bool, len(entries))
		err = pointReads(len(entries), func(i int) error {
			e := entries[i]
			if e.At.Before(f.FailedSince) || (!f.FailedUntil.IsZero() && e.At.After(f.FailedUntil)) {
				return nil
			}
			var err error
			match[i], err = s.failedMatch(ctx, e, reason)
			return err
		})
		if err != nil {
			return rep, unavailable(err, "read the failed tickets")
		}
		// Consumed in order, up to the limit: the rest are read again by the next call.
		var take []*listEntry
		for i, e := range entries {
			if rep.Matched == f.Limit {
				w.done = false // entries remain: this one and those after it
				break
			}
			w.pos = e.Seq
			if match[i] {
				rep.Matched++
				take = append(take, e)
			}
		}
		if f.DryRun {
			continue
		}
		requeued := make([]bool, len(take))
		err = pointReads(len(take), func(i int) error {
			_, err := s.requeue(ctx, take[i].Ticket, take[i].Gen)
			switch {
			case err == nil:
				requeued[i] = true
			case errs.Is(err, errs.Conflict) || errs.Is(err, errs.NotFound):
				// Re-queued meanwhile by someone else (or no longer FAILED): not ours.
			default:
				return err
			}
			return nil
		})
		for _, ok := range requeued {
			if ok {
				rep.Requeued++
			}
		}
		if err != nil {
			rep.Examined = w.examined
			return rep, err
		}
	}
	rep.Examined = w.examined
	if !w.done {
		rep.More, rep.Next = true, requeueCursor(w.pos)
	}
	return rep, nil
}

// failedMatch reports whether the failure of entry e is one to re-queue now: its generation
// not re-queued yet and FAILED (its outcome; or, for a ticket an earlier version stored
// without delivery records, the ticket itself) with a reason containing reason (lower case).
func (s *Store) failedMatch(ctx context.Context, e *listEntry, reason string) (bool, error) {
	key := notification.AssignmentKey(e.Ticket, e.Gen)
	requeued, err := exists(ctx, s.requeues, key)
	if err != nil || requeued {
		return false, err
	}
	var o notification.Outcome
	found, err := findByID(ctx, s.outcomes, key, &o)
	if err != nil {
		return false, err
	}
	why := o.Error
	if !found {
		// No outcome: being decided right now (resolved PENDING), or a ticket of an
		// earlier version, FAILED in its document.
		t, err := s.Get(ctx, e.Ticket)
		if errs.Is(err, errs.NotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if t.Status != notification.StatusFailed || t.Generation != e.Gen {
			return false, nil
		}
		why = t.LastError
	} else if o.Status != notification.StatusFailed {
		return false, nil
	}
	return reason == "" || strings.Contains(strings.ToLower(why), reason), nil
}

// start places the walk: at the cursor, or at the head of the index, or, with FailedUntil,
// at the first entry stamped after FailedUntil + requeueOrderMargin (bisection).
func (w *failedWalk) start(ctx context.Context, f notification.RequeueFilter) error {
	head, err := w.x.head(ctx)
	if err != nil {
		return unavailable(err, "read the failed tickets")
	}
	if f.Cursor != "" {
		pos, ok := parseRequeueCursor(f.Cursor)
		if !ok {
			return errs.Fields(map[string]string{"cursor": "must be the next of an earlier answer"})
		}
		w.pos = min(pos, head)
		return nil
	}
	w.pos = head
	if f.FailedUntil.IsZero() {
		return nil
	}
	after := f.FailedUntil.Add(requeueOrderMargin)
	lo, hi := int64(0), head // the first upward entry stamped after `after` is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		var e listEntry
		found, err := findByID(ctx, w.x.coll, seqID(mid), &e)
		if err != nil {
			return unavailable(err, "read the failed tickets")
		}
		w.examined++
		if found && e.At.After(after) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	w.pos = lo
	return nil
}

// next reads up to n entries below w.pos, newest first, and leaves w.pos for the caller to
// move past the ones it consumes. It marks the walk done when it reads the last entry to
// examine (the end of the index, or an upward entry stamped before w.since, which is
// returned too but consumes nothing of the window).
func (w *failedWalk) next(ctx context.Context, n int) ([]*listEntry, error) {
	from := w.pos - 1 // the next number to read
	if from < 0 && !w.down {
		ok, err := w.readDownward(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			w.done = true
			return nil, nil
		}
	}
	to := from - int64(n) + 1
	if from >= 0 {
		to = max(to, 0) // the upward run first: its stop rule differs
	} else {
		to = max(to, w.floor+1)
	}
	if to > from {
		w.done = true
		return nil, nil
	}
	nums := make([]int64, 0, from-to+1)
	for k := from; k >= to; k-- {
		nums = append(nums, k)
	}
	read, err := w.x.read(ctx, nums)
	if err != nil {
		return nil, err
	}
	w.examined += len(nums)
	out := make([]*listEntry, 0, len(read))
	for _, e := range read {
		if e == nil { // cannot happen below the head: the index has no gaps
			w.done = true
			break
		}
		out = append(out, e)
		if e.Seq >= 0 && e.At.Before(w.since) {
			w.done = true
			break
		}
	}
	if len(out) > 0 && out[len(out)-1].Seq == w.floor+1 && w.down {
		w.done = true
	}
	return out, nil
}

// readDownward reports whether the back-filled entries (downward numbers) may hold failures
// inside the window, and if so finds where they end.
func (w *failedWalk) readDownward(ctx context.Context) (bool, error) {
	var marker struct {
		At time.Time `bson:"at"`
	}
	found, err := findByID(ctx, w.s.db.Collection(MigrationsCollection), listMigration, &marker)
	if err != nil {
		return false, err
	}
	if found && marker.At.Before(w.since) {
		return false, nil // the back-fill ended before the window opened
	}
	floor, err := w.x.bottom(ctx)
	if err != nil {
		return false, err
	}
	w.floor, w.down = floor, true
	return floor < -1, nil
}

// requeueCursor is the cursor of a walk standing at pos.
func requeueCursor(pos int64) string { return "r" + strconv.FormatInt(pos, 10) }

// parseRequeueCursor reads a cursor made by requeueCursor.
func parseRequeueCursor(c string) (int64, bool) {
	if len(c) < 2 || len(c) > notification.MaxRequeueCursor || c[0] != 'r' {
		return 0, false
	}
	n, err := strconv.ParseInt(c[1:], 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != c[1:] {
		return 0, false
	}
	return n, true
}
