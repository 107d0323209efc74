package sweeper

import (
	"context"

	"github.com/cineflow/cineflow/services/notification"
)

// ProjectionStore is what projection needs from the database: the projection queue, the
// batches on it and their outcomes, and the ticket documents.
type ProjectionStore interface {
	// ProjectionHead returns up to limit batches of the projection queue, whose outcomes are
	// still to be copied onto the ticket documents.
	ProjectionHead(ctx context.Context, limit int) ([]string, error)
	// ProjectionDone takes a batch off the projection queue.
	ProjectionDone(ctx context.Context, batchID string) error
	// ProjectMember copies a member's outcome onto its ticket document.
	ProjectMember(ctx context.Context, m notification.Member, b *notification.Batch, o *notification.Outcome) error
	// Batch reads a batch (nil when there is none).
	Batch(ctx context.Context, id string) (*notification.Batch, error)
	// Outcomes reads the outcomes of ticket generations (missing ones are absent).
	Outcomes(ctx context.Context, keys []string) (map[string]*notification.Outcome, error)
}

// decidedBatch is what projection needs of a batch this sweep decided.
type decidedBatch struct {
	batch    notification.Batch
	outcomes map[string]*notification.Outcome
}

// maxProjectionMemory bounds the tickets whose outcomes a sweep keeps in memory for
// projection; beyond it projection reads them back.
const maxProjectionMemory = 5000

// projectionPage is how many batches projection takes from its queue at a time.
const projectionPage = 16

// project copies the outcomes of decided batches onto their tickets' documents, with what
// time is left, paced by ProjectShare: the batches this sweep decided and any an earlier
// sweep left in the projection queue. It is only a convenience for readers of the raw ticket
// documents: the service resolves tickets from the delivery records, and its status lists are
// indexed when an outcome is decided, before projection.
func (r *run) project(ctx context.Context) {
	st := r.s.project
	skip := map[string]bool{}
	for ctx.Err() == nil {
		ids, err := st.ProjectionHead(ctx, projectionPage+len(skip))
		if err != nil {
			r.projectError(ctx, err)
			return
		}
		progressed := false
		for _, id := range ids {
			if skip[id] {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			done, err := r.projectBatch(ctx, id)
			if err != nil {
				r.projectError(ctx, err)
				return
			}
			if !done {
				skip[id] = true // not closed yet: its holder (or taker-over) finishes it first
				continue
			}
			progressed = true
		}
		if !progressed {
			return
		}
	}
}

// projectBatch projects the members of one decided batch and takes it off the projection
// queue. done is false for a batch not yet closed.
func (r *run) projectBatch(ctx context.Context, id string) (done bool, err error) {
	st := r.s.project
	r.mu.Lock()
	d, mine := r.decided[id]
	r.mu.Unlock()
	b, outcomes := &d.batch, d.outcomes
	if !mine {
		if b, err = st.Batch(ctx, id); err != nil {
			return false, err
		}
		if b == nil {
			return true, st.ProjectionDone(ctx, id)
		}
		if !b.Done || !b.Verified {
			return false, nil
		}
		keys := make([]string, len(b.Members))
		for i, m := range b.Members {
			keys[i] = m.Key()
		}
		if outcomes, err = st.Outcomes(ctx, keys); err != nil {
			return false, err
		}
	}
	for _, m := range b.Members {
		o := outcomes[m.Key()]
		if o == nil {
			continue
		}
		if err := st.ProjectMember(ctx, m, b, o); err != nil {
			return false, err
		}
		r.count(func(rep *Report) { rep.Projected++ })
	}
	return true, st.ProjectionDone(ctx, id)
}

// projectError logs a failed projection, unless its time budget simply ran out.
func (r *run) projectError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		r.s.cfg.Logger.Info("projection time is up; later sweeps project the rest", "projected", r.rep.Projected)
		return
	}
	r.storeError("project outcome", err)
}
