// Package mongostore is the sweeper's view of the notification database: the delivery
// primitives of the notification service's store (services/notification/mongostore), which
// owns the records' layout, and the backlog figure.
package mongostore

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/jobs/sweeper"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

// openBatchesRead bounds the open batches the backlog figure reads.
const openBatchesRead = 20000

// Store implements sweeper.Store.
type Store struct {
	*nstore.Store
}

var _ sweeper.Store = (*Store)(nil)

// New returns the store on the notification database.
func New(db *mongo.Database) *Store {
	return &Store{Store: nstore.New(db)}
}

// Backlog counts the tickets still to deliver: the queue entries plus the tickets of the
// open batches (both collections hold only pending work).
func (s *Store) Backlog(ctx context.Context) (int64, error) {
	n, err := s.QueueLen(ctx)
	if err != nil {
		return 0, err
	}
	open, err := s.OpenBatches(ctx, openBatchesRead)
	if err != nil {
		return 0, err
	}
	for _, b := range open {
		n += int64(b.Size)
	}
	return n, nil
}
