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
// store asks (a rolling upgrade's earlier replicas may still write). Every replica runs it:
// their passes write each entry once.
func (m *Main) backfillLists(ctx context.Context, store *mongostore.Bookings) {
	bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
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
	}()
	m.OnClose(func(context.Context) error {
		stop()
		<-done
		return nil
	})
}
