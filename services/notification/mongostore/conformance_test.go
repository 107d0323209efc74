package mongostore_test

import (
	"testing"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification/deliverytest"
	"github.com/cineflow/cineflow/services/notification/mongostore"
)

// TestDeliveryStoreConformance runs the delivery store's conformance suite (the primitives the
// sweeper works with) against the MongoDB store on a database of each subtest's own: the
// embedded database, or the MongoDB of TEST_MONGODB_URI.
func TestDeliveryStoreConformance(t *testing.T) {
	t.Parallel()
	deliverytest.RunDeliveryStore(t, func(t *testing.T) deliverytest.Store {
		s := mongostore.New(devdb.TestDB(t))
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}
