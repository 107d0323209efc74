package main

import (
	"context"
	"time"

	"github.com/cineflow/cineflow/services/core/mongostore"
)

// listsBackfillRetry is how long the lists' backfill waits after a failure.
const listsBackfillRetry = 10 * time.Second

// backfillLists indexes, in the background, the bookings and payments an earlier version
// wrote, so that the lists answer from their streams (they answer from the old query until
// then); then it makes a catch-up pass every mongostore.ListsCatchUpEvery for as long as the
// store asks (a rolling upgrade's earlier replicas may still write). The replica that leads
// JobListsBackfill does it (two at once, during a change of leader, still write each entry
// once); the others wait, and take it up if the leader goes away first. A replica that takes it
// up after it is done finds the marker and stops after one pass.
func (m *Main) backfillLists(ctx context.Context, store *mongostore.Bookings) {
	e := m.elect(ctx, JobListsBackfill)
	m.loops.Add("lists backfill", func(bctx context.Context) {
		defer func() { // done, or stopping: another replica may lead at once
			rctx, cancel := context.WithTimeout(context.WithoutCancel(bctx), time.Second)
			defer cancel()
			_ = e.Release(rctx)
		}()
		for {
			if !e.Leader() {
				select {
				case <-bctx.Done():
					return
				case <-time.After(listsBackfillRetry):
				}
				continue
			}
			began := time.Now()
			r, err := store.BackfillLists(bctx)
			wait := listsBackfillRetry
			switch {
			case err != nil && bctx.Err() != nil:
				return
			case err != nil:
				m.Logger.Warn("indexing the lists of existing bookings and payments failed; retrying", "error", err.Error())
			default:
				if r.Indexed > 0 {
					m.Logger.Info("indexed existing bookings and payments for their lists", "documents", r.Indexed,
						"took", time.Since(began).String())
				}
				left := time.Until(r.CatchUpUntil)
				if left <= 0 {
					return
				}
				wait = min(mongostore.ListsCatchUpEvery, left)
			}
			select {
			case <-bctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}
